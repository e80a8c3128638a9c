// Pool: several connections to one export, the commands spread over them,
// a dead connection replaced and its reads re-issued.
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type { Extent64Callback, ExtentCallback } from '../callbacks';
import { NbdError, errno, invalidArgType } from '../errors';
import { SIZE_MAXIMUM, SIZE_MINIMUM, SIZE_PREFERRED } from '../generated/constants';
import { Handle, type Driver } from '../handle/handle';
import { driverFromEnv, validateDriver, type CommandOptions } from '../validate';
import { extents, type Extent, type ExtentsOptions } from './extents';
import { createReadStream, type ReadStreamOptions } from './read-stream';
import { optionalInteger, preadUninitialized } from './stream-support';
import { createWriteStream, type WriteStreamOptions } from './write-stream';

export interface ReconnectOptions {
  /** Attempts per lost connection before it is given up (default 10). */
  retries?: number;
  /** Wait before the first attempt, in ms (default 100); doubled after each failed one. */
  delay?: number;
  /** The longest wait between attempts, in ms (default 5000). */
  maxDelay?: number;
}

/**
 * A pool's defaults, as nbdcopy's: 4 connections, or as many as there are
 * CPUs if fewer, each on its own I/O thread (the 'thread' driver) so that
 * their sockets are read in parallel. Measured with W5 in npm run bench (a
 * Pool's read stream beside nbdcopy; docs/performance.md).
 */
export const POOL_DEFAULTS = { connections: Math.min(4, availableParallelism()), driver: 'thread' } as const;

/** The driver of a pool's (or copy()'s) connections: `value`, else LIBNBD_DRIVER, else POOL_DEFAULTS.driver. Throws for a bad one. */
export function poolDriver(value: unknown, name: string): Driver {
  return validateDriver(value ?? driverFromEnv(POOL_DEFAULTS.driver), name);
}

export interface PoolOptions {
  /** Connections to open (default: 4, or the number of CPUs if fewer, as nbdcopy); only 1 when the server does not advertise multi-conn. */
  connections?: number;
  /** Meta contexts requested on every connection (default ['base:allocation'], what extents() uses). */
  metaContexts?: string[];
  /**
   * The driver of the pool's handles. Default: LIBNBD_DRIVER if set, else
   * 'thread' (not 'loop' as for new Handle()): each connection's socket is
   * then read on its own I/O thread, as copy() does.
   */
  driver?: Driver;
  /** How a lost connection is replaced; false: it is not (its reads then fail). */
  reconnect?: ReconnectOptions | false;
  /** Called with each new handle before it connects, replacements included: settings (TLS, setPreadInitialize, ...). */
  configure?: (h: Handle) => void;
}

/** A Pool command: run on one handle; re-issued on another connection when its own was lost (reads, block status). */
interface Op {
  run(h: Handle): Promise<void>;
  reissue: boolean;
  resolve(): void;
  reject(e: unknown): void;
}

interface Slot {
  index: number;
  handle: Handle;
  /** Commands of the pool in flight on this connection. */
  inFlight: number;
  state: 'up' | 'reconnecting' | 'failed';
  timer?: NodeJS.Timeout;
  wake?: () => void;
}

/** What Pool caches of its first connection: the same for every connection to one export. */
interface ExportInfo {
  size: number;
  blockSizes: number[];
  flags: Record<
    | 'canMultiConn'
    | 'canZero'
    | 'canFastZero'
    | 'canTrim'
    | 'canFlush'
    | 'canFua'
    | 'canCache'
    | 'canDf'
    | 'isReadOnly'
    | 'isRotational'
    | 'extendedHeaders',
    boolean
  >;
  contexts: Map<string, boolean>;
}

/**
 * Several connections to one export (as many as asked, or 1 when the server
 * does not advertise multi-conn: without it, writes on one connection need
 * not be visible on another). Its Promise forms and extents() spread the
 * commands over the connections, least in flight first.
 *
 * A connection that dies (its handle emits 'disconnect' with an NbdError,
 * or a command finds it dead) is closed and replaced, retrying with backoff
 * (`reconnect`); meanwhile the other connections take the commands, or they
 * wait. Reads and block-status calls in flight on it are issued again; writes,
 * zero, trim, cache and flush fail with their error, since whether the server
 * applied them is unknown. Emits 'reconnect' (index) once a connection is
 * replaced and 'connectionFailed' (index, error) when one is given up; never
 * 'error'.
 */
export class Pool extends EventEmitter {
  readonly uri: string;
  readonly #options: {
    metaContexts: string[];
    driver: Driver;
    reconnect: Required<ReconnectOptions> | false;
    configure: ((h: Handle) => void) | undefined;
  };
  readonly #slots: Slot[] = [];
  #info!: ExportInfo;
  /** Commands waiting for a connection (none is up). */
  #waiting: Op[] = [];
  #next = 0;
  #closing = false;
  #closed: Promise<void> | undefined;
  #lastError: unknown;

  private constructor(uri: string, options: PoolOptions) {
    super();
    const reconnect = options.reconnect;
    this.uri = uri;
    if (options.configure !== undefined && typeof options.configure !== 'function') {
      throw invalidArgType('options.configure', 'of type function', options.configure);
    }
    const metaContexts = options.metaContexts ?? ['base:allocation'];
    if (!Array.isArray(metaContexts)) throw invalidArgType('options.metaContexts', 'an instance of Array', metaContexts);
    metaContexts.forEach((m, i) => {
      if (typeof m !== 'string') throw invalidArgType(`options.metaContexts[${i}]`, 'of type string', m);
    });
    if (reconnect !== undefined && reconnect !== false && (reconnect === null || typeof reconnect !== 'object')) {
      throw invalidArgType('options.reconnect', 'an object or false', reconnect);
    }
    this.#options = {
      metaContexts,
      driver: poolDriver(options.driver, 'options.driver'),
      configure: options.configure,
      reconnect:
        reconnect === false
          ? false
          : {
              retries: optionalInteger(reconnect?.retries, 'options.reconnect.retries', 0, Number.MAX_SAFE_INTEGER, 10),
              delay: optionalInteger(reconnect?.delay, 'options.reconnect.delay', 0, 2 ** 31 - 1, 100),
              maxDelay: optionalInteger(reconnect?.maxDelay, 'options.reconnect.maxDelay', 0, 2 ** 31 - 1, 5000),
            },
    };
  }

  /**
   * Opens the pool: one connection, then the others if the server allows
   * multi-conn. Bad arguments throw at once; a failed connect rejects (the
   * connections already open are closed).
   */
  static connect(uri: string, options: PoolOptions = {}): Promise<Pool> {
    if (typeof uri !== 'string') throw invalidArgType('uri', 'of type string', uri);
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const wanted = optionalInteger(options.connections, 'options.connections', 1, 64, POOL_DEFAULTS.connections);
    const pool = new Pool(uri, options);
    return pool.#start(wanted);
  }

  async #start(wanted: number): Promise<Pool> {
    const first = await this.#open();
    try {
      this.#info = this.#describe(first);
    } catch (e) {
      first.close();
      throw e;
    }
    const n = this.#info.flags.canMultiConn ? wanted : 1;
    const others = await Promise.allSettled(Array.from({ length: n - 1 }, () => this.#open()));
    const failed = others.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const handles = [first, ...others.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))];
    if (failed !== undefined) {
      for (const h of handles) h.close();
      throw failed.reason;
    }
    handles.forEach((h, index) => {
      const slot: Slot = { index, handle: h, inFlight: 0, state: 'up' };
      this.#slots.push(slot);
      this.#watch(slot, h);
    });
    return this;
  }

  async #open(): Promise<Handle> {
    const h = new Handle({ driver: this.#options.driver });
    try {
      for (const c of this.#options.metaContexts) h.addMetaContext(c);
      this.#options.configure?.(h);
      await h.connectUri(this.uri);
    } catch (e) {
      h.close();
      throw e;
    }
    return h;
  }

  #describe(h: Handle): ExportInfo {
    const flag = (f: () => boolean) => {
      try {
        return f.call(h);
      } catch {
        return false;
      }
    };
    return {
      size: h.getSize(),
      blockSizes: [SIZE_MINIMUM, SIZE_PREFERRED, SIZE_MAXIMUM].map((t) => h.getBlockSize(t)),
      flags: {
        canMultiConn: flag(h.canMultiConn),
        canZero: flag(h.canZero),
        canFastZero: flag(h.canFastZero),
        canTrim: flag(h.canTrim),
        canFlush: flag(h.canFlush),
        canFua: flag(h.canFua),
        canCache: flag(h.canCache),
        canDf: flag(h.canDf),
        isReadOnly: flag(h.isReadOnly),
        isRotational: flag(h.isRotational),
        extendedHeaders: flag(h.getExtendedHeadersNegotiated),
      },
      contexts: new Map(this.#options.metaContexts.map((c) => [c, flag(() => h.canMetaContext(c))])),
    };
  }

  #watch(slot: Slot, h: Handle): void {
    h.on('disconnect', (e?: NbdError) => this.#lost(slot, h, e ?? new NbdError('the connection was shut down', errno.ENOTCONN)));
  }

  // ------------------------------------------------------------ the export (as its first connection saw it)

  /** Connections open or being replaced. */
  get connections(): number {
    return this.#slots.length;
  }

  /** The current handle of each connection (a replaced one is closed). */
  get handles(): readonly Handle[] {
    return this.#slots.map((s) => s.handle);
  }

  getSize(): number {
    return this.#info.size;
  }

  getBlockSize(sizeType: number): number {
    const i = [SIZE_MINIMUM, SIZE_PREFERRED, SIZE_MAXIMUM].indexOf(sizeType);
    return i === -1 ? 0 : this.#info.blockSizes[i];
  }

  /** Whether the context was negotiated: only those of `metaContexts` are requested. */
  canMetaContext(metacontext: string): boolean {
    return this.#info.contexts.get(metacontext) ?? false;
  }

  canMultiConn(): boolean {
    return this.#info.flags.canMultiConn;
  }
  /** Whether the connections have 64-bit requests and replies (false where libnbd predates them). */
  getExtendedHeadersNegotiated(): boolean {
    return this.#info.flags.extendedHeaders;
  }
  canZero(): boolean {
    return this.#info.flags.canZero;
  }
  canFastZero(): boolean {
    return this.#info.flags.canFastZero;
  }
  canTrim(): boolean {
    return this.#info.flags.canTrim;
  }
  canFlush(): boolean {
    return this.#info.flags.canFlush;
  }
  canFua(): boolean {
    return this.#info.flags.canFua;
  }
  canCache(): boolean {
    return this.#info.flags.canCache;
  }
  canDf(): boolean {
    return this.#info.flags.canDf;
  }
  isReadOnly(): boolean {
    return this.#info.flags.isReadOnly;
  }
  isRotational(): boolean {
    return this.#info.flags.isRotational;
  }

  // ------------------------------------------------------------ commands

  // Each Promise form takes the Handle's last argument: the flags, or
  // { flags, signal } (an abort rejects at once; the command completes).
  // The arguments are the Handle's to check: bad ones reject here (the
  // Handle's own forms throw them), since a command may wait for a connection.

  /** `nbd_pread` on the least busy connection; issued again elsewhere if its connection is lost. */
  pread(buf: ArrayBufferView, offset: number | bigint, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(true, (h) => h.pread(buf, offset, options));
  }

  /** `nbd_pwrite` on the least busy connection; fails if its connection is lost. */
  pwrite(buf: ArrayBufferView, offset: number | bigint, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(false, (h) => h.pwrite(buf, offset, options));
  }

  zero(count: number | bigint, offset: number | bigint, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(false, (h) => h.zero(count, offset, options));
  }

  trim(count: number | bigint, offset: number | bigint, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(false, (h) => h.trim(count, offset, options));
  }

  cache(count: number | bigint, offset: number | bigint, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(false, (h) => h.cache(count, offset, options));
  }

  /**
   * `nbd_flush` on one connection: with multi-conn, the server makes every
   * write completed on any connection durable (and a single-connection pool
   * has only one).
   */
  flush(options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(false, (h) => h.flush(options));
  }

  /**
   * `nbd_block_status`; issued again elsewhere if its connection is lost, so
   * `extent` may then be called a second time for the same context and range:
   * the last call's entries are the reply.
   */
  blockStatus(count: number | bigint, offset: number | bigint, extent: ExtentCallback, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(true, (h) => h.blockStatus(count, offset, extent, options));
  }

  /** `nbd_block_status_64` (libnbd >= 1.18), spread and re-issued as blockStatus. */
  blockStatus64(count: number | bigint, offset: number | bigint, extent: Extent64Callback, options: number | CommandOptions = 0): Promise<void> {
    return this.#issue(true, (h) => h.blockStatus64(count, offset, extent, options));
  }

  /** Handle#extents over the pool's connections (block-status calls spread and re-issued as blockStatus). */
  extents(options?: ExtentsOptions): AsyncGenerator<Extent, void, undefined> {
    return extents(this, options);
  }

  /** Handle#createReadStream over the pool: its reads spread over the connections (and re-issued after a loss), delivered in order. */
  createReadStream(options?: ReadStreamOptions): Readable {
    return createReadStream(this, options, (buf, offset) => this.#issue(true, (h) => preadUninitialized(h, buf, offset)));
  }

  /**
   * Handle#createWriteStream over the pool: its writes spread over the
   * connections; `flush: true` flushes once, on one connection (multi-conn:
   * that covers the writes completed on all). A lost connection fails it.
   */
  createWriteStream(options?: WriteStreamOptions): Writable {
    return createWriteStream(this, options);
  }

  #issue(reissue: boolean, run: (h: Handle) => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#dispatch({ run, reissue, resolve, reject }));
  }

  #dispatch(op: Op): void {
    if (this.#closing) {
      op.reject(new NbdError('the pool is closed', errno.ENOTCONN));
      return;
    }
    const slots = this.#slots;
    let best: Slot | undefined;
    for (let k = 0; k < slots.length; k++) {
      const s = slots[(this.#next + k) % slots.length];
      if (s.state === 'up' && (best === undefined || s.inFlight < best.inFlight)) best = s;
    }
    if (best !== undefined) {
      this.#next = (best.index + 1) % slots.length;
      this.#run(best, op);
    } else if (slots.some((s) => s.state === 'reconnecting')) {
      this.#waiting.push(op);
    } else {
      op.reject(this.#lastError);
    }
  }

  #run(slot: Slot, op: Op): void {
    const h = slot.handle;
    slot.inFlight++;
    let p: Promise<void>;
    try {
      p = op.run(h);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => {
        slot.inFlight--;
        op.resolve();
      },
      (e: unknown) => {
        slot.inFlight--;
        // A command that failed because its connection is gone: the
        // connection is replaced, and a read is issued again.
        if (!this.#closing && (!connected(h) || refusedAsEnded(e))) {
          this.#lost(slot, h, e);
          if (op.reissue) {
            this.#dispatch(op);
            return;
          }
        }
        op.reject(e);
      },
    );
  }

  // ------------------------------------------------------------ replacing lost connections

  #lost(slot: Slot, h: Handle, cause: unknown): void {
    if (this.#closing || slot.handle !== h || slot.state !== 'up') return;
    this.#lastError = cause;
    h.close(); // its commands still in flight fail now (ENOTCONN), and reads are re-issued
    if (this.#options.reconnect === false) {
      this.#giveUp(slot, cause);
      return;
    }
    slot.state = 'reconnecting';
    this.#reconnect(slot, this.#options.reconnect).catch(() => {
      // #reconnect handles its own failures.
    });
  }

  async #reconnect(slot: Slot, { retries, delay, maxDelay }: Required<ReconnectOptions>): Promise<void> {
    let wait = delay;
    let lastError: unknown = this.#lastError;
    for (let attempt = 1; attempt <= retries; attempt++) {
      await new Promise<void>((resolve) => {
        slot.wake = resolve;
        slot.timer = setTimeout(resolve, wait);
      });
      slot.timer = slot.wake = undefined;
      if (this.#closing) return;
      wait = Math.min(wait * 2, maxDelay);
      let h: Handle;
      try {
        h = await this.#open();
      } catch (e) {
        lastError = e;
        continue;
      }
      if (this.#closing) {
        h.close();
        return;
      }
      const size = h.getSize();
      if (size !== this.#info.size) {
        h.close();
        this.#giveUp(slot, new NbdError(`the export's size changed from ${this.#info.size} to ${size} on reconnecting`, errno.EIO));
        return;
      }
      slot.handle = h;
      slot.state = 'up';
      this.#watch(slot, h);
      this.emit('reconnect', slot.index);
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const op of waiting) this.#dispatch(op);
      return;
    }
    this.#giveUp(slot, lastError);
  }

  #giveUp(slot: Slot, error: unknown): void {
    slot.state = 'failed';
    this.#lastError = error;
    this.emit('connectionFailed', slot.index, error);
    if (this.#slots.every((s) => s.state === 'failed')) {
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const op of waiting) op.reject(error);
    }
  }

  // ------------------------------------------------------------ closing

  /**
   * Stops replacing connections, fails commands waiting for one, shuts every
   * connection down (commands in flight are answered first) and closes it.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const op of waiting) op.reject(new NbdError('the pool is closed', errno.ENOTCONN));
    await Promise.all(
      this.#slots.map(async (s) => {
        if (s.timer !== undefined) clearTimeout(s.timer);
        s.wake?.();
        const h = s.handle;
        if (!h.closed && connected(h)) await h.shutdown().catch(() => undefined);
        h.close();
      }),
    );
  }
}

/**
 * libnbd refused the command because the connection had ended. On the thread
 * driver libnbd may have seen the end before JS was handed its events, so the
 * handle's state queries (as of those events) can still say ready.
 */
function refusedAsEnded(e: unknown): boolean {
  return e instanceof NbdError && e.code === 'EINVAL' && /: invalid state: (CLOSED|DEAD)\b/.test(e.message);
}

/** Whether a handle's connection can still take commands. */
function connected(h: Handle): boolean {
  if (h.closed) return false;
  try {
    return h.aioIsReady() || h.aioIsProcessing();
  } catch {
    return false;
  }
}
