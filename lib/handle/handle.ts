// The public Handle: a thin class over the stages of lib/handle/ — commands
// (pending commands, retirement, Promise forms), events (decoding and
// dispatch of what the native side records), deliver (the user's callbacks),
// connections (connect and disconnect waiters, 'disconnect'), polls (poll()
// waiting for the driver). libnbd's rules
// are lib/semantics.ts's. The per-call methods are generated
// (lib/generated/handle-api.ts) and call the protected hooks below.
import type { NativeHandle, NativePayload } from '../../typings/native';
import { binding } from '../binding';
import type { CompletionCallback, DebugCallback } from '../callbacks';
import { NbdError, closedError, errno, invalidArgValue, libnbdError } from '../errors';
import { abortable } from '../abort';
import * as wire from '../generated/event-wire';
import { SHUTDOWN_ABANDON_PENDING, SHUTDOWN_MASK } from '../generated/constants';
import { HandleApi, type Int64, type Live, type Settle } from '../generated/handle-api';
import * as buffers from './buffers';
import * as commands from './commands';
import type { Closure } from './commands';
import { deliverCompletionAtClose, deliverDebug } from './deliver';
import * as events from './events';
import { HandleState } from './state';
import { optionFailure, renameApi, type OptionResult } from '../semantics';
import {
  commandOptions,
  driverFromEnv,
  signalOption,
  validateDriver,
  validateFunction,
  validateInt32,
  validateUint32,
  validateUint64,
  type CommandOptions,
  type SignalOptions,
} from '../validate';

import type { Driver } from '../validate';

export type { Driver };

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

// The hot path's imports as module-level constants (docs/architecture.md,
// Traps: "module-level constants").
const { HEADER_QUEUED, HEADER_SLOT, STATE_IS_NEGOTIATING, STATE_IS_PROCESSING, STATE_IS_READY } = wire;
const { commandPromise, PendingCommand, reportAbortedCause } = commands;
const { deliverEvents } = events;
/** The libnbd loaded, as [major, minor, release]. */
const LIBNBD_VERSION = (binding.getVersion() ?? '0.0.0').split('.').map(Number);
function versionAtLeast(have: number[], want: string): boolean {
  const w = want.split('.').map(Number);
  for (let i = 0; i < w.length; i++) if ((have[i] ?? 0) !== w[i]) return (have[i] ?? 0) > w[i];
  return true;
}

const { copyOutAll, lend, recorded, release, takeBounce } = buffers;

// Symbol.asyncDispose / Symbol.dispose: defined by Node >= 20.4 (and 18.18);
// the registered symbols Node's own polyfill used, where an older runtime lacks them.
const asyncDispose: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? (Symbol.for('nodejs.asyncDispose') as typeof Symbol.asyncDispose);
const dispose: typeof Symbol.dispose = Symbol.dispose ?? (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

/**
 * One libnbd handle. An EventEmitter: `'disconnect'` is emitted once per
 * connection when it ends — with `undefined` after a clean shutdown, with an
 * NbdError when it ended any other way (the server went away, even while
 * idle), without a command having to be issued to find out. `'connect'` is
 * emitted when an aioConnect*() call ended: with `undefined` once connected,
 * with an NbdError when it failed (lib/handle/aio-connects.ts). It never emits
 * `'error'`: no listener is needed.
 */
export class Handle<B extends boolean = false> extends HandleApi<B> {
  readonly #native: NativeHandle;
  readonly #eventSink: (count: number, payloads?: (NativePayload | undefined)[]) => void;
  readonly #events: Float64Array;
  /** nbd_get_pread_initialize, as set through this object: whether libnbd zeroes a read's buffer at issue. */
  #preadInitialize = true;
  /** What the stages share: commands, connections, the closed flag (lib/handle/state.ts). */
  readonly #state: HandleState;

  constructor(options: HandleOptions<B> = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw invalidArgValue('options', 'must be an object', options);
    }
    const driver = validateDriver(options.driver ?? defaultDriver(), 'options.driver');
    // The native side holds this sink only weakly while idle, so that an
    // unreachable idle handle can be collected: the facade must keep it.
    this.#eventSink = (n, payloads) => deliverEvents(this.#state, n, payloads);
    this.#native = new binding.Handle(this.#eventSink, driver);
    this.#events = this.#native.events;
    this.#state = new HandleState(this.#events, options.bigint === true, this);
  }

  // ------------------------------------------------------------ hooks of the generated methods

  protected _native(): NativeHandle {
    if (this.#state.closed) throw closedError();
    return this.#native;
  }

  protected _raise(): never {
    throw this.#lastError();
  }

  protected _int64(v: number | bigint): Int64<B> {
    return (this.#state.bigint ? BigInt(v) : v) as Int64<B>;
  }

  protected _afterCall(): void {
    // HEADER_QUEUED: written by the call that just returned
    // (EventWindow::SetQueuedFromJs, native/events/event_window.h).
    if (this.#events[HEADER_QUEUED] !== 0) this.#native.drain();
  }

  protected _lend(buf: ArrayBufferView, out: boolean): ArrayBufferView {
    // libnbd accesses the buffer until the command completes: the buffer
    // itself where nothing can detach it meanwhile, else a copy
    // (lib/handle/buffers.ts).
    return lend(buf, out, this.#preadInitialize);
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
    const bounce = takeBounce(buf);
    if (cookie === -1) {
      recorded();
      // libnbd zeroes a read's buffer before it fails (pread_initialize).
      if (bounce !== undefined) {
        copyOutAll(bounce, false);
        release(bounce);
      }
      throw this.#lastError();
    }
    const cmd = new PendingCommand(cookie, type, buf, offset, closure, completion ?? undefined, settle, false);
    cmd.bounce = bounce;
    // HEADER_SLOT: the issued command's slot, written by the aio call that
    // just returned (EventWindow::SetIssuedSlot, native/events/event_window.h).
    this.#state.commands.add(this.#events[HEADER_SLOT], cmd);
    // Held by the command from here on (lib/handle/buffers.ts, beingIssued).
    recorded();
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
    this.#state.commands.add(this.#events[HEADER_SLOT], new PendingCommand(id, 'option', undefined, undefined, closure, completion ?? undefined, settle, true));
    this._afterCall();
  }

  protected _promise(api: string, type: string, signal: AbortSignal | undefined, start: (settle: Settle, live: Live) => void): Promise<void> {
    return abortable(signal, (live) => commandPromise(api, `${type}: command failed`, () => undefined, (settle) => start(settle, live)),
      undefined, reportAbortedCause);
  }

  protected _promiseOpt(
    api: string,
    result: OptionResult,
    refusal: string | undefined,
    signal: AbortSignal | undefined,
    start: (settle: Settle, live: Live) => void,
  ): Promise<number | boolean | void> {
    const request = api.replace(/^nbd_/, '');
    const done = (calls: number) => (result === 'count' ? calls : result === 'accepted' ? true : undefined);
    const failed = (err: number, recorded: [number, string] | undefined, cause: unknown) => {
      const alive = this.#is(STATE_IS_NEGOTIATING | STATE_IS_READY | STATE_IS_PROCESSING);
      const f = optionFailure(result, refusal, request, err, recorded, alive);
      if (f === false) return { value: false };
      const [errnum, message, whole] = f;
      const options = cause === undefined ? undefined : { cause };
      return whole ? renameApi(new NbdError(message, errnum, options), api) : libnbdError(api, errnum, message, cause);
    };
    return abortable(signal, (live) => commandPromise<number | boolean | void>(api, '', done, (settle) => start(settle, live), failed),
      undefined, reportAbortedCause);
  }

  protected _libnbdAtLeast(version: string): boolean {
    return versionAtLeast(LIBNBD_VERSION, version);
  }

  protected _connect(api: string, signal: AbortSignal | undefined, start: (n: NativeHandle) => number): Promise<void> {
    // A connect cannot be abandoned: aborting it closes the handle.
    return abortable(signal, () => this.#startConnection('connect', api, start), () => this.close());
  }

  protected _aioConnect(api: string, start: (n: NativeHandle) => number): void {
    this.#state.connections.aioConnects.start(this._native(), api, start, () => this._raise());
    this._afterCall();
  }

  /**
   * Whether libnbd's state is one of `bits` (STATE_IS_*): the binding's own
   * check, which makes no debug message (a C program makes no such call).
   */
  #is(bits: number): boolean {
    return !this.#state.closed && (this.#native.state() & bits) !== 0;
  }

  #lastError(): NbdError {
    if (this.#state.closed) return closedError();
    const [errnum, message] = this.#native.lastError();
    return new NbdError(message, errnum);
  }

  /** `nbd_set_pread_initialize`: Whether reads zero their buffer first (default true). */
  override setPreadInitialize(request: boolean): void {
    super.setPreadInitialize(request);
    this.#preadInitialize = request;
  }

  // ------------------------------------------------------------ command tracking (lib/handle/commands.ts)

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
    return this.#state.commands.completed(Number(cookie));
  }

  /**
   * `nbd_aio_peek_command_completed`: the oldest completed, unretired
   * cookie; 0 if commands are in flight but none has completed; throws EINVAL
   * when nothing is in flight.
   */
  aioPeekCommandCompleted(): number {
    this._native();
    const s = this.#state;
    return s.commands.peek(s.connections.inFlight(s.commands.pending));
  }

  /** `nbd_aio_in_flight`: commands (and a pending disconnect) whose completion JS has not seen. */
  aioInFlight(): number {
    const r = this._native().aioInFlight();
    if (r === -1) this._raise();
    const s = this.#state;
    return s.connections.inFlight(s.commands.pending);
  }

  // ------------------------------------------------------------ waiting as C does (lib/handle/polls.ts)

  /**
   * `nbd_poll` for an event loop, so that C's waiting loops port line by
   * line: `while (!h.aioCommandCompleted(c)) await h.poll(-1)`. Resolves 1
   * once the driver has run libnbd's state machine and the events of that
   * run were delivered (callbacks run, Promises settled), 0 after `timeout`
   * ms (0: in this turn of the event loop; negative: no timeout). The driver
   * runs libnbd, not poll(): a run that JS had not yet seen when poll() was
   * called counts, and what failed in it shows on the commands and as
   * `'disconnect'`, not here. Without a timeout it does not keep the process
   * alive (an idle handle does not). Rejects as nbd_poll fails where libnbd
   * waits for nothing (created, negotiating, dead, closed: EINVAL), and with
   * ENOTCONN when the handle is closed meanwhile.
   */
  poll(timeout: number): Promise<number> {
    validateInt32(timeout, 'timeout');
    let after: number;
    try {
      after = this._native().poll();
      if (after === -1) {
        this._afterCall(); // the debug messages of libnbd's nbd_poll
        this._raise();
      }
    } catch (e) {
      return Promise.reject(e);
    }
    // No libnbd call of the user's was made, so nothing to deliver before
    // waiting: a delivery now could hand over, before this poll waits, the
    // polled event that settles it.
    return this.#state.polls.wait(after, timeout);
  }

  // ------------------------------------------------------------ connecting and disconnecting (lib/handle/connections.ts)

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
    const connections = this.#state.connections;
    const p = which === 'connect' ? connections.waitForConnect(id, api) : connections.waitForDisconnect(api);
    this._afterCall();
    return p;
  }

  /** `nbd_aio_disconnect`: queue NBD_CMD_DISC; commands pending are sent first unless SHUTDOWN_ABANDON_PENDING. */
  aioDisconnect(flags = 0): void {
    validateUint32(flags, 'flags');
    const n = this._native();
    if (n.aioDisconnect(flags) === -1) this._raise();
    this.#state.connections.disconnecting = true;
    this._afterCall();
  }

  /**
   * `nbd_shutdown` as a Promise: disconnect cleanly (unless a disconnect is
   * already queued) and wait for the server to close the connection. While
   * negotiating, it aborts the option phase (libnbd >= 1.16's rule, on every
   * version). SHUTDOWN_ABANDON_PENDING fails the commands not yet sent with
   * ENOTCONN: only nbd_shutdown itself can, so it runs off the JS thread,
   * holding libnbd's lock until the server has closed the connection (JS
   * calls that take it wait meanwhile; close() interrupts it).
   */
  shutdown(options: number | CommandOptions = 0): Promise<void> {
    const { flags, signal } = commandOptions(options);
    // Aborting rejects the Promise; the disconnect goes on.
    return abortable(signal, () => {
      const s = this.#state;
      // As nbd_shutdown: no second NBD_CMD_DISC when one is already on its way
      // (`disconnecting` is false once closed: close() rejects as usual).
      if (s.connections.disconnecting && !s.closed) return s.connections.waitForDisconnect('nbd_shutdown');
      const negotiating = this.#is(STATE_IS_NEGOTIATING);
      if (negotiating && (flags & ~SHUTDOWN_MASK) !== 0) {
        // nbd_shutdown's own check, after its state check.
        return Promise.reject(libnbdError('nbd_shutdown', errno.EINVAL, `flags: invalid value for flag: 0x${flags.toString(16)}`));
      }
      return this.#startConnection('disconnect', 'nbd_shutdown', (native) => {
        let r: number;
        if (negotiating) r = native.aioOptAbort();
        else if ((flags & SHUTDOWN_ABANDON_PENDING) !== 0) r = native.shutdown(flags);
        else r = native.aioDisconnect(flags);
        if (r !== -1) s.connections.disconnecting = true;
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
    this.#state.debugCallback = callback;
    this._afterCall();
  }

  /** `nbd_clear_debug_callback`: debug messages go to stderr again. */
  clearDebugCallback(): void {
    const n = this._native();
    if (n.clearDebugCallback() === -1) this._raise();
    this._afterCall();
    this.#state.debugCallback = undefined;
  }

  // ------------------------------------------------------------ explicit resource management

  /**
   * `await using h = await connect(uri)`: shut down cleanly if connected
   * (optAbort while negotiating), then close. Never throws: a dead
   * connection or an already closed handle is just closed.
   */
  async [asyncDispose](): Promise<void> {
    if (this.#state.closed) return;
    try {
      if (this.#is(STATE_IS_NEGOTIATING)) await this.optAbort();
      else if (this.#is(STATE_IS_READY | STATE_IS_PROCESSING)) await this.shutdown();
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
    return this.#state.closed;
  }

  /**
   * `nbd_close`. Synchronous and idempotent. Every command still pending
   * gets its completion callback once (error ENOTCONN, or its own error) and
   * its Promise rejects; later calls throw NbdError EINVAL. The rules:
   * lib/semantics.ts (close).
   */
  close(): void {
    const s = this.#state;
    if (s.closed) return;
    s.closed = true;
    const lastWords = this.#native.close();
    // As nbd_close: its own debug messages ("closing handle") reach the
    // callback, which is then released.
    const debug = s.debugCallback;
    s.debugCallback = undefined;
    if (debug !== undefined && lastWords !== undefined) for (const [context, message] of lastWords) deliverDebug(debug, { context, message });
    const commands = s.commands;
    for (const cmd of commands.takeAll()) {
      try {
        // Retired whatever its completion callback returns.
        commands.retire(cmd, deliverCompletionAtClose(cmd), true);
      } catch {
        // Each pending command settles whatever another one did.
      }
    }
    s.connections.closeAll(libnbdError('nbd_close', errno.ENOTCONN, 'handle closed'));
    s.polls.closeAll(libnbdError('nbd_poll', errno.ENOTCONN, 'handle closed'));
  }
}
