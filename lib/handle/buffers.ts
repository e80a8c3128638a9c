// Stage: a data command's buffer on its way to libnbd. libnbd keeps the
// buffer's address until the command completes, so whatever JS does to the
// buffer meanwhile must neither free that memory under libnbd nor let libnbd
// write where the caller no longer expects it. What JS can do, by Node
// release (markAsUntransferable is the only pin Node offers):
//
// - every release: structuredClone/postMessage leave a marked ArrayBuffer
//   attached (20 copies it, 22 and 24 refuse); WebAssembly.Memory#grow
//   detaches its buffer; a resizable ArrayBuffer can shrink (refused up
//   front by validateBuffer).
// - 20 and 22: a byte stream (ReadableByteStreamController#enqueue, a BYOB
//   read) detaches a marked buffer all the same; 22's transfer() and
//   transferToFixedLength() too, and a transfer to another length frees the
//   memory at once.
// - 24: marking sets V8's detach key, which transfer() and the byte streams
//   honour (they throw) — but WebAssembly.Memory#grow must detach its old
//   buffer and aborts the process when that buffer has a key.
//
// So a buffer goes to libnbd as it is only when nothing can detach it: a
// SharedArrayBuffer, an ArrayBuffer the mark pins (Node 24, WebAssembly
// memory excepted), or a view lib/io allocated and has shown nobody
// (`own`). Any other goes through a copy of the binding's (a bounce), which
// no JS outside this file ever sees: data to write is copied into it at
// issue; read data is copied out into the caller's buffer as JS sees each
// chunk and at completion — if that buffer is still whole; else the read
// fails EFAULT (PendingCommand#bufferLost), as it does in place.
import { types } from 'node:util';
import * as workerThreads from 'node:worker_threads';
import { validateUint32 } from '../validate';

const { markAsUntransferable } = workerThreads;
const { isSharedArrayBuffer } = types;
/** Node >= 21 (the releases where marking may pin). */
const isMarkedAsUntransferable = (workerThreads as { isMarkedAsUntransferable?: (o: object) => boolean }).isMarkedAsUntransferable;

/**
 * A zero-filled Buffer of `size` bytes that libnbd reads into and writes
 * from in place on every Node release, as Python's `nbd.Buffer` and Go's
 * `AioBuffer` are memory of the binding's: its memory is a
 * SharedArrayBuffer, which nothing can detach, free or move while a command
 * uses it. (Any other buffer goes through a copy where Node cannot pin it.)
 */
export function allocBuffer(size: number): Buffer {
  validateUint32(size, 'size');
  return Buffer.from(new SharedArrayBuffer(size));
}

/** One command's copy of a caller's buffer: `copy` is what libnbd sees. */
export class Bounce {
  constructor(
    /** The caller's bytes: all of their view's memory (empty once detached). */
    readonly target: Uint8Array,
    /** As long as `target` was; never handed to other code. */
    readonly copy: Buffer,
    /** libnbd writes into it (a read); else it was copied in at issue. */
    readonly out: boolean,
    /**
     * A read that libnbd zeroed at issue (pread_initialize): the copy then
     * holds nothing but zeroes and this command's bytes even if it fails.
     */
    readonly zeroed: boolean,
  ) {}
}

/**
 * A view's way to libnbd, looked up once per view (`TypedArray#buffer` is a
 * slow getter): null, lent as it is; else the caller's bytes, lent through
 * bounces.
 */
const lendings = new WeakMap<ArrayBufferView, Uint8Array | null>();

/**
 * Copies no command uses, by length, for the next commands of any view:
 * views made per command (subarrays of one big buffer) would otherwise cost
 * an allocation each. Their bytes are stale: a read's are copied out only
 * where libnbd wrote them, or zeroed them first.
 */
const spares = new Map<number, Buffer[]>();
let spareBytes = 0;
const SPARES_MAX = 32 * 1024 * 1024;
const SPARE_MAX = 4 * 1024 * 1024;

/**
 * Whether markAsUntransferable makes an ArrayBuffer non-detachable (Node 24:
 * transfer() of a marked buffer throws). Where it does not, a byte stream
 * detaches a marked buffer too (Node 20 has no transfer(), but its byte
 * streams detach marked buffers all the same).
 */
const markingPins: boolean = (() => {
  const transfer = (ArrayBuffer.prototype as { transfer?: (this: ArrayBuffer) => ArrayBuffer }).transfer;
  if (typeof transfer !== 'function' || isMarkedAsUntransferable === undefined) return false;
  const probe = new ArrayBuffer(1);
  markAsUntransferable(probe);
  try {
    transfer.call(probe);
  } catch {
    // refused: the mark pins
  }
  return probe.byteLength === 1;
})();

/**
 * What structuredClone throws for an ArrayBuffer listed twice in its
 * transfer list: it checks each entry (untransferable, non-detachable)
 * before it looks for duplicates, and detaches nothing when it throws.
 */
function duplicateTransferError(ab: ArrayBuffer): string {
  try {
    structuredClone(undefined, { transfer: [ab, ab] });
  } catch (e) {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  return '';
}
const DUPLICATE = markingPins ? duplicateTransferError(new ArrayBuffer(1)) : '';

/**
 * Whether JS code could detach `ab` (false for WebAssembly memory, which
 * only its grow() detaches), without detaching it: the entry passes
 * structuredClone's checks of a transfer list and fails as a duplicate.
 */
function detachable(ab: ArrayBuffer): boolean {
  return DUPLICATE !== '' && duplicateTransferError(ab) === DUPLICATE;
}

/** How `view` goes to libnbd (its first command). */
function lendingOf(view: ArrayBufferView): Uint8Array | null {
  const length = view.byteLength;
  // Nothing to access (libnbd gets a placeholder address), or memory nothing
  // can take away: a SharedArrayBuffer never detaches, and grows in place.
  if (length === 0) return null;
  const ab = view.buffer;
  // (util.types: a Buffer's ArrayBuffer may come from another realm.)
  if (isSharedArrayBuffer(ab)) return null;
  if (markingPins) {
    if (isMarkedAsUntransferable!(ab)) return null;
    // An unmarked WebAssembly memory must stay so: its grow() would abort.
    if (detachable(ab)) {
      markAsUntransferable(ab);
      return null;
    }
  } else {
    // No pin, but structuredClone and postMessage refuse to transfer it.
    markAsUntransferable(ab);
  }
  return new Uint8Array(ab, view.byteOffset, length);
}

/** The Bounce lend() made for the command being issued, until takeBounce(). */
let issuing: Bounce | undefined;

/**
 * The memory libnbd is given for the command being issued, from lend() until
 * the facade has recorded the command (recorded()). In between nothing else
 * holds it: were JS stopped there (a worker terminated right after the
 * native call), a collection during the env's teardown could free memory
 * libnbd still writes, before the handle's cleanup hook stops libnbd. A
 * stopped isolate runs no further lend(), so this one variable covers the one
 * command that can be caught in that gap; a module's variables stay
 * reachable until the isolate goes, after the cleanup hooks.
 */
let beingIssued: ArrayBufferView | undefined;

/** The command lend() was for is recorded (or refused): its memory is held by the command now. */
export function recorded(): void {
  beingIssued = undefined;
}

/**
 * The view to hand libnbd for `view`: `view` itself, or a Bounce's copy
 * (then takeBounce() returns that Bounce). `out`: libnbd writes into it (a
 * read); `zeroes`: it zeroes it first (the handle's pread_initialize).
 */
export function lend(view: ArrayBufferView, out: boolean, zeroes: boolean): ArrayBufferView {
  if (issuing !== undefined) {
    // Never taken: its native call threw before libnbd saw it.
    release(issuing);
    issuing = undefined;
  }
  beingIssued = view;
  let target = lendings.get(view);
  if (target === null) return view;
  if (target === undefined) {
    target = lendingOf(view);
    lendings.set(view, target);
    if (target === null) return view;
  }
  const length = target.length;
  // Detached since: libnbd gets the empty view, as in place.
  if (length === 0) return view;
  let copy = spares.get(length)?.pop();
  if (copy === undefined) copy = Buffer.allocUnsafeSlow(length);
  else spareBytes -= length;
  if (!out) copy.set(target);
  issuing = new Bounce(target, copy, out, out && zeroes);
  beingIssued = copy;
  return copy;
}

/** The Bounce of the command just issued with `view` (undefined: none, or lent in place). */
export function takeBounce(view: ArrayBufferView | undefined): Bounce | undefined {
  const bounce = issuing;
  if (bounce === undefined || view === undefined) return undefined;
  issuing = undefined;
  return bounce;
}

/** Copies `count` bytes at `sub`, which libnbd wrote, out to the caller's buffer (checked whole by the caller). */
export function copyOut(bounce: Bounce, sub: number, count: number): void {
  const copy = bounce.copy;
  if (sub === 0 && count === copy.length) bounce.target.set(copy);
  else bounce.target.set(copy.subarray(sub, sub + count), sub);
}

/**
 * A read is over: its bytes go to the caller's buffer if that is still
 * whole — all of them when libnbd wrote them all (`complete`) or zeroed the
 * copy first; none else (a failed read's buffer is unspecified, and the
 * copy's stale bytes are another command's).
 */
export function copyOutAll(bounce: Bounce, complete: boolean): void {
  const target = bounce.target;
  if (bounce.out && (complete || bounce.zeroed) && target.length === bounce.copy.length) target.set(bounce.copy);
}

/** libnbd is done with a Bounce: its copy serves a later command. */
export function release(bounce: Bounce): void {
  const copy = bounce.copy;
  const length = copy.length;
  if (length > SPARE_MAX || spareBytes + length > SPARES_MAX) return;
  let list = spares.get(length);
  if (list === undefined) spares.set(length, (list = []));
  list.push(copy);
  spareBytes += length;
}

/**
 * lib/io's own buffers: a view it allocated and shows nobody until its
 * commands have completed, so nothing can detach it: lent as it is.
 * disown() it before handing it out.
 */
export function own(view: ArrayBufferView): void {
  lendings.set(view, null);
}

export function disown(view: ArrayBufferView): void {
  lendings.delete(view);
}
