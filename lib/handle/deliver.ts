// Stage: delivery to the user's callbacks. Each function runs one callback of
// a command (chunk, extent, list/context, completion) or the debug callback,
// catches what it throws, and applies libnbd's error rules (lib/semantics.ts)
// to what it returned. Retirement is the commands stage's (commands.ts).
import type { ChunkCallback, DebugCallback, ErrorRef } from '../callbacks';
import { errno } from '../errors';
import type { ContextPayload, DebugPayload, ExtentPayload, ListPayload } from '../generated/event-decode';
import { EVENT_LIST } from '../generated/event-wire';
import * as semantics from '../semantics';
import * as buffers from './buffers';
import { reportLostCauses } from './lost-causes';
import type { PendingCommand } from './commands';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
// docs/architecture.md, Traps: "module-level constants".
const LIST = EVENT_LIST;
const { adoptLibnbdError, applyChunkResult, applyCompletionResult, chunkErrorOnEntry, errnoValue, errorAtClose, retiredOnCompletion } = semantics;
const { copyOut, copyOutAll, release } = buffers;

/** `error.value` as libnbd's int, set before a callback returned or threw; a getter of the user's may throw too. */
function errorValue(error: ErrorRef): number {
  try {
    return errnoValue(error.value);
  } catch {
    return 0;
  }
}

/** An absolute offset `base + sub` as the handle returns 64-bit values (bigint or number). */
function offsetOut(base: number | bigint, sub: number, bigint: boolean): number | bigint {
  if (typeof base === 'number') {
    const abs = base + sub;
    if (abs <= MAX_SAFE) return bigint ? BigInt(abs) : abs;
  }
  const big = BigInt(base) + BigInt(sub);
  return bigint || big > BigInt(MAX_SAFE) ? big : Number(big);
}

/** A structured read's chunk: a view of `count` bytes at `sub` in the command's buffer. */
export function deliverChunk(cmd: PendingCommand, status: number, eventError: number, sub: number, count: number, bigint: boolean): void {
  const entry = chunkErrorOnEntry(cmd, status, eventError);
  const chunk = cmd.closure as ChunkCallback | undefined;
  const buf = cmd.buf;
  if (chunk === undefined || buf === undefined) {
    applyChunkResult(cmd, status, eventError, 0, 0);
    return;
  }
  if (cmd.bufferLost()) {
    // No view of it can be made: the chunk fails as a callback returning -1 would.
    applyChunkResult(cmd, status, eventError, -1, errno.EFAULT);
    return;
  }
  // Read into a copy (lib/handle/buffers.ts): the chunk's bytes go to the caller's buffer first.
  const bounce = cmd.bounce;
  if (bounce !== undefined) copyOut(bounce, sub, count);
  // One chunk for the whole request is the common case (nbdkit): the
  // caller's own Uint8Array/Buffer is that view, no new object needed.
  const subbuf =
    sub === 0 && count === cmd.length && buf instanceof Uint8Array
      ? buf
      : Buffer.isBuffer(buf)
        ? buf.subarray(sub, sub + count)
        : new Uint8Array(buf.buffer, buf.byteOffset + sub, count);
  const error: ErrorRef = { value: entry };
  let ret: unknown;
  try {
    ret = chunk(subbuf, offsetOut(cmd.offset!, sub, bigint), status, error);
  } catch (e) {
    ret = -1;
    cmd.addCause(e);
  }
  applyChunkResult(cmd, status, eventError, ret, errorValue(error));
}

/**
 * Block status, 32- or 64-bit extents alike (the payload's `entries` is a
 * Uint32Array or a BigUint64Array): the chunk rule for DATA (first error
 * sticks; -1 with 0 is EPROTO).
 */
export function deliverExtent(cmd: PendingCommand, eventError: number, payload: ExtentPayload, bigint: boolean): void {
  const entry = chunkErrorOnEntry(cmd, 0, eventError);
  const extent = cmd.closure as ((...args: unknown[]) => unknown) | undefined;
  if (extent === undefined) return;
  const error: ErrorRef = { value: entry };
  const offset = payload.offset;
  let ret: unknown;
  try {
    ret = extent(payload.context, bigint ? BigInt(offset) : offset, payload.entries, error);
  } catch (e) {
    ret = -1;
    cmd.addCause(e);
  }
  applyChunkResult(cmd, 0, eventError, ret, errorValue(error));
}

/** list and context callbacks (`kind`: EVENT_LIST or EVENT_CONTEXT): libnbd ignores what they return. */
export function deliverListing(cmd: PendingCommand, kind: number, payload: ListPayload | ContextPayload): void {
  cmd.closureCalls++;
  const f = cmd.closure as ((...args: unknown[]) => unknown) | undefined;
  if (f === undefined) return;
  try {
    if (kind === LIST) f(payload.name, (payload as ListPayload).description);
    else f(payload.name);
  } catch (e) {
    cmd.addCause(e);
  }
}

/** A debug message, to the handle's debug callback if it has one. */
export function deliverDebug(f: DebugCallback | undefined, payload: DebugPayload): void {
  if (f === undefined) return;
  try {
    f(payload.context, payload.message);
  } catch (e) {
    reportLostCauses([e], 'a libnbd debug callback threw');
  }
}

/**
 * A command's completion: takes libnbd's error, runs the completion callback.
 * Returns whether the command is retired at once (lib/semantics.ts:
 * retiredOnCompletion); its error is then lib/semantics.ts's finalError.
 */
export function deliverCompletion(cmd: PendingCommand, eventError: number, retireError: number): boolean {
  adoptLibnbdError(cmd, eventError);
  // A structured read's chunks checked it already, as they were delivered.
  if (cmd.type === 'read' && cmd.closure === undefined) cmd.bufferLost();
  const bounce = cmd.bounce;
  if (bounce !== undefined) {
    // libnbd is done with the copy. A structured read's chunks copied their
    // bytes out as they were delivered; a plain read's go now (a failed
    // one's only if libnbd zeroed the copy first).
    const succeeded = cmd.error === 0 && retireError === 0;
    const structured = cmd.closure !== undefined;
    if (!structured || !succeeded) copyOutAll(bounce, succeeded);
    cmd.bounce = undefined;
    release(bounce);
  }
  return retiredOnCompletion(cmd.opt, runCompletion(cmd));
}

/**
 * close()'s completion of a command still pending (lib/semantics.ts:
 * errorAtClose): its own error, else ENOTCONN; then its completion callback.
 * Returns the command's error.
 */
export function deliverCompletionAtClose(cmd: PendingCommand): number {
  cmd.error = errorAtClose(cmd.error);
  runCompletion(cmd);
  return cmd.error;
}

/** Runs a command's completion callback, if any; true when it asked for auto-retirement. */
function runCompletion(cmd: PendingCommand): boolean {
  const completion = cmd.completion;
  if (completion === undefined) return false;
  const error: ErrorRef = { value: cmd.error };
  let ret: unknown;
  try {
    ret = completion(error);
  } catch (e) {
    ret = -1;
    cmd.addCause(e);
  }
  // libnbd ignores what an option command's completion returns.
  return cmd.opt ? false : applyCompletionResult(cmd, ret, errorValue(error));
}
