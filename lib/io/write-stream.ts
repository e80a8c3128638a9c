// Handle#createWriteStream: a Writable that coalesces what is written into
// large writes, keeps a bounded number in flight, and finishes only once
// every write has completed. Public Handle API only.
import { Writable, addAbortSignal } from 'node:stream';
import { NbdError, errno } from '../errors';
import { own } from '../handle/buffers';
import {
  type Limits,
  alignDown,
  alignUp,
  exportSize,
  optionalBoolean,
  optionalInteger,
  optionalOffset,
  optionalSignal,
  requestSizeFor,
  serverLimits,
  type StreamTarget,
  validateOptions,
} from './stream-support';

const MiB = 1024 * 1024;

/** Defaults, chosen by measurement (docs/performance.md, "Stream defaults"). */
export const WRITE_STREAM_DEFAULTS = {
  highWaterMark: 1 * MiB,
  queueDepth: 8,
} as const;

export interface WriteStreamOptions {
  /** Offset of the first byte written (default 0). */
  start?: number | bigint;
  /**
   * Writes are gathered into requests of this many bytes (default 1 MiB;
   * split to the server's maximum, a multiple of its minimum); also the
   * Writable's own highWaterMark.
   */
  highWaterMark?: number;
  /** Writes in flight at most (default 8). */
  queueDepth?: number;
  /** Flush the export once every write has completed, before 'finish' (skipped when the server cannot flush). */
  flush?: boolean;
  /** Aborting destroys the stream with an AbortError once the writes in flight have completed. */
  signal?: AbortSignal;
}

class NbdWriteStream extends Writable {
  readonly #h: StreamTarget;
  readonly #start: number;
  readonly #hwm: number;
  readonly #queueDepth: number;
  readonly #flush: boolean;
  #size = 0;
  #limits: Limits = { minimum: 1, maximum: 1 };
  #requestSize = 0;
  /** The request being filled: its buffer, absolute offset and bytes so far. */
  #cur: Buffer | undefined;
  #curStart = 0;
  #curLen = 0;
  /** Offset of the next byte written to the stream. */
  #pos = 0;
  #inFlight = 0;
  /** Request buffers whose write completed, reused (fresh large buffers cost page faults). */
  readonly #free: Buffer[] = [];
  /** Who waits for a write slot, or for no write in flight. */
  #onSlot: (() => void) | undefined;
  readonly #onIdle: (() => void)[] = [];

  constructor(h: StreamTarget, options: WriteStreamOptions | undefined) {
    const o = validateOptions(options, 'options');
    const start = optionalOffset(o.start, 'options.start') ?? 0;
    const highWaterMark = optionalInteger(o.highWaterMark, 'options.highWaterMark', 1, 2 ** 31 - 1, WRITE_STREAM_DEFAULTS.highWaterMark);
    const queueDepth = optionalInteger(o.queueDepth, 'options.queueDepth', 1, 2 ** 16, WRITE_STREAM_DEFAULTS.queueDepth);
    const flush = optionalBoolean(o.flush, 'options.flush');
    const signal = optionalSignal(o.signal, 'options.signal');
    super({ highWaterMark, decodeStrings: true });
    this.#h = h;
    this.#start = start;
    this.#hwm = highWaterMark;
    this.#queueDepth = queueDepth;
    this.#flush = flush;
    // Node's own: destroy(new AbortError(undefined, { cause: signal.reason })),
    // at once for an aborted signal (so only once the fields above exist).
    if (signal !== undefined) addAbortSignal(signal, this);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    // Destroyed already (an aborted signal): its error is the one to report,
    // not also what constructing would find (Node would aggregate the two).
    if (this.destroyed) return callback();
    let size: number;
    try {
      size = exportSize(this.#h);
      this.#limits = serverLimits(this.#h);
    } catch (e) {
      callback(e as Error);
      return;
    }
    this.#size = size;
    this.#requestSize = requestSizeFor(this.#hwm, this.#limits);
    this.#pos = this.#start;
    const min = this.#limits.minimum;
    const head = alignDown(this.#start, min);
    if (head === this.#start || this.#start > size) {
      callback();
      return;
    }
    // An unaligned start: the block it falls in is read first, and the
    // bytes before the start are written back unchanged with the data.
    const block = Buffer.allocUnsafeSlow(Math.min(min, size - head));
    own(block);
    this.#h.pread(block, head).then(
      () => {
        this.#cur = Buffer.allocUnsafeSlow(this.#requestSize);
        block.copy(this.#cur, 0, 0, this.#start - head);
        this.#curStart = head;
        this.#curLen = this.#start - head;
        callback();
      },
      (e: unknown) => callback(e as Error),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#take([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.#take(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  /** Copies the chunks into requests, issuing each full one (after waiting for a slot). */
  #take(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    this.#fill(chunks).then(
      () => callback(),
      (e: unknown) => callback(e as Error),
    );
  }

  async #fill(chunks: Buffer[]): Promise<void> {
    for (const chunk of chunks) {
      if (this.#pos + chunk.length > this.#size) {
        throw new NbdError(
          `createWriteStream: writing ${chunk.length} bytes at offset ${this.#pos} would go past the end of the export ` +
            `(${this.#size} bytes): No space left on device`,
          errno.ENOSPC,
        );
      }
      let off = 0;
      while (off < chunk.length) {
        if (this.destroyed) return;
        if (this.#cur === undefined) {
          this.#cur = this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#requestSize);
          this.#curStart = this.#pos;
          this.#curLen = 0;
        }
        const n = Math.min(chunk.length - off, this.#requestSize - this.#curLen);
        chunk.copy(this.#cur, this.#curLen, off, off + n);
        this.#curLen += n;
        off += n;
        this.#pos += n;
        if (this.#curLen === this.#requestSize) await this.#issueCurrent();
      }
    }
  }

  /** Issues the request being filled once a slot is free. */
  async #issueCurrent(): Promise<void> {
    while (this.#inFlight >= this.#queueDepth && !this.destroyed) {
      await new Promise<void>((resolve) => {
        this.#onSlot = resolve;
      });
    }
    if (this.destroyed) return;
    const whole = this.#cur!;
    const buf = this.#curLen === whole.length ? whole : whole.subarray(0, this.#curLen);
    // The stream's own memory, never handed out: libnbd may write from it in place.
    own(buf);
    const offset = this.#curStart;
    this.#cur = undefined;
    this.#curLen = 0;
    this.#inFlight++;
    let p: Promise<void>;
    try {
      p = this.#h.pwrite(buf, offset);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => this.#completed(undefined, whole),
      (e: unknown) => this.#completed(e, undefined),
    );
  }

  #completed(error: unknown, buf: Buffer | undefined): void {
    this.#inFlight--;
    if (buf !== undefined && !this.destroyed) this.#free.push(buf);
    if (error !== undefined && !this.destroyed) this.destroy(error as Error);
    this.#wake();
  }

  #wake(): void {
    const slot = this.#onSlot;
    this.#onSlot = undefined;
    if (slot !== undefined) slot();
    if (this.#inFlight === 0) for (const idle of this.#onIdle.splice(0)) idle();
  }

  #idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#onIdle.push(resolve);
    });
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#finish().then(
      () => callback(),
      (e: unknown) => callback(e as Error),
    );
  }

  async #finish(): Promise<void> {
    // Nothing written: nothing to write back either (an unaligned start's head block).
    if (this.#cur !== undefined && this.#curLen > 0 && this.#pos > this.#start) {
      const end = this.#curStart + this.#curLen;
      const min = this.#limits.minimum;
      if (end % min !== 0 && end < this.#size) {
        // An unaligned end: the rest of its block is read and written back unchanged.
        const blockStart = alignDown(end, min);
        const blockEnd = Math.min(alignUp(end, min), this.#size);
        const block = Buffer.allocUnsafeSlow(blockEnd - blockStart);
        own(block);
        await this.#h.pread(block, blockStart);
        block.copy(this.#cur, this.#curLen, end - blockStart);
        this.#curLen += blockEnd - end;
      }
      await this.#issueCurrent();
    }
    await this.#idle();
    if (this.destroyed) return;
    if (this.#flush && this.#h.canFlush()) await this.#h.flush();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Stop issuing (destroyed is set) and report once the writes in flight
    // have completed: the handle is idle again then.
    this.#cur = undefined;
    this.#wake();
    this.#idle().then(() => callback(error));
  }
}

/** A Writable writing the export from `start` on. */
export function createWriteStream(h: StreamTarget, options?: WriteStreamOptions): Writable {
  return new NbdWriteStream(h, options);
}
