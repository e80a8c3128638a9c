// CopyJob: one copy under way (nbdcopy's multi-thread-copying.c, its
// worker loop and completion callbacks, on one JS thread): the pieces of
// the plan issued with a bounded number in flight, each data piece read and
// then written (its all-zero blocks as zero requests), zero pieces zeroed,
// progress reported, and on a failure or an abort no new piece issued and
// those in flight waited for before the job settles.
import { abortError } from '../../errors';
import { own } from '../../handle/buffers';
import { plan, zeroRuns, type Piece } from './plan';
import { settleAll, type Side } from './side';

export interface CopyProgress {
  /** Bytes copied so far (data written plus zeroes written or skipped). */
  bytes: number;
  /** The source's size; undefined for a stream source until its end. */
  total: number | undefined;
  dataBytes: number;
  zeroBytes: number;
  /** Average bytes per second since the copy started. */
  rate: number;
}

export interface CopyStats {
  /** The source's size (holes included). */
  bytes: number;
  /** Bytes read and written as data. */
  dataBytes: number;
  /** Bytes of holes, zero extents and all-zero blocks: zeroed on the destination, or skipped where it reads as zeroes. */
  zeroBytes: number;
  seconds: number;
}

/** What copy() decided, for a job to follow. */
export interface JobSettings {
  /** Bytes per data request. */
  requestSize: number;
  /** Zero requests are aligned to this. */
  align: number;
  /** Pieces in flight at most, over all connections. */
  limit: number;
  /** nbdcopy's -S: blocks of this size that are all zero are zeroed rather than written; 0: none is. */
  sparseSize: number;
  /** nbdcopy's --allocated: zero with NO_HOLE, and never skip zeroing. */
  allocated: boolean;
  /** nbdcopy's --destination-is-zero: zero ranges are not written at all. */
  destinationIsZero: boolean;
  /** nbdcopy's --no-extents off: the source's extents decide what is read. */
  extents: boolean;
  flush: boolean;
  signal: AbortSignal | undefined;
  onProgress: ((progress: CopyProgress) => void) | undefined;
  /** performance.now() when copy() was called. */
  started: number;
}

const PROGRESS_INTERVAL_MS = 100;

export class CopyJob {
  #bytes = 0;
  #dataBytes = 0;
  #zeroBytes = 0;
  #total: number | undefined;
  #inFlight = 0;
  #stopped: { error: unknown } | undefined;
  #wake: (() => void) | undefined;
  #lastProgress: number;
  /** Data buffers of requestSize bytes, reused. */
  readonly #free: Buffer[] = [];
  readonly #skipZeroes: boolean;
  /**
   * The data buffers' views may be lent to libnbd in place (lib/handle/buffers.ts):
   * only while nobody else sees them. A stream destination is given them (a
   * caller's Writable could detach them), so then they go through libnbd's copy.
   */
  readonly #ownViews: boolean;

  constructor(
    readonly source: Side,
    readonly destination: Side,
    readonly settings: JobSettings,
  ) {
    this.#total = source.size;
    this.#lastProgress = settings.started;
    // What reads as zeroes needs no zeroing, unless blocks must be
    // allocated there; a pipe takes every byte in order.
    this.#ownViews = destination.kind !== 'pipe_ops';
    this.#skipZeroes = !destination.sequential && (settings.destinationIsZero || destination.zeroed) && !(settings.allocated && destination.preallocate);
  }

  async run(): Promise<CopyStats> {
    const { signal } = this.settings;
    const onAbort = () => this.#stop(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort(); // while connecting
    try {
      if (this.source.size === undefined) await this.#copyStream();
      else await this.#copyPlanned(this.source.size);
      while (this.#inFlight > 0) await this.#slot();
      if (this.#stopped !== undefined) throw this.#stopped.error;
      await this.destination.finish?.(this.#total!);
      if (this.settings.flush) await this.destination.flush();
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    const now = performance.now();
    this.#report(now);
    return { bytes: this.#total!, dataBytes: this.#dataBytes, zeroBytes: this.#zeroBytes, seconds: (now - this.settings.started) / 1000 };
  }

  /** The planned pieces of a source of known size. */
  async #copyPlanned(size: number): Promise<void> {
    const { align, requestSize, extents } = this.settings;
    const source = this.source;
    const pieces = plan({ size, align, requestSize, extents: (start, end) => (extents ? source.extents(start, end) : undefined) });
    try {
      for await (const piece of pieces) {
        while (this.#inFlight >= this.settings.limit && this.#stopped === undefined) await this.#slot();
        if (this.#stopped !== undefined) break;
        this.#issue(piece, piece.zero ? this.#zeroOut(piece.length, piece.offset) : this.#copyData(piece));
      }
    } catch (e) {
      this.#stop(e);
    }
  }

  /** A stream source (nbdcopy's synch_copying of a pipe): read in order until its end, each part written as it comes. */
  async #copyStream(): Promise<void> {
    const { requestSize } = this.settings;
    let offset = 0;
    while (this.#stopped === undefined) {
      while (this.#inFlight >= this.settings.limit && this.#stopped === undefined) await this.#slot();
      if (this.#stopped !== undefined) break;
      const full = this.#buffer();
      let n: number;
      try {
        n = await this.source.readNext!(full);
      } catch (e) {
        this.#free.push(full);
        this.#stop(e);
        break;
      }
      if (n === 0) {
        this.#free.push(full);
        break;
      }
      const piece = { offset, length: n, zero: false };
      offset += n;
      this.#issue(piece, this.#writeData(piece, full, this.#view(full.subarray(0, n))));
    }
    this.#total = offset;
  }

  /** Counts `work` (resolving with its data bytes) in flight until it settles. */
  #issue(piece: Piece, work: Promise<number>): void {
    this.#inFlight++;
    work.then(
      (data) => {
        this.#bytes += piece.length;
        this.#dataBytes += data;
        this.#zeroBytes += piece.length - data;
        this.#finished();
        this.#progress();
      },
      (e: unknown) => {
        this.#finished();
        this.#stop(e);
      },
    );
  }

  /** `view`, marked as copy()'s own where it may be (#ownViews). */
  #view(view: Buffer): Buffer {
    if (this.#ownViews) own(view);
    return view;
  }

  #buffer(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.settings.requestSize);
  }

  /** Reads a data piece and writes it; resolves with how many of its bytes were written as data. */
  async #copyData(piece: Piece): Promise<number> {
    const full = this.#buffer();
    const buf = this.#view(piece.length === full.length ? full : full.subarray(0, piece.length));
    try {
      await this.source.read(buf, piece.offset);
    } catch (e) {
      this.#free.push(full);
      throw e;
    }
    return this.#writeData(piece, full, buf);
  }

  /** Writes what was read into `buf` (a view of `full`, given back to the free list after). */
  async #writeData(piece: Piece, full: Buffer, buf: Buffer): Promise<number> {
    try {
      const { sparseSize } = this.settings;
      if (sparseSize === 0) {
        await this.destination.write(buf, piece.offset);
        return piece.length;
      }
      const requests: Promise<unknown>[] = [];
      let data = 0;
      for (const [from, to, zero] of zeroRuns(buf, piece.offset, sparseSize)) {
        requests.push(zero ? this.#zeroOut(to - from, piece.offset + from) : this.destination.write(this.#view(buf.subarray(from, to)), piece.offset + from));
        if (!zero) data += to - from;
      }
      await settleAll(requests);
      return data;
    } finally {
      this.#free.push(full);
    }
  }

  /** nbdcopy's fill_dst_range_with_zeroes; resolves with 0 data bytes. */
  async #zeroOut(length: number, offset: number): Promise<number> {
    if (!this.#skipZeroes) await this.destination.zero(length, offset, this.settings.allocated);
    return 0;
  }

  #finished(): void {
    this.#inFlight--;
    this.#wake?.();
  }

  #slot(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** The first failure (or the abort) stops the job: nothing more is issued, and writes waiting for their turn fail. */
  #stop(error: unknown): void {
    if (this.#stopped === undefined) {
      this.#stopped = { error };
      this.destination.abandon?.(error);
    }
    this.#wake?.();
  }

  /** Calls onProgress (what it throws is thrown). */
  #report(now: number): void {
    this.#lastProgress = now;
    const seconds = (now - this.settings.started) / 1000;
    const bytes = this.#bytes;
    this.settings.onProgress?.({ bytes, total: this.#total, dataBytes: this.#dataBytes, zeroBytes: this.#zeroBytes, rate: seconds > 0 ? bytes / seconds : 0 });
  }

  /** Progress at most every PROGRESS_INTERVAL_MS, none once stopping; a throw stops the copy. */
  #progress(): void {
    if (this.settings.onProgress === undefined || this.#stopped !== undefined) return;
    const now = performance.now();
    if (now - this.#lastProgress < PROGRESS_INTERVAL_MS) return;
    try {
      this.#report(now);
    } catch (e) {
      this.#stop(e);
    }
  }
}
