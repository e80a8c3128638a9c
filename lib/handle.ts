// The Handle facade: typed libnbd calls, the pending-command table, Promise
// forms, and delivery of the events the native side records.
import { markAsUntransferable } from 'node:worker_threads';
import type { NativeHandle } from '../typings/native';
import { binding } from './binding';
import { NbdError, closedError, errno, invalidArgValue, libnbdError } from './errors';
import { HandleApi, type Int64 } from './generated/handle-api';
import {
  READ_ERROR_STATUS,
  adoptLibnbdError,
  applyChunkResult,
  applyCompletionResult,
  chunkErrorOnEntry,
  errnoValue,
  finalError,
  type CommandErrorState,
} from './semantics';
import {
  toNativeUint64,
  validateBuffer,
  validateFunction,
  validateOptionalFunction,
  validateString,
  validateStringArray,
  validateUint32,
  validateUint64,
} from './validate';

/** A mutable errno, as libnbd's `int *error`. */
export interface ErrorRef {
  value: number;
}

/**
 * Called for each chunk of a structured read, in libnbd's order.
 * `subbuf` is a zero-copy view of the caller's buffer; `offset` is absolute.
 * Return -1 (or throw) to fail the command; other values are ignored.
 */
export type ChunkCallback<B extends boolean = boolean> = (
  subbuf: Buffer | Uint8Array,
  offset: Int64<B>,
  status: number,
  error: ErrorRef,
) => unknown;

/**
 * Called once per command after its chunks. Return -1 with a non-zero
 * `error.value` to replace the command's error; return 1 to auto-retire.
 */
export type CompletionCallback = (error: ErrorRef) => unknown;

export type Driver = 'loop' | 'thread';

export interface HandleOptions<B extends boolean = false> {
  /**
   * Which driver runs libnbd's state machine: 'loop' (a uv_poll in this
   * thread's event loop) or 'thread' (an I/O thread of the handle's own;
   * connects, name lookups included, run there).
   */
  driver?: Driver;
  /** Return sizes and offsets as bigint, as fs.stat({ bigint: true }) does. */
  bigint?: B;
}

const EVENT_CHUNK = 1;
const EVENT_COMPLETION = 2;
const EVENT_CONNECTED = 3;
const EVENT_DISCONNECTED = 4;
const STRIDE = binding.eventStride;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

type Settle = (error: number, cause: unknown) => void;

/** One issued command, until JS has seen its completion. */
class PendingCommand implements CommandErrorState {
  error = 0;
  replaced = false;
  deferredReadError: CommandErrorState['deferredReadError'] = undefined;
  causes: unknown[] | undefined = undefined;

  constructor(
    readonly buf: ArrayBufferView,
    readonly offset: number | bigint,
    readonly chunk: ChunkCallback | undefined,
    readonly completion: CompletionCallback | undefined,
    /** Promise forms: settles the Promise (the command is then retired). */
    readonly settle: Settle | undefined,
  ) {}

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
}

/**
 * Reports callback throws that no NbdError will carry. A string warning:
 * process.emitWarning refuses Error objects of another realm (jest, vm).
 */
function reportLostCauses(causes: unknown[] | undefined): void {
  if (causes === undefined) return;
  for (const c of causes) {
    const stack = typeof c === 'object' && c !== null && 'stack' in c ? String((c as { stack: unknown }).stack) : undefined;
    const text = typeof c === 'object' && c !== null && 'message' in c ? String((c as { message: unknown }).message) : String(c);
    process.emitWarning(`a libnbd callback threw but its command succeeded: ${text}`, {
      type: 'NbdCallbackWarning',
      detail: stack,
    });
  }
}

/** The driver of handles made without `driver`: LIBNBD_DRIVER, else 'loop'. */
export function defaultDriver(): Driver {
  const fromEnv = process.env.LIBNBD_DRIVER;
  return fromEnv === 'thread' || fromEnv === 'loop' ? fromEnv : 'loop';
}

export class Handle<B extends boolean = false> extends HandleApi<B> {
  readonly #native: NativeHandle;
  readonly #eventSink: (count: number) => void;
  readonly #events: Float64Array;
  readonly #bigint: boolean;
  #closed = false;
  /** Issued commands whose completion JS has not yet seen, by cookie. */
  readonly #pending = new Map<number, PendingCommand>();
  /** Completed, not auto-retired, not yet retired by aioCommandCompleted: cookie -> [errno, cause]. */
  readonly #done = new Map<number, [number, unknown]>();
  #connectWaiter: Waiter | undefined;
  #disconnectWaiter: Waiter | undefined;
  #disconnectInFlight = false;

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
    this.#eventSink = (n: number) => this.#onEvents(n);
    this.#native = new binding.Handle(this.#eventSink, driver);
    this.#events = this.#native.events;
  }

  // ------------------------------------------------------------ plumbing

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

  #lastError(): NbdError {
    if (this.#closed) return closedError();
    const [errnum, message] = this.#native.lastError();
    return new NbdError(message, errnum);
  }

  /** Delivers events a call from JS queued (e.g. a completion on a dead connection). */
  #afterCall(): void {
    if (this.#events[0] !== 0) this.#native.drain();
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

  #onEvents(n: number): void {
    const ev = this.#events;
    for (let i = 0, p = STRIDE; i < n && !this.#closed; i++, p += STRIDE) {
      switch (ev[p]) {
        case EVENT_CHUNK: {
          const cmd = this.#pending.get(ev[p + 1]);
          if (cmd !== undefined) this.#deliverChunk(cmd, ev[p + 2], ev[p + 3], ev[p + 4], ev[p + 5]);
          break;
        }
        case EVENT_COMPLETION: {
          const cookie = ev[p + 1];
          const cmd = this.#pending.get(cookie);
          if (cmd !== undefined) this.#deliverCompletion(cookie, cmd, ev[p + 3], ev[p + 4]);
          break;
        }
        case EVENT_CONNECTED:
          this.#settleWaiter('connect', ev[p + 3]);
          break;
        case EVENT_DISCONNECTED:
          this.#disconnectInFlight = false;
          this.#settleWaiter('disconnect', ev[p + 3]);
          break;
      }
    }
  }

  #deliverChunk(cmd: PendingCommand, status: number, eventError: number, sub: number, count: number): void {
    const entry = chunkErrorOnEntry(cmd, status, eventError);
    const chunk = cmd.chunk;
    if (chunk === undefined) {
      applyChunkResult(cmd, status, eventError, 0, 0);
      return;
    }
    const buf = cmd.buf;
    // One chunk for the whole request is the common case (nbdkit): the
    // caller's own Uint8Array/Buffer is that view, no new object needed.
    const subbuf =
      sub === 0 && count === buf.byteLength && buf instanceof Uint8Array
        ? buf
        : Buffer.isBuffer(buf)
          ? buf.subarray(sub, sub + count)
          : new Uint8Array(buf.buffer, buf.byteOffset + sub, count);
    const error: ErrorRef = { value: entry };
    let ret: unknown;
    try {
      ret = chunk(subbuf, this.#offsetOut(cmd.offset, sub), status, error);
    } catch (e) {
      ret = -1;
      cmd.addCause(e);
    }
    applyChunkResult(cmd, status, eventError, ret, errnoValue(error.value));
  }

  #deliverCompletion(cookie: number, cmd: PendingCommand, eventError: number, retireError: number): void {
    this.#pending.delete(cookie);
    adoptLibnbdError(cmd, eventError);
    let autoRetire = false;
    const completion = cmd.completion;
    if (completion !== undefined) {
      const error: ErrorRef = { value: cmd.error };
      let ret: unknown;
      try {
        ret = completion(error);
      } catch (e) {
        ret = -1;
        cmd.addCause(e);
      }
      autoRetire = applyCompletionResult(cmd, ret, errnoValue(error.value));
    }
    const err = finalError(cmd, retireError);
    if (cmd.settle !== undefined) {
      cmd.settle(err, cmd.cause());
    } else if (!autoRetire) {
      this.#done.set(cookie, [err, cmd.cause()]);
      if (err === 0) reportLostCauses(cmd.causes);
    } else {
      // Nobody can ask about an auto-retired command: never lose a throw.
      reportLostCauses(cmd.causes);
    }
  }

  #settleWaiter(which: 'connect' | 'disconnect', err: number): void {
    const w = which === 'connect' ? this.#connectWaiter : this.#disconnectWaiter;
    if (which === 'connect') this.#connectWaiter = undefined;
    else this.#disconnectWaiter = undefined;
    if (w === undefined) return;
    if (err === 0) return w.resolve();
    const [errnum, message] = this.#native.connectionError();
    w.reject(new NbdError(message, errnum || err));
  }

  // ------------------------------------------------------------ commands

  #issue(
    structured: boolean,
    buf: ArrayBufferView,
    offset: number | bigint,
    chunk: ChunkCallback | undefined,
    completion: CompletionCallback | undefined,
    flags: number,
    settle: Settle | undefined,
  ): number {
    const n = this._native();
    // libnbd writes into the buffer until the command completes: it must not
    // be detached by a transfer meanwhile.
    markAsUntransferable(buf.buffer);
    const nativeOffset = toNativeUint64(offset);
    const cookie = structured ? n.aioPreadStructured(buf, nativeOffset, flags) : n.aioPread(buf, nativeOffset, flags);
    if (cookie === -1) throw this.#lastError();
    this.#pending.set(cookie, new PendingCommand(buf, offset, chunk, completion, settle));
    this.#afterCall();
    return cookie;
  }

  /**
   * `nbd_aio_pread_structured`: issue a structured read into `buf` (its
   * byteLength is the count). Returns the cookie. Callbacks run after libnbd
   * returns, never inside it, so they may issue further commands.
   */
  aioPreadStructured(
    buf: ArrayBufferView,
    offset: number | bigint,
    chunk: ChunkCallback<B>,
    completion?: CompletionCallback | null,
    flags = 0,
  ): number {
    validateBuffer(buf, 'buf');
    validateUint64(offset, 'offset');
    validateFunction(chunk, 'chunk');
    validateOptionalFunction(completion, 'completion');
    validateUint32(flags, 'flags');
    return this.#issue(true, buf, offset, chunk as ChunkCallback, completion ?? undefined, flags, undefined);
  }

  /** `nbd_aio_pread`: issue a read into `buf`. Returns the cookie. */
  aioPread(buf: ArrayBufferView, offset: number | bigint, completion?: CompletionCallback | null, flags = 0): number {
    validateBuffer(buf, 'buf');
    validateUint64(offset, 'offset');
    validateOptionalFunction(completion, 'completion');
    validateUint32(flags, 'flags');
    return this.#issue(false, buf, offset, undefined, completion ?? undefined, flags, undefined);
  }

  #promiseRead(
    api: string,
    structured: boolean,
    buf: ArrayBufferView,
    offset: number | bigint,
    chunk: ChunkCallback | undefined,
    flags: number,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const settle: Settle = (err, cause) => {
        if (err === 0) {
          reportLostCauses(cause === undefined ? undefined : [cause]);
          resolve();
        } else {
          reject(libnbdError(api, err, 'read: command failed', cause));
        }
      };
      try {
        this.#issue(structured, buf, offset, chunk, undefined, flags, settle);
      } catch (e) {
        reject(e);
      }
    });
  }

  /** `nbd_pread_structured` as a Promise: resolves when the read succeeded. */
  preadStructured(buf: ArrayBufferView, offset: number | bigint, chunk: ChunkCallback<B>, flags = 0): Promise<void> {
    validateBuffer(buf, 'buf');
    validateUint64(offset, 'offset');
    validateFunction(chunk, 'chunk');
    validateUint32(flags, 'flags');
    return this.#promiseRead('nbd_pread_structured', true, buf, offset, chunk as ChunkCallback, flags);
  }

  /** `nbd_pread` as a Promise: fills `buf` from `offset`. */
  pread(buf: ArrayBufferView, offset: number | bigint, flags = 0): Promise<void> {
    validateBuffer(buf, 'buf');
    validateUint64(offset, 'offset');
    validateUint32(flags, 'flags');
    return this.#promiseRead('nbd_pread', false, buf, offset, undefined, flags);
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
    const [err, cause] = done;
    if (err !== 0) throw libnbdError('nbd_aio_command_completed', err, 'read: command failed', cause);
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
    return this.#pending.size + (this.#disconnectInFlight ? 1 : 0);
  }

  // ------------------------------------------------------------ connecting

  #startConnection(which: 'connect' | 'disconnect', start: (n: NativeHandle) => number): Promise<void> {
    let n: NativeHandle;
    try {
      n = this._native();
    } catch (e) {
      return Promise.reject(e);
    }
    if (start(n) === -1) return Promise.reject(this.#lastError());
    const p = new Promise<void>((resolve, reject) => {
      const w = { resolve, reject };
      if (which === 'connect') this.#connectWaiter = w;
      else this.#disconnectWaiter = w;
    });
    this.#afterCall();
    return p;
  }

  /** Connect to an NBD URI (`nbd://`, `nbd+unix://`, ...). */
  connectUri(uri: string): Promise<void> {
    validateString(uri, 'uri');
    return this.#startConnection('connect', (n) => n.aioConnectUri(uri));
  }

  /** Connect to a Unix domain socket. */
  connectUnix(unixsocket: string): Promise<void> {
    validateString(unixsocket, 'unixsocket');
    return this.#startConnection('connect', (n) => n.aioConnectUnix(unixsocket));
  }

  /** Connect over TCP. The name lookup (getaddrinfo) runs in libnbd on this thread. */
  connectTcp(hostname: string, port: string | number): Promise<void> {
    validateString(hostname, 'hostname');
    const portText = typeof port === 'number' ? String(port) : port;
    validateString(portText, 'port');
    return this.#startConnection('connect', (n) => n.aioConnectTcp(hostname, portText));
  }

  /** Run a server (e.g. `nbdkit -s ...`) and talk NBD over its stdin/stdout. */
  connectCommand(argv: string[]): Promise<void> {
    validateStringArray(argv, 'argv');
    return this.#startConnection('connect', (n) => n.aioConnectCommand(argv));
  }

  /** Run a server with systemd socket activation and connect to it. */
  connectSystemdSocketActivation(argv: string[]): Promise<void> {
    validateStringArray(argv, 'argv');
    return this.#startConnection('connect', (n) => n.aioConnectSystemdSocketActivation(argv));
  }

  /** `nbd_aio_disconnect`: queue NBD_CMD_DISC; commands pending are sent first unless SHUTDOWN_ABANDON_PENDING. */
  aioDisconnect(flags = 0): void {
    validateUint32(flags, 'flags');
    const n = this._native();
    if (n.aioDisconnect(flags) === -1) this._raise();
    this.#disconnectInFlight = true;
    this.#afterCall();
  }

  /** `nbd_shutdown` as a Promise: disconnect cleanly and wait for the server to close. */
  shutdown(flags = 0): Promise<void> {
    validateUint32(flags, 'flags');
    return this.#startConnection('disconnect', (n) => {
      const r = n.aioDisconnect(flags);
      if (r !== -1) this.#disconnectInFlight = true;
      return r;
    });
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
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#done.clear();
    this.#disconnectInFlight = false;
    for (const cmd of pending) {
      if (cmd.error === 0) cmd.error = errno.ENOTCONN;
      if (cmd.completion !== undefined) {
        const error: ErrorRef = { value: cmd.error };
        try {
          applyCompletionResult(cmd, cmd.completion(error), errnoValue(error.value));
        } catch (e) {
          cmd.addCause(e);
        }
      }
      if (cmd.settle !== undefined) cmd.settle(cmd.error, cmd.cause());
      else reportLostCauses(cmd.causes);
    }
    const closedWhileConnecting = libnbdError('nbd_close', errno.ENOTCONN, 'handle closed');
    this.#connectWaiter?.reject(closedWhileConnecting);
    this.#disconnectWaiter?.reject(closedWhileConnecting);
    this.#connectWaiter = this.#disconnectWaiter = undefined;
  }
}
