// The Handle facade: the pending-command table, Promise forms, and delivery
// of the events the native side records. The per-call methods are generated
// (lib/generated/handle-api.ts) and call the protected hooks below.
import type { Readable, Writable } from 'node:stream';
import { markAsUntransferable } from 'node:worker_threads';
import type { NativeHandle, NativePayload } from '../typings/native';
import { binding } from './binding';
import type { ChunkCallback, CompletionCallback, DebugCallback, ErrorRef } from './callbacks';
import { NbdError, closedError, errno, invalidArgValue, libnbdError } from './errors';
import { abortable } from './abort';
import * as wire from './generated/event-wire';
import { HandleApi, type Int64, type Live, type Settle } from './generated/handle-api';
import { extents, type Extent, type ExtentsOptions } from './io/extents';
import { createReadStream, type ReadStreamOptions } from './io/read-stream';
import { createWriteStream, type WriteStreamOptions } from './io/write-stream';
import {
  adoptLibnbdError,
  applyChunkResult,
  applyCompletionResult,
  chunkErrorOnEntry,
  errnoValue,
  finalError,
  type CommandErrorState,
} from './semantics';
import {
  commandOptions,
  driverFromEnv,
  signalOption,
  validateFunction,
  validateUint32,
  validateUint64,
  type CommandOptions,
  type SignalOptions,
} from './validate';

export type Driver = 'loop' | 'thread';

export interface HandleOptions<B extends boolean = false> {
  /**
   * Which driver runs libnbd's state machine: 'loop' (a uv_poll in this
   * thread's event loop) or 'thread' (an I/O thread of the handle's own;
   * connects, name lookups included, run there). Default: LIBNBD_DRIVER, else 'loop'.
   */
  driver?: Driver;
  /** Return sizes and offsets as bigint, as fs.stat({ bigint: true }) does. */
  bigint?: B;
}

/** The driver of handles made without `driver`: LIBNBD_DRIVER, else 'loop' (a bad LIBNBD_DRIVER throws). */
export function defaultDriver(): Driver {
  return driverFromEnv('loop');
}

// Local constants: loads from the generated module's exports object would
// stay generic property loads in optimized code (it has many properties).
const {
  CHUNK_COUNT,
  CHUNK_ERROR,
  CHUNK_SLOT,
  CHUNK_STATUS,
  CHUNK_SUB_OFFSET,
  COMPLETION_ERROR,
  COMPLETION_RETIRE_ERROR,
  COMPLETION_SLOT,
  CONNECTED_ERROR,
  CONNECTED_ID,
  CONNECTION_LOST_ERROR,
  CONTEXT_SLOT,
  DISCONNECTED_ERROR,
  EVENT_CHUNK,
  EVENT_COMPLETION,
  EVENT_CONNECTED,
  EVENT_CONNECTION_LOST,
  EVENT_CONTEXT,
  EVENT_DEBUG,
  EVENT_DISCONNECTED,
  EVENT_EXTENT,
  EVENT_LIST,
  EVENT_STRIDE,
  EXTENT_ERROR,
  EXTENT_SLOT,
  FIELD_KIND,
  HEADER_QUEUED,
  HEADER_SLOT,
  LIST_SLOT,
  READ_ERROR_MARKER,
} = wire;

// The event wire's layout comes from one table (scripts/event-wire.mjs),
// compiled into the native module too: a stale build must not misread it.
if (binding.eventStride !== EVENT_STRIDE || binding.readErrorMarker !== READ_ERROR_MARKER) {
  throw new Error('libnbd: the native module was built from another event wire; rebuild it (npm run build)');
}
let issueOrder = 0;
/** Views whose ArrayBuffer is marked untransferable (Handle#_pin). */
const pinned = new WeakSet<ArrayBufferView>();
const STRIDE = EVENT_STRIDE;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** A read whose buffer was detached or shrunk while in flight fails with this. */
const BUFFER_LOST = 'the buffer was detached or shrunk while the command was in flight';

type Closure = (...args: never[]) => unknown;

/** One issued command, until JS has seen its completion. */
class PendingCommand implements CommandErrorState {
  error = 0;
  replaced = false;
  deferredReadError: CommandErrorState['deferredReadError'] = undefined;
  causes: unknown[] | undefined = undefined;
  /** Calls of the list/context closure (what the Promise forms of opt* resolve with). */
  closureCalls = 0;
  /** When it was issued, for close(): completions in issue order. */
  readonly order = issueOrder++;
  /** What failed, in place of "<type>: command failed" (a lost buffer). */
  what: string | undefined = undefined;
  /** The buffer's length when issued: a smaller one now means it was detached or shrunk. */
  readonly length: number;

  constructor(
    /** The cookie (an option command's id, negative). */
    readonly cookie: number,
    /** libnbd's name of the command, for "<type>: command failed". */
    readonly type: string,
    readonly buf: ArrayBufferView | undefined,
    readonly offset: number | bigint | undefined,
    readonly closure: Closure | undefined,
    readonly completion: CompletionCallback | undefined,
    /** Promise forms: settles the Promise (the command is then retired). */
    readonly settle: Settle | undefined,
    /** Option commands: libnbd retires them itself. */
    readonly opt: boolean,
  ) {
    this.length = buf === undefined ? 0 : buf.byteLength;
  }

  /** True once the buffer of a read can no longer be seen whole: the command then fails EFAULT. */
  bufferLost(): boolean {
    const buf = this.buf;
    if (buf === undefined || buf.byteLength === this.length) return false;
    if (this.error === 0) this.error = errno.EFAULT;
    this.what ??= `${this.type}: ${BUFFER_LOST}`;
    return true;
  }

  addCause(e: unknown): void {
    (this.causes ??= []).push(e);
  }

  cause(): unknown {
    const c = this.causes;
    if (c === undefined) return undefined;
    return c.length === 1 ? c[0] : new AggregateError(c, 'several callbacks of one command threw');
  }
}

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
  /** The libnbd call the Promise stands for, in its error messages. */
  api: string;
}

/**
 * The error as the synchronous libnbd call would word it: a sync call runs
 * its aio twin (and the state machine) under its own name, so libnbd's
 * message starts "nbd_pwrite: ", not "nbd_aio_pwrite: ".
 */
function renameApi<T>(e: T, api: string): T {
  if (!(e instanceof NbdError) || !/^nbd_\w+: /.test(e.message)) return e;
  const renamed = new NbdError(e.message.replace(/^nbd_\w+: /, `${api}: `), e.errno, e.cause === undefined ? undefined : { cause: e.cause });
  // Keep where it was thrown, with the message the stack's first line shows.
  if (typeof e.stack === 'string') renamed.stack = e.stack.replace(e.message, renamed.message);
  return renamed as T;
}

/** `error.value` as libnbd's int, set before a callback returned or threw; a getter of the user's may throw too. */
function errorValue(error: ErrorRef): number {
  try {
    return errnoValue(error.value);
  } catch {
    return 0;
  }
}

/** Reads a property of a thrown value that may throw itself (a getter, a Proxy). */
function shown(value: unknown, read: (v: object) => unknown): string | undefined {
  try {
    if (typeof value !== 'object' || value === null) return undefined;
    const v = read(value);
    return v === undefined ? undefined : String(v);
  } catch {
    return undefined;
  }
}

function text(value: unknown): string {
  const message = shown(value, (v) => ('message' in v ? (v as { message: unknown }).message : undefined));
  if (message !== undefined) return message;
  try {
    return String(value);
  } catch {
    return '(a thrown value that cannot be shown)';
  }
}

/**
 * Reports callback throws that no NbdError will carry. A string warning:
 * process.emitWarning refuses Error objects of another realm (jest, vm).
 * Never throws, whatever was thrown: event delivery must go on.
 */
function reportLostCauses(causes: unknown[] | undefined, what = 'a libnbd callback threw but its command succeeded'): void {
  if (causes === undefined) return;
  for (const c of causes) {
    try {
      const stack = shown(c, (v) => ('stack' in v ? (v as { stack: unknown }).stack : undefined));
      process.emitWarning(`${what}: ${text(c)}`, { type: 'NbdCallbackWarning', detail: stack });
    } catch {
      // Nothing left to report it with.
    }
  }
}

// Symbol.asyncDispose / Symbol.dispose: defined by Node >= 20.4 (and 18.18);
// the registered symbols Node's own polyfill used, where an older runtime lacks them.
const asyncDispose: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? (Symbol.for('nodejs.asyncDispose') as typeof Symbol.asyncDispose);
const dispose: typeof Symbol.dispose = Symbol.dispose ?? (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

/** A callback's throw that an aborted Promise form no longer reports. */
function reportAbortedCause(e: unknown): void {
  if (e instanceof NbdError && e.cause !== undefined) {
    reportLostCauses([e.cause], 'a libnbd callback threw but its command\'s Promise was aborted');
  }
}

/**
 * One libnbd handle. An EventEmitter: `'disconnect'` is emitted once per
 * connection when it ends — with `undefined` after a clean shutdown, with an
 * NbdError when it ended any other way (the server went away, even while
 * idle), without a command having to be issued to find out. It never emits
 * `'error'`: no listener is needed.
 */
export class Handle<B extends boolean = false> extends HandleApi<B> {
  readonly #native: NativeHandle;
  readonly #eventSink: (count: number, payloads?: (NativePayload | undefined)[]) => void;
  readonly #events: Float64Array;
  readonly #bigint: boolean;
  #closed = false;
  /**
   * Issued commands whose completion JS has not yet seen, by the slot the
   * native side gave each (events name commands by slot; a slot is reused
   * only after JS has seen its completion).
   */
  readonly #slots: (PendingCommand | undefined)[] = [];
  #pendingCount = 0;
  /** Completed, not auto-retired, not yet retired by aioCommandCompleted: cookie -> [errno, cause, what failed]. */
  readonly #done = new Map<number, [number, unknown, string]>();
  /** connect*() calls waiting for their connect to end, by the id the native side gave it. */
  readonly #connectWaiters = new Map<number, Waiter>();
  /** shutdown()/optAbort() calls waiting for the connection to close. */
  #disconnectWaiters: Waiter[] = [];
  #disconnectInFlight = false;
  #debugCallback: DebugCallback | undefined;

  constructor(options: HandleOptions<B> = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgValue('options', 'must be an object', options);
    }
    const driver = options.driver ?? defaultDriver();
    if (driver !== 'loop' && driver !== 'thread') {
      throw invalidArgValue('options.driver', "must be 'loop' or 'thread'", driver);
    }
    this.#bigint = options.bigint === true;
    // The native side holds this sink only weakly while idle, so that an
    // unreachable idle handle can be collected: the facade must keep it.
    this.#eventSink = (n, payloads) => this.#onEvents(n, payloads);
    this.#native = new binding.Handle(this.#eventSink, driver);
    this.#events = this.#native.events;
  }

  // ------------------------------------------------------------ hooks of the generated methods

  protected _native(): NativeHandle {
    if (this.#closed) throw closedError();
    return this.#native;
  }

  protected _raise(): never {
    throw this.#lastError();
  }

  protected _int64(v: number | bigint): Int64<B> {
    return (this.#bigint ? BigInt(v) : v) as Int64<B>;
  }

  protected _afterCall(): void {
    if (this.#events[HEADER_QUEUED] !== 0) this.#native.drain();
  }

  protected _pin(buf: ArrayBufferView): void {
    // libnbd accesses the buffer until the command completes: it must not be
    // detached by a transfer meanwhile. Marked once per view: a WeakSet
    // lookup is much cheaper than the \`buffer\` getter and the marking.
    if (pinned.has(buf)) return;
    markAsUntransferable(buf.buffer);
    pinned.add(buf);
  }

  protected _register(
    cookie: number,
    type: string,
    buf: ArrayBufferView | undefined,
    offset: number | bigint | undefined,
    closure: Closure | undefined,
    completion: CompletionCallback | null | undefined,
    settle: Settle | undefined,
  ): number {
    if (cookie === -1) throw this.#lastError();
    this.#slots[this.#events[HEADER_SLOT]] = new PendingCommand(cookie, type, buf, offset, closure, completion ?? undefined, settle, false);
    this.#pendingCount++;
    this._afterCall();
    return cookie;
  }

  protected _registerOpt(
    id: number,
    closure: Closure | undefined,
    completion: CompletionCallback | null | undefined,
    settle: Settle | undefined,
  ): void {
    if (id === -1) throw this.#lastError();
    this.#slots[this.#events[HEADER_SLOT]] = new PendingCommand(id, 'option', undefined, undefined, closure, completion ?? undefined, settle, true);
    this.#pendingCount++;
    this._afterCall();
  }

  protected _promise(api: string, type: string, signal: AbortSignal | undefined, start: (settle: Settle, live: Live) => void): Promise<void> {
    return abortable(signal, (live) => this.#commandPromise(api, `${type}: command failed`, () => undefined, (settle) => start(settle, live)),
      undefined, reportAbortedCause);
  }

  protected _promiseOpt(api: string, signal: AbortSignal | undefined, start: (settle: Settle, live: Live) => void): Promise<number> {
    const request = api.replace(/^nbd_/, '');
    return abortable(signal, (live) => this.#commandPromise(api, `server replied with error to ${request} request`, (calls) => calls,
      (settle) => start(settle, live)), undefined, reportAbortedCause);
  }

  /** A Promise form: settles with the command; errors worded as the sync call `api` words them. */
  #commandPromise<T>(api: string, failure: string, result: (closureCalls: number) => T, start: (settle: Settle) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const settle: Settle = (err, cause, closureCalls, what) => {
        if (err === 0) {
          reportLostCauses(cause === undefined ? undefined : [cause]);
          resolve(result(closureCalls));
        } else {
          reject(libnbdError(api, err, what ?? failure, cause));
        }
      };
      try {
        start(settle);
      } catch (e) {
        reject(renameApi(e, api));
      }
    });
  }

  protected _connect(api: string, signal: AbortSignal | undefined, start: (n: NativeHandle) => number): Promise<void> {
    // A connect cannot be abandoned: aborting it closes the handle.
    return abortable(signal, () => this.#startConnection('connect', api, start), () => this.close());
  }

  // ------------------------------------------------------------ plumbing

  #lastError(): NbdError {
    if (this.#closed) return closedError();
    const [errnum, message] = this.#native.lastError();
    return new NbdError(message, errnum);
  }

  #offsetOut(base: number | bigint, sub: number): Int64<B> {
    if (typeof base === 'number') {
      const abs = base + sub;
      if (abs <= MAX_SAFE) return (this.#bigint ? BigInt(abs) : abs) as Int64<B>;
    }
    const big = BigInt(base) + BigInt(sub);
    return (this.#bigint || big > BigInt(MAX_SAFE) ? big : Number(big)) as Int64<B>;
  }

  // ------------------------------------------------------------ event delivery

  #onEvents(n: number, payloads?: (NativePayload | undefined)[]): void {
    const ev = this.#events;
    let failed = false;
    let failure: unknown;
    for (let i = 0, p = STRIDE; i < n && !this.#closed; i++, p += STRIDE) {
      // User code is caught where it runs; whatever else throws must not
      // cost the rest of the batch its delivery (the native side has
      // retired those commands already).
      try {
        const kind = ev[p + FIELD_KIND];
        if (kind === EVENT_CHUNK) {
          const cmd = this.#slots[ev[p + CHUNK_SLOT]];
          if (cmd !== undefined) this.#deliverChunk(cmd, ev[p + CHUNK_STATUS], ev[p + CHUNK_ERROR], ev[p + CHUNK_SUB_OFFSET], ev[p + CHUNK_COUNT]);
        } else if (kind === EVENT_COMPLETION) {
          const slot = ev[p + COMPLETION_SLOT];
          const cmd = this.#slots[slot];
          if (cmd !== undefined) {
            this.#slots[slot] = undefined;
            this.#pendingCount--;
            this.#deliverCompletion(cmd, ev[p + COMPLETION_ERROR], ev[p + COMPLETION_RETIRE_ERROR]);
          }
        } else if (kind === EVENT_EXTENT) {
          const cmd = this.#slots[ev[p + EXTENT_SLOT]];
          if (cmd !== undefined) this.#deliverExtent(cmd, ev[p + EXTENT_ERROR], payloads![i]!);
        } else if (kind === EVENT_LIST || kind === EVENT_CONTEXT) {
          const cmd = this.#slots[ev[p + (kind === EVENT_LIST ? LIST_SLOT : CONTEXT_SLOT)]];
          if (cmd !== undefined) this.#deliverListing(cmd, kind, payloads![i]!);
        } else if (kind === EVENT_DEBUG) {
          this.#deliverDebug(payloads![i]!);
        } else if (kind === EVENT_CONNECTED) {
          this.#connectEnded(ev[p + CONNECTED_ID], ev[p + CONNECTED_ERROR], payloads?.[i]);
        } else if (kind === EVENT_DISCONNECTED) {
          this.#disconnectInFlight = false;
          this.#disconnectEnded(ev[p + DISCONNECTED_ERROR], payloads?.[i]);
        } else if (kind === EVENT_CONNECTION_LOST) {
          this.emit('disconnect', new NbdError(payloads![i]!.message!, ev[p + CONNECTION_LOST_ERROR]));
        }
      } catch (e) {
        if (!failed) {
          failed = true;
          failure = e;
        }
      }
    }
    if (failed) throw failure; // a bug of the binding's own: reported once the batch is delivered
  }

  #deliverChunk(cmd: PendingCommand, status: number, eventError: number, sub: number, count: number): void {
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
      ret = chunk(subbuf, this.#offsetOut(cmd.offset!, sub), status, error);
    } catch (e) {
      ret = -1;
      cmd.addCause(e);
    }
    applyChunkResult(cmd, status, eventError, ret, errorValue(error));
  }

  /** Block status: the chunk rule for DATA (first error sticks; -1 with 0 is EPROTO). */
  #deliverExtent(cmd: PendingCommand, eventError: number, payload: NativePayload): void {
    const entry = chunkErrorOnEntry(cmd, 0, eventError);
    const extent = cmd.closure as ((...args: unknown[]) => unknown) | undefined;
    if (extent === undefined) return;
    const error: ErrorRef = { value: entry };
    let ret: unknown;
    try {
      ret = extent(payload.context, this._int64(payload.offset!), payload.entries, error);
    } catch (e) {
      ret = -1;
      cmd.addCause(e);
    }
    applyChunkResult(cmd, 0, eventError, ret, errorValue(error));
  }

  /** list and context callbacks: libnbd ignores what they return. */
  #deliverListing(cmd: PendingCommand, kind: number, payload: NativePayload): void {
    cmd.closureCalls++;
    const f = cmd.closure as ((...args: unknown[]) => unknown) | undefined;
    if (f === undefined) return;
    try {
      if (kind === EVENT_LIST) f(payload.name, payload.description);
      else f(payload.name);
    } catch (e) {
      cmd.addCause(e);
    }
  }

  #deliverDebug(payload: NativePayload): void {
    const f = this.#debugCallback;
    if (f === undefined) return;
    try {
      f(payload.context!, payload.message!);
    } catch (e) {
      reportLostCauses([e], 'a libnbd debug callback threw');
    }
  }

  #deliverCompletion(cmd: PendingCommand, eventError: number, retireError: number): void {
    adoptLibnbdError(cmd, eventError);
    // A structured read's chunks checked it already, as they were delivered.
    if (cmd.type === 'read' && cmd.closure === undefined) cmd.bufferLost();
    const autoRetire = this.#runCompletion(cmd) || cmd.opt;
    const err = finalError(cmd, retireError);
    if (cmd.settle !== undefined) {
      cmd.settle(err, cmd.cause(), cmd.closureCalls, cmd.what);
    } else if (!autoRetire) {
      this.#done.set(cmd.cookie, [err, cmd.cause(), cmd.what ?? `${cmd.type}: command failed`]);
      if (err === 0) reportLostCauses(cmd.causes);
    } else {
      // Nobody can ask about an auto-retired command: never lose a throw.
      reportLostCauses(cmd.causes);
    }
  }

  /** Runs a command's completion callback, if any; true when it asked for auto-retirement. */
  #runCompletion(cmd: PendingCommand): boolean {
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

  #connectEnded(id: number, errnum: number, failure: NativePayload | undefined): void {
    const w = this.#connectWaiters.get(id);
    if (w === undefined) return;
    this.#connectWaiters.delete(id);
    if (failure === undefined) w.resolve();
    else w.reject(renameApi(new NbdError(failure.message!, errnum), w.api));
  }

  #disconnectEnded(errnum: number, failure: NativePayload | undefined): void {
    const waiters = this.#disconnectWaiters;
    this.#disconnectWaiters = [];
    for (const w of waiters) {
      if (failure === undefined) w.resolve();
      else w.reject(renameApi(new NbdError(failure.message!, errnum), w.api));
    }
    this.emit('disconnect', failure === undefined ? undefined : new NbdError(failure.message!, errnum));
  }

  // ------------------------------------------------------------ command tracking

  /**
   * `nbd_aio_command_completed`: false while in flight, unknown or retired;
   * true once completed successfully (and retires it); throws the command's
   * NbdError once it completed with an error (and retires it).
   */
  aioCommandCompleted(cookie: number | bigint): boolean {
    validateUint64(cookie, 'cookie');
    const n = this._native();
    if (cookie === 0 || cookie === 0n) {
      n.aioCommandCompleted(0); // libnbd's own EINVAL and message
      this._raise();
    }
    const key = Number(cookie);
    const done = this.#done.get(key);
    if (done === undefined) return false;
    this.#done.delete(key);
    const [err, cause, what] = done;
    if (err !== 0) throw libnbdError('nbd_aio_command_completed', err, what, cause);
    return true;
  }

  /**
   * `nbd_aio_peek_command_completed`: the oldest completed, unretired
   * cookie; 0 if commands are in flight but none has completed; throws EINVAL
   * when nothing is in flight.
   */
  aioPeekCommandCompleted(): number {
    this._native();
    for (const cookie of this.#done.keys()) return cookie;
    if (this.#inFlight() > 0) return 0;
    throw libnbdError('nbd_aio_peek_command_completed', errno.EINVAL, 'no commands are in flight');
  }

  /** `nbd_aio_in_flight`: commands (and a pending disconnect) whose completion JS has not seen. */
  aioInFlight(): number {
    const r = this._native().aioInFlight();
    if (r === -1) this._raise();
    return this.#inFlight();
  }

  #inFlight(): number {
    return this.#pendingCount + (this.#disconnectInFlight ? 1 : 0);
  }

  // ------------------------------------------------------------ connecting and disconnecting

  /**
   * Starts a connect or disconnect; `api` names the libnbd call the Promise
   * stands for. `start` returns -1 on failure, else a connect's id (its end
   * is reported with it) or 0 for a disconnect.
   */
  #startConnection(which: 'connect' | 'disconnect', api: string, start: (n: NativeHandle) => number): Promise<void> {
    let n: NativeHandle;
    try {
      n = this._native();
    } catch (e) {
      return Promise.reject(e);
    }
    const id = start(n);
    if (id === -1) return Promise.reject(renameApi(this.#lastError(), api));
    const p = which === 'connect' ? this.#waitForConnect(id, api) : this.#waitFor('disconnect', api);
    this._afterCall();
    return p;
  }

  #waitForConnect(id: number, api: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#connectWaiters.set(id, { resolve, reject, api });
    });
  }

  #waitFor(_which: 'disconnect', api: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#disconnectWaiters.push({ resolve, reject, api });
    });
  }

  /** `nbd_aio_disconnect`: queue NBD_CMD_DISC; commands pending are sent first unless SHUTDOWN_ABANDON_PENDING. */
  aioDisconnect(flags = 0): void {
    validateUint32(flags, 'flags');
    const n = this._native();
    if (n.aioDisconnect(flags) === -1) this._raise();
    this.#disconnectInFlight = true;
    this._afterCall();
  }

  /**
   * `nbd_shutdown` as a Promise: disconnect cleanly (unless a disconnect is
   * already queued) and wait for the server to close the connection.
   */
  shutdown(options: number | CommandOptions = 0): Promise<void> {
    const { flags, signal } = commandOptions(options);
    // Aborting rejects the Promise; the disconnect goes on.
    return abortable(signal, () => {
      // As nbd_shutdown: no second NBD_CMD_DISC when one is already on its way
      // (#disconnectInFlight is false once closed: close() rejects as usual).
      if (this.#disconnectInFlight && !this.#closed) return this.#waitFor('disconnect', 'nbd_shutdown');
      return this.#startConnection('disconnect', 'nbd_shutdown', (native) => {
        const r = native.aioDisconnect(flags);
        if (r !== -1) this.#disconnectInFlight = true;
        return r;
      });
    });
  }

  /** `nbd_aio_opt_abort`: end option negotiation without an export. */
  aioOptAbort(): void {
    const n = this._native();
    if (n.aioOptAbort() === -1) this._raise();
    this._afterCall();
  }

  /** `nbd_opt_abort` as a Promise: end negotiation and wait for the connection to close. */
  optAbort(options?: SignalOptions): Promise<void> {
    const signal = signalOption(options);
    return abortable(signal, () => this.#startConnection('disconnect', 'nbd_opt_abort', (n) => n.aioOptAbort()));
  }

  // ------------------------------------------------------------ debug messages

  /**
   * `nbd_set_debug_callback`: libnbd's debug messages (on with
   * setDebug(true) or LIBNBD_DEBUG=1) go to `callback` instead of stderr,
   * whatever thread produced them, after the libnbd call that produced them.
   */
  setDebugCallback(callback: DebugCallback): void {
    validateFunction(callback, 'callback');
    const n = this._native();
    if (n.setDebugCallback() === -1) this._raise();
    this.#debugCallback = callback;
    this._afterCall();
  }

  /** `nbd_clear_debug_callback`: debug messages go to stderr again. */
  clearDebugCallback(): void {
    const n = this._native();
    if (n.clearDebugCallback() === -1) this._raise();
    this._afterCall();
    this.#debugCallback = undefined;
  }

  // ------------------------------------------------------------ lib/io: streams, extents (thin delegations to lib/io)

  /**
   * A Readable of the export's bytes from `start` to `end` inclusive (as
   * fs.createReadStream; default: the whole export), in order, with at most
   * `queueDepth` reads in flight. See lib/io/read-stream.ts.
   */
  createReadStream(options?: ReadStreamOptions): Readable {
    return createReadStream(this as Handle<boolean>, options);
  }

  /**
   * A Writable writing the export from `start` on: small writes coalesced
   * up to `highWaterMark`, at most `queueDepth` writes in flight, 'finish'
   * once every write completed (and, with `flush: true`, was flushed). See
   * lib/io/write-stream.ts.
   */
  createWriteStream(options?: WriteStreamOptions): Writable {
    return createWriteStream(this as Handle<boolean>, options);
  }

  /**
   * The extents of `[start, end)` (default: the whole export) in `context`
   * (default 'base:allocation'), contiguous and merged; the handle must have
   * been connected with the context added. See lib/io/extents.ts.
   */
  extents(options?: ExtentsOptions): AsyncGenerator<Extent, void, undefined> {
    return extents(this, options);
  }

  // ------------------------------------------------------------ explicit resource management

  /**
   * `await using h = await connect(uri)`: shut down cleanly if connected
   * (optAbort while negotiating), then close. Never throws: a dead
   * connection or an already closed handle is just closed.
   */
  async [asyncDispose](): Promise<void> {
    if (this.#closed) return;
    try {
      if (this.aioIsNegotiating()) await this.optAbort();
      else if (this.aioIsReady() || this.aioIsProcessing()) await this.shutdown();
    } catch {
      // Nothing left to shut down cleanly.
    } finally {
      this.close();
    }
  }

  /** `using h = ...`: close() (no shutdown, which would have to wait). */
  [dispose](): void {
    this.close();
  }

  // ------------------------------------------------------------ closing

  /** True once close() has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * `nbd_close`. Synchronous and idempotent. Every command still pending
   * gets its completion callback once (error ENOTCONN, or its own error) and
   * its Promise rejects; later calls throw NbdError EINVAL.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.close();
    // In issue order, as libnbd 1.18's nbd_close completes them.
    const pending = this.#slots.filter((c): c is PendingCommand => c !== undefined).sort((a, b) => a.order - b.order);
    this.#slots.length = 0;
    this.#pendingCount = 0;
    this.#done.clear();
    this.#disconnectInFlight = false;
    for (const cmd of pending) {
      if (cmd.error === 0) cmd.error = errno.ENOTCONN;
      try {
        this.#runCompletion(cmd);
        if (cmd.settle !== undefined) cmd.settle(cmd.error, cmd.cause(), cmd.closureCalls, cmd.what);
        else reportLostCauses(cmd.causes);
      } catch {
        // Each pending command settles whatever another one did.
      }
    }
    const closedWhileConnecting = libnbdError('nbd_close', errno.ENOTCONN, 'handle closed');
    const waiters = [...this.#connectWaiters.values(), ...this.#disconnectWaiters];
    this.#connectWaiters.clear();
    this.#disconnectWaiters = [];
    for (const w of waiters) w.reject(closedWhileConnecting);
  }
}

