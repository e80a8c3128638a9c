// Handle#createReadStream: a Readable of an export's bytes, in order, with a
// bounded number of reads in flight. Public Handle API only.
import { Readable, addAbortSignal } from 'node:stream';
import { outOfRange } from '../errors';
import { disown, own } from '../handle/buffers';
import {
  alignDown,
  alignUp,
  exportSize,
  optionalInteger,
  optionalOffset,
  optionalSignal,
  preadUninitialized,
  requestSizeFor,
  serverLimits,
  type AnyHandle,
  type StreamTarget,
  validateOptions,
} from './stream-support';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Defaults, chosen by measurement (docs/performance.md, "Stream defaults"; W5 in npm run bench). */
export const READ_STREAM_DEFAULTS = {
  requestSize: 1 * MiB,
  queueDepth: 16,
  highWaterMark: 1 * MiB,
} as const;

export interface ReadStreamOptions {
  /** First byte to read (default 0). */
  start?: number | bigint;
  /** Last byte to read, inclusive as fs.createReadStream's (default: the export's last byte; clamped to it). */
  end?: number | bigint;
  /** Bytes the Readable buffers before it stops asking for more (default 1 MiB). */
  highWaterMark?: number;
  /** Reads in flight at most (default 16); a paused stream holds at most this many reads' data besides its buffer. */
  queueDepth?: number;
  /** Bytes per read (default 1 MiB), split further to the server's maximum and aligned to its minimum. */
  requestSize?: number;
  /** Aborting destroys the stream with an AbortError once the reads in flight have completed. */
  signal?: AbortSignal;
}

interface Request {
  readonly offset: number;
  readonly buf: Buffer;
  /** The bytes to deliver, once read. */
  data: Buffer | undefined;
}

class NbdReadStream extends Readable {
  readonly #h: StreamTarget;
  /** How one request is read: without libnbd's zeroing of the buffer (see preadUninitialized). */
  readonly #read: (buf: Buffer, offset: number) => Promise<void>;
  readonly #wantStart: number;
  readonly #wantEnd: number | undefined;
  readonly #queueDepth: number;
  readonly #requestSizeWanted: number;
  /** [#from, #to): the bytes to deliver; #next..#stop: the aligned range still to issue. */
  #from = 0;
  #to = 0;
  #next = 0;
  #stop = 0;
  #requestSize = 0;
  /** Issued reads in order: in flight, or read and not yet pushed. */
  readonly #queue: Request[] = [];
  #inFlight = 0;
  /** Set by _read, cleared when push() says the buffer is full. */
  #wanting = false;
  #ended = false;
  /** _destroy's callback, waiting for the reads in flight. */
  #whenIdle: (() => void) | undefined;

  constructor(h: StreamTarget, read: (buf: Buffer, offset: number) => Promise<void>, options: ReadStreamOptions | undefined) {
    const o = validateOptions(options, 'options');
    const start = optionalOffset(o.start, 'options.start') ?? 0;
    const end = optionalOffset(o.end, 'options.end');
    if (end !== undefined && start > end) throw outOfRange('options.start', `<= "end" (here: ${end})`, start);
    const highWaterMark = optionalInteger(o.highWaterMark, 'options.highWaterMark', 1, 2 ** 31 - 1, READ_STREAM_DEFAULTS.highWaterMark);
    const queueDepth = optionalInteger(o.queueDepth, 'options.queueDepth', 1, 2 ** 16, READ_STREAM_DEFAULTS.queueDepth);
    const requestSize = optionalInteger(o.requestSize, 'options.requestSize', 1, 2 ** 31 - 1, READ_STREAM_DEFAULTS.requestSize);
    const signal = optionalSignal(o.signal, 'options.signal');
    super({ highWaterMark });
    this.#h = h;
    this.#read = read;
    this.#wantStart = start;
    this.#wantEnd = end;
    this.#queueDepth = queueDepth;
    this.#requestSizeWanted = requestSize;
    // Node's own: destroy(new AbortError(undefined, { cause: signal.reason })),
    // at once for an aborted signal (so only once the fields above exist).
    if (signal !== undefined) addAbortSignal(signal, this);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    // Destroyed already (an aborted signal): its error is the one to report,
    // not also what constructing would find (Node would aggregate the two).
    if (this.destroyed) return callback();
    try {
      const size = exportSize(this.#h);
      const limits = serverLimits(this.#h);
      this.#from = Math.min(this.#wantStart, size);
      this.#to = this.#wantEnd === undefined ? size : Math.min(this.#wantEnd + 1, size);
      if (this.#to < this.#from) this.#to = this.#from;
      // Reads cover whole blocks of the server's minimum size; the bytes
      // outside [from, to) are sliced off.
      this.#next = alignDown(this.#from, limits.minimum);
      this.#stop = Math.min(alignUp(this.#to, limits.minimum), size);
      if (this.#from === this.#to) this.#next = this.#stop;
      this.#requestSize = requestSizeFor(this.#requestSizeWanted, limits);
      callback();
    } catch (e) {
      callback(e as Error);
    }
  }

  override _read(): void {
    this.#wanting = true;
    this.#pump();
  }

  /** Pushes what is read, in order, while the Readable wants it; issues reads while there is room. */
  #pump(): void {
    const q = this.#queue;
    while (this.#wanting && q.length > 0 && q[0].data !== undefined) {
      const r = q.shift()!;
      const data = r.data!;
      r.data = undefined;
      if (data.length > 0) this.#wanting = this.push(data);
    }
    while (q.length < this.#queueDepth && this.#next < this.#stop && !this.destroyed) this.#issue();
    if (q.length === 0 && this.#next >= this.#stop && !this.#ended && this.#wanting) {
      this.#ended = true;
      this.push(null);
    }
  }

  #issue(): void {
    const offset = this.#next;
    const length = Math.min(this.#requestSize, this.#stop - offset);
    this.#next += length;
    const buf = Buffer.allocUnsafeSlow(length);
    // Nobody else sees it before its read completed: libnbd may read into it in place.
    own(buf);
    const r: Request = { offset, buf, data: undefined };
    this.#queue.push(r);
    this.#inFlight++;
    let p: Promise<void>;
    try {
      p = this.#read(buf, offset);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => this.#completed(r, undefined),
      (e: unknown) => this.#completed(r, e),
    );
  }

  #completed(r: Request, error: unknown): void {
    this.#inFlight--;
    if (this.destroyed) {
      if (this.#inFlight === 0 && this.#whenIdle !== undefined) this.#whenIdle();
      return;
    }
    if (error !== undefined) {
      this.destroy(error as Error);
      return;
    }
    disown(r.buf);
    const lo = Math.max(this.#from - r.offset, 0);
    const hi = Math.min(this.#to - r.offset, r.buf.length);
    r.data = lo === 0 && hi === r.buf.length ? r.buf : r.buf.subarray(lo, hi);
    this.#pump();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Stop issuing (destroyed is set), drop what was read, and report once
    // the reads in flight have completed: the handle is idle again then.
    this.#queue.length = 0;
    if (this.#inFlight === 0) {
      callback(error);
      return;
    }
    this.#whenIdle = () => {
      this.#whenIdle = undefined;
      callback(error);
    };
  }
}

/**
 * A Readable of the export's bytes [start, end] (end inclusive). `read`
 * issues one request: a Handle's own by default; a Pool passes its own,
 * spreading them over its connections.
 */
export function createReadStream(
  h: StreamTarget,
  options?: ReadStreamOptions,
  read: (buf: Buffer, offset: number) => Promise<void> = (buf, offset) => preadUninitialized(h as AnyHandle, buf, offset),
): Readable {
  return new NbdReadStream(h, read, options);
}
