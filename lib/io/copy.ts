// copy(): an export or a file to another, sparse and zero-aware, as nbdcopy
// does it (docs/architecture.md, "lib/io: jobs on the public Handle"): the
// source's base:allocation extents where it has them, holes and zero extents zeroed on
// an NBD destination (never trimmed) and skipped on a file made sparse
// (ftruncate), all-zero data blocks (detectZeroes) treated the same way,
// requests split to the servers' limits, queueDepth requests in flight per
// connection.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { abortError, NbdError, errno, invalidArgType, invalidArgValue } from '../errors';
import { CMD_FLAG_NO_HOLE, SIZE_PREFERRED, STATE_ZERO } from '../generated/constants';
import { Handle, type Driver } from '../handle/handle';
import './handle-methods'; // source.extents()
import { own } from '../handle/buffers';
import { extents, type Extent, type ExtentSource } from './extents';
import { POOL_DEFAULTS, Pool, poolDriver } from './pool';
import { LIBNBD_MAXIMUM, optionalBoolean, optionalInteger, optionalSignal, serverLimits } from './stream-support';
import { isZeroRange } from './zero';

/** A source or destination: an NBD URI, a connected Handle, a Pool, or a local file path. */
export type CopyEndpoint = string | Handle<boolean> | Pool;

export interface CopyProgress {
  /** Bytes copied so far (data written plus zeroes written or skipped). */
  bytes: number;
  /** The source's size. */
  total: number;
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
  /** Bytes of holes, zero extents and all-zero blocks: zeroed on the destination, or skipped on a new file. */
  zeroBytes: number;
  seconds: number;
}

export interface CopyOptions {
  /** Connections per NBD URI (default: 4, or the number of CPUs if fewer, as nbdcopy; 1 if either side lacks multi-conn; a Handle is one). */
  connections?: number;
  /**
   * The driver of the connections copy() opens. Default: LIBNBD_DRIVER if
   * set, else 'thread' (not 'loop' as for new Handle()): each connection's
   * socket work then runs on its own I/O thread, as nbdcopy's runs on its
   * worker threads; measured faster for copies (docs/performance.md).
   */
  driver?: Driver;
  /** Requests in flight per connection (default 8), and no more than 16 MiB of them (as nbdcopy's --queue-size) unless one request is larger. */
  queueDepth?: number;
  /** Bytes per read/write request (default 1 MiB), clamped to the servers' maximum block size (else 32 MiB) and aligned to their minimum. */
  requestSize?: number;
  /**
   * true (default): holes and zeroes need not be allocated on the destination
   * (NBD: zero without NO_HOLE; a new file: skipped). false (nbdcopy
   * --allocated): zero with NO_HOLE, zeroes written to a file; no detectZeroes.
   */
  sparse?: boolean;
  /** Treat all-zero data blocks as zeroes: true (default; 4096-byte blocks, as nbdcopy -S 4096), false, or the block size (a power of 2 >= 512). */
  detectZeroes?: boolean | number;
  /** Flush the destination (NBD flush, fsync) once everything is written (default false, as nbdcopy). */
  flush?: boolean;
  /** Stops issuing requests, waits for those in flight, and rejects with an AbortError; the handles stay usable. */
  signal?: AbortSignal;
  /** Called at most every 100 ms, and once more at the end with bytes === total. */
  onProgress?: (progress: CopyProgress) => void;
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** As nbdcopy: 4 connections, but no more than there are CPUs (its -C 4, -T CPUs, connections = threads = the lesser). */
const DEFAULTS = { connections: POOL_DEFAULTS.connections, queueDepth: 8, requestSize: MiB, sparseSize: 4096 };
/** The largest zero request (nbdcopy's work range: it never zeroes more in one). */
const MAX_ZERO = 128 * MiB;
const PROGRESS_INTERVAL_MS = 100;
/** Bytes of requests in flight per connection, at most (nbdcopy's --queue-size): buffers stay bounded. */
const QUEUE_BYTES = 16 * MiB;

/** What copy() uses of a Handle or a Pool. */
interface NbdTarget extends ExtentSource {
  canZero(): boolean;
  canFlush(): boolean;
  isReadOnly(): boolean;
  pread(buf: ArrayBufferView, offset: number): Promise<void>;
  pwrite(buf: ArrayBufferView, offset: number): Promise<void>;
  zero(count: number, offset: number, flags?: number): Promise<void>;
  flush(): Promise<void>;
}

/** One side of a copy. */
interface Side {
  readonly size: number;
  /** Connections this side spreads requests over. */
  readonly connections: number;
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
  /** Known to read as zeroes where nothing is written (a file copy() truncated). */
  readonly zeroed: boolean;
  read(buf: Buffer, offset: number): Promise<void>;
  write(buf: Buffer, offset: number): Promise<void>;
  /** Zeroes [offset, offset + count): `allocated` asks for the blocks to stay allocated. */
  zero(count: number, offset: number, allocated: boolean): Promise<void>;
  /** The base:allocation map of the whole side, or undefined (everything is data). */
  extents(): AsyncIterable<Extent> | undefined;
  flush(): Promise<void>;
  /** Closes what copy() opened (not the caller's Handle or Pool). */
  close(): Promise<void>;
}

/**
 * A view of copy()'s own buffers, which it never hands out: libnbd may use
 * it in place (lib/handle/buffers.ts).
 */
function ownView(view: Buffer): Buffer {
  own(view);
  return view;
}

const NBD_URI = /^nbds?(\+(unix|vsock|tcp))?:\/\//i;

/**
 * copy() never looks at a buffer whose read failed, so libnbd need not zero
 * it first (nbd_set_pread_initialize): that memset ran on the JS thread for
 * every byte copied.
 */
function fastReads(h: Handle): void {
  h.setPreadInitialize(false);
}

class NbdSide implements Side {
  readonly size: number;
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
  readonly zeroed = false;
  readonly #canZero: boolean;
  #zeroes: Buffer | undefined;

  constructor(
    readonly target: NbdTarget,
    readonly connections: number,
    readonly owned: boolean,
  ) {
    this.size = Number(target.getSize());
    // The minimum (else 1) and the maximum (else 32 MiB, at most libnbd's 64 MiB).
    ({ minimum: this.minimum, maximum: this.maximum } = serverLimits(target));
    const preferred = Number(target.getBlockSize(SIZE_PREFERRED));
    // nbdcopy: 4096 unless the server gives a power of 2.
    this.preferred = preferred > 0 && (preferred & (preferred - 1)) === 0 ? preferred : 4096;
    this.#canZero = target.canZero();
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.target.pread(buf, offset);
  }

  write(buf: Buffer, offset: number): Promise<void> {
    return this.target.pwrite(buf, offset);
  }

  async zero(count: number, offset: number, allocated: boolean): Promise<void> {
    if (this.#canZero) {
      await this.target.zero(count, offset, allocated ? CMD_FLAG_NO_HOLE : 0);
      return;
    }
    // No WRITE_ZEROES: write zeroes, in requests the server takes (nbdcopy does the same).
    const zeroes = (this.#zeroes ??= Buffer.alloc(Math.min(this.maximum, 4 * MiB)));
    const step = zeroes.length;
    const writes: Promise<void>[] = [];
    for (let done = 0; done < count; done += step) {
      writes.push(this.target.pwrite(ownView(zeroes.subarray(0, Math.min(step, count - done))), offset + done));
    }
    await settleAll(writes);
  }

  extents(): AsyncIterable<Extent> | undefined {
    return this.target.canMetaContext('base:allocation') ? extents(this.target) : undefined;
  }

  async flush(): Promise<void> {
    if (this.target.canFlush()) await this.target.flush();
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    await (this.target as Pool).close();
  }
}

class FileSide implements Side {
  readonly minimum = 1;
  readonly maximum = Infinity;
  #zeroes: Buffer | undefined;

  constructor(
    readonly fh: FileHandle,
    readonly size: number,
    readonly preferred: number,
    readonly connections: number,
    readonly zeroed: boolean,
  ) {}

  async read(buf: Buffer, offset: number): Promise<void> {
    for (let done = 0; done < buf.length; ) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, offset + done);
      if (bytesRead === 0) throw new NbdError(`read at offset ${offset + done}: unexpected end of file`, errno.EIO);
      done += bytesRead;
    }
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    for (let done = 0; done < buf.length; ) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async zero(count: number, offset: number): Promise<void> {
    // Node has no fallocate: where blocks must be allocated (sparse: false),
    // zeroes are written.
    const zeroes = (this.#zeroes ??= Buffer.alloc(4 * MiB));
    const step = zeroes.length;
    for (let done = 0; done < count; done += step) await this.write(zeroes.subarray(0, Math.min(step, count - done)), offset + done);
  }

  extents(): undefined {
    // Node has no SEEK_DATA/SEEK_HOLE: a file source is read whole, and
    // detectZeroes finds its holes (they read as zeroes).
    return undefined;
  }

  flush(): Promise<void> {
    return this.fh.sync();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

async function openSource(src: CopyEndpoint, connections: number, driver: Driver): Promise<Side> {
  if (src instanceof Pool) return new NbdSide(src, src.connections, false);
  if (src instanceof Handle) return new NbdSide(src as unknown as NbdTarget, 1, false);
  if (NBD_URI.test(src)) {
    const pool = await Pool.connect(src, { connections, driver, metaContexts: ['base:allocation'], configure: fastReads });
    return new NbdSide(pool, pool.connections, true);
  }
  const fh = await fsp.open(src, 'r');
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw invalidArgValue('src', 'must be an NBD URI or a regular file', src);
    return new FileSide(fh, st.size, st.blksize > 0 ? st.blksize : 4096, connections, false);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

async function openDestination(dst: CopyEndpoint, size: number, connections: number, driver: Driver): Promise<Side> {
  let side: NbdSide;
  if (dst instanceof Pool) side = new NbdSide(dst, dst.connections, false);
  else if (dst instanceof Handle) side = new NbdSide(dst as unknown as NbdTarget, 1, false);
  else if (NBD_URI.test(dst)) {
    const pool = await Pool.connect(dst, { connections, driver, metaContexts: [] });
    side = new NbdSide(pool, pool.connections, true);
  } else {
    return openFileDestination(dst, size, connections);
  }
  try {
    if (side.target.isReadOnly()) throw new NbdError('copy: the destination is read-only', errno.EROFS);
    if (side.size < size) {
      throw new NbdError(`copy: the destination (${side.size} bytes) is smaller than the source (${size} bytes)`, errno.ENOSPC);
    }
  } catch (e) {
    await side.close().catch(() => undefined);
    throw e;
  }
  return side;
}

async function openFileDestination(path: string, size: number, connections: number): Promise<Side> {
  const existing = await fsp.stat(path).catch(() => undefined);
  if (existing !== undefined && !existing.isFile()) throw invalidArgValue('dst', 'must be an NBD URI, a regular file or a new one', path);
  // As nbdcopy: emptied, then set to the source's size, so that it reads as zeroes and holes stay holes.
  const fh = await fsp.open(path, 'w');
  try {
    await fh.truncate(size);
    const st = await fh.stat();
    return new FileSide(fh, size, st.blksize > 0 ? st.blksize : 4096, connections, true);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Waits for every promise; then throws the first rejection, if any (no rejection is left unhandled). */
async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

interface Piece {
  offset: number;
  length: number;
  zero: boolean;
}

/**
 * The work of a copy, in order: data pieces of at most `requestSize` and zero
 * pieces of at most MAX_ZERO, from the source's extents (zero = STATE_ZERO,
 * as nbdcopy: an allocated zero extent is zero, a hole that is not zero is
 * data). Zero pieces are aligned to `align` (what an unaligned end leaves over is data).
 */
async function* plan(map: AsyncIterable<Extent> | undefined, size: number, align: number, requestSize: number): AsyncGenerator<Piece> {
  let cur: Piece | undefined;
  function* add(offset: number, length: number, zero: boolean): Generator<Piece> {
    if (length === 0) return;
    if (cur !== undefined && cur.zero === zero) {
      cur.length += length;
    } else {
      if (cur !== undefined) yield* emit(cur, true);
      cur = { offset, length, zero };
    }
    yield* emit(cur, false);
  }
  function* emit(p: Piece, all: boolean): Generator<Piece> {
    const step = p.zero ? MAX_ZERO : requestSize;
    while (p.length > step || (all && p.length > 0)) {
      const n = Math.min(step, p.length);
      yield { offset: p.offset, length: n, zero: p.zero };
      p.offset += n;
      p.length -= n;
    }
  }
  if (map === undefined) {
    yield* add(0, size, false);
  } else {
    for await (const e of map) {
      const end = e.offset + e.length;
      if ((e.flags & STATE_ZERO) === 0) {
        yield* add(e.offset, e.length, false);
        continue;
      }
      const from = Math.ceil(e.offset / align) * align;
      const to = end === size ? end : Math.floor(end / align) * align;
      if (to <= from) {
        yield* add(e.offset, e.length, false);
        continue;
      }
      yield* add(e.offset, from - e.offset, false);
      yield* add(from, to - from, true);
      yield* add(to, end - to, false);
    }
  }
  if (cur !== undefined) yield* emit(cur, true);
}

function isPowerOf2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function validateEndpoint(value: unknown, name: string): asserts value is CopyEndpoint {
  if (typeof value === 'string' ? value.length === 0 : !(value instanceof Handle || value instanceof Pool)) {
    throw invalidArgType(name, 'an NBD URI, a file path, a Handle or a Pool', value);
  }
}

/**
 * Copies `src` to `dst` (each an NBD URI, a connected Handle, a Pool, or a
 * local file path; a file destination is created or emptied) and resolves
 * with what was copied. Handles and Pools given are left open; what copy()
 * opened is closed. On an error or abort, requests in flight are waited for
 * before it rejects. Bad arguments throw at once, as the Promise forms' do.
 */
export function copy(src: CopyEndpoint, dst: CopyEndpoint, options: CopyOptions = {}): Promise<CopyStats> {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  validateEndpoint(src, 'src');
  validateEndpoint(dst, 'dst');
  const connections = optionalInteger(options.connections, 'options.connections', 1, 64, DEFAULTS.connections);
  const driver = poolDriver(options.driver, 'options.driver');
  const queueDepth = optionalInteger(options.queueDepth, 'options.queueDepth', 1, 1024, DEFAULTS.queueDepth);
  const requestSizeAsked = optionalInteger(options.requestSize, 'options.requestSize', 1, LIBNBD_MAXIMUM, DEFAULTS.requestSize);
  const sparse = options.sparse ?? true;
  if (typeof sparse !== 'boolean') throw invalidArgType('options.sparse', 'of type boolean', sparse);
  const detect = options.detectZeroes ?? true;
  if (typeof detect !== 'boolean' && !(typeof detect === 'number' && isPowerOf2(detect) && detect >= 512)) {
    throw invalidArgValue('options.detectZeroes', 'must be a boolean or a power of 2 >= 512', detect);
  }
  const flush = optionalBoolean(options.flush, 'options.flush');
  const signal = optionalSignal(options.signal, 'options.signal');
  const onProgress = options.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgType('options.onProgress', 'of type function', onProgress);
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const started = performance.now();
  return start();

  async function start(): Promise<CopyStats> {
    const source = await openSource(src, connections, driver);
    let destination: Side;
    try {
      destination = await openDestination(dst, source.size, source.connections, driver);
    } catch (e) {
      await source.close().catch(() => undefined);
      throw e;
    }
    let result: CopyStats | undefined;
    let failure: { error: unknown } | undefined;
    try {
      result = await run(source, destination);
    } catch (e) {
      failure = { error: e };
    }
    // nbdcopy closes the source first.
    for (const side of [source, destination]) {
      try {
        await side.close();
      } catch (e) {
        failure ??= { error: e };
      }
    }
    if (failure !== undefined) throw failure.error;
    return result!;
  }

  async function run(source: Side, destination: Side): Promise<CopyStats> {
    const total = source.size;
    const align = Math.max(source.minimum, destination.minimum);
    const maximum = Math.min(source.maximum, destination.maximum);
    // nbdcopy raises the request size to both sides' preferred block size.
    const wanted = Math.max(requestSizeAsked, source.preferred, destination.preferred);
    const requestSize = Math.max(align, Math.floor(Math.min(wanted, maximum) / align) * align);
    const sparseSize = detect === false || !sparse ? 0 : Math.max(detect === true ? DEFAULTS.sparseSize : detect, destination.preferred, align);
    // As nbdcopy: per connection pair, at most queueDepth requests and
    // QUEUE_BYTES (or one request) in flight; the side with fewer
    // connections sets the pace.
    const perConnection = Math.min(queueDepth, Math.max(1, Math.floor(QUEUE_BYTES / requestSize)));
    const limit = perConnection * Math.min(source.connections, destination.connections);

    let bytes = 0;
    let dataBytes = 0;
    let zeroBytes = 0;
    let inFlight = 0;
    let stopped: { error: unknown } | undefined;
    let wake: (() => void) | undefined;
    let lastProgress = started;
    const free: Buffer[] = [];

    const stop = (error: unknown) => {
      stopped ??= { error };
      wake?.();
    };
    const onAbort = () => stop(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort(); // while connecting
    /** Calls onProgress (what it throws is thrown). */
    const report = (now: number) => {
      lastProgress = now;
      const seconds = (now - started) / 1000;
      onProgress?.({ bytes, total, dataBytes, zeroBytes, rate: seconds > 0 ? bytes / seconds : 0 });
    };
    /** Reports progress at most every PROGRESS_INTERVAL_MS, none once stopping; a throw stops the copy. */
    const progress = () => {
      if (onProgress === undefined || stopped !== undefined) return;
      const now = performance.now();
      if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
      try {
        report(now);
      } catch (e) {
        stop(e);
      }
    };

    const zeroOut = async (length: number, offset: number) => {
      if (!destination.zeroed || !sparse) await destination.zero(length, offset, !sparse);
    };

    /** Copies a data piece; resolves with how many of its bytes were written as data. */
    const copyData = async (piece: Piece): Promise<number> => {
      const full = free.pop() ?? Buffer.allocUnsafeSlow(requestSize);
      const buf = ownView(piece.length === full.length ? full : full.subarray(0, piece.length));
      try {
        await source.read(buf, piece.offset);
        if (sparseSize === 0) {
          await destination.write(buf, piece.offset);
          return piece.length;
        }
        const requests: Promise<void>[] = [];
        let data = 0;
        for (const [from, to, zero] of zeroRuns(buf, piece.offset, sparseSize)) {
          requests.push(zero ? zeroOut(to - from, piece.offset + from) : destination.write(ownView(buf.subarray(from, to)), piece.offset + from));
          if (!zero) data += to - from;
        }
        await settleAll(requests);
        return data;
      } finally {
        free.push(full);
      }
    };

    const finished = () => {
      inFlight--;
      wake?.();
    };
    const slot = () =>
      new Promise<void>((resolve) => {
        wake = () => {
          wake = undefined;
          resolve();
        };
      });

    try {
      const work = plan(source.extents(), total, align, requestSize);
      try {
        for await (const piece of work) {
          while (inFlight >= limit && stopped === undefined) await slot();
          if (stopped !== undefined) break;
          inFlight++;
          (piece.zero ? zeroOut(piece.length, piece.offset).then(() => 0) : copyData(piece)).then(
            (data) => {
              bytes += piece.length;
              dataBytes += data;
              zeroBytes += piece.length - data;
              finished();
              progress();
            },
            (e: unknown) => {
              finished();
              stop(e);
            },
          );
        }
      } catch (e) {
        stop(e); // the source's extents failed
      }
      while (inFlight > 0) await slot();
      if (stopped !== undefined) throw stopped.error;
      if (flush) await destination.flush();
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    report(performance.now());
    return { bytes: total, dataBytes, zeroBytes, seconds: (performance.now() - started) / 1000 };
  }
}

/**
 * The data and zero runs of `buf` (at `offset` in the export), zero where a
 * whole `block`-aligned block of `block` bytes is zero; a partial block at
 * either end is data (nbdcopy's -S). Runs are [from, to, zero], relative to buf.
 */
function* zeroRuns(buf: Buffer, offset: number, block: number): Generator<[number, number, boolean]> {
  const n = buf.length;
  let runStart = 0;
  let runZero = false;
  // A head shorter than a block is data.
  let pos = Math.min(n, Math.ceil(offset / block) * block - offset);
  for (; pos + block <= n; pos += block) {
    const zero = buf[pos] === 0 && isZeroRange(buf, pos, pos + block);
    if (zero !== runZero) {
      if (pos > runStart) yield [runStart, pos, runZero];
      runStart = pos;
      runZero = zero;
    }
  }
  if (pos < n && runZero) {
    // The tail shorter than a block is data.
    yield [runStart, pos, true];
    runStart = pos;
    runZero = false;
  }
  if (n > runStart) yield [runStart, n, runZero];
}
