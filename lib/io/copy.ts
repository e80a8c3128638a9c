// copy(): one export, file, device or stream to another, sparse and
// zero-aware, as nbdcopy does it (docs/architecture.md, "lib/io: jobs on
// the public Handle"). Split as nbdcopy's sources are: this file is its
// main.c (the options, opening both sides, the settings that follow from
// them); copy/job.ts the copying loop; copy/plan.ts the work ranges and
// pieces; the sides in copy/nbd-side.ts, file-side.ts, stream-side.ts and
// null-side.ts.
import { Readable, Writable } from 'node:stream';
import { abortError, NbdError, errno, invalidArgType, invalidArgValue } from '../errors';
import { Handle, type Driver } from '../handle/handle';
import { POOL_DEFAULTS, Pool, poolDriver } from './pool';
import { LIBNBD_MAXIMUM, optionalBoolean, optionalInteger, optionalSignal } from './stream-support';
import { openLocalDestination, openLocalSource } from './copy/file-side';
import { CopyJob, type CopyProgress, type CopyStats } from './copy/job';
import { NbdSide, refuseReadOnly, type NbdTarget } from './copy/nbd-side';
import { NullSide } from './copy/null-side';
import { MiB, type Side, type SideKind } from './copy/side';
import { StreamDestination, StreamSource } from './copy/stream-side';

export type { CopyProgress, CopyStats } from './copy/job';

/**
 * A source or destination: an NBD URI, a connected Handle, a Pool, a local
 * path (a regular file, a block device, or a character device or FIFO read
 * or written as a stream), a Readable (source) or a Writable (destination),
 * or 'null:' (destination: everything is thrown away).
 */
export type CopyEndpoint = string | Handle<boolean> | Pool | Readable | Writable;

/** Which side a connection copy() opens is for. */
export type CopySide = 'source' | 'destination';

export interface CopyOptions {
  /** Connections per NBD URI (default: 4, or the number of CPUs if fewer, as nbdcopy; 1 if either side lacks multi-conn, or is a Handle or a stream). */
  connections?: number;
  /**
   * The driver of the connections copy() opens. Default: LIBNBD_DRIVER if
   * set, else 'thread' (not 'loop' as for new Handle()): each connection's
   * socket work then runs on its own I/O thread, as nbdcopy's runs on its
   * worker threads; measured faster for copies (docs/performance.md).
   */
  driver?: Driver;
  /** Requests in flight per connection (default 8), and no more than `queueSize` bytes of them. */
  queueDepth?: number;
  /** Bytes of requests in flight per connection, at most (default 16 MiB, nbdcopy's --queue-size), unless one request is larger. */
  queueSize?: number;
  /** Bytes per read/write request (default 1 MiB), at least both sides' preferred block size, clamped to the servers' maximum (else 32 MiB) and aligned to their minimum. */
  requestSize?: number;
  /**
   * true (default): holes and zeroes need not be allocated on the destination
   * (NBD: zero without NO_HOLE; a file copy() emptied: skipped). false
   * (nbdcopy --allocated): zero with NO_HOLE, zeroes written to a file; no detectZeroes.
   */
  sparse?: boolean;
  /** Treat all-zero data blocks as zeroes: true (default; 4096-byte blocks, as nbdcopy -S 4096), false (-S 0), or the block size (a power of 2 >= 512). */
  detectZeroes?: boolean | number;
  /** Use the source's base:allocation extents to skip reading zeroes (default true; false: nbdcopy --no-extents, everything is read). */
  extents?: boolean;
  /** The destination already reads as zeroes: zero ranges are not written (nbdcopy --destination-is-zero; default false). */
  destinationIsZero?: boolean;
  /** Flush the destination (NBD flush, fsync) once everything is written (default false, as nbdcopy). */
  flush?: boolean;
  /** Called with each Handle copy() opens (for a URI), before it connects: settings such as setDebug, setHandleName, TLS. */
  configure?: (h: Handle, side: CopySide) => void;
  /** Called once both sides are open, before anything is copied, with what copy() decided. */
  onStart?: (start: CopyStart) => void;
  /** Stops issuing requests, waits for those in flight, and rejects with an AbortError; the handles stay usable. */
  signal?: AbortSignal;
  /** Called at most every 100 ms, and once more at the end with bytes === total. */
  onProgress?: (progress: CopyProgress) => void;
}

/** One side as copy() opened it (nbdcopy --verbose prints the same). */
export interface CopySideInfo {
  /** nbdcopy's names: 'nbd_ops' (an export), 'file_ops' (a file or block device), 'pipe_ops' (a stream), 'null_ops' (null:). */
  kind: SideKind;
  name: string;
  /** undefined: a stream source, whose size is known at its end; Infinity: a stream or null: destination. */
  size: number | undefined;
  preferred: number;
  connections: number;
}

export interface CopyStart {
  source: CopySideInfo;
  destination: CopySideInfo;
  /** Connections the copy runs over: the lesser of the two sides'. */
  connections: number;
  requestSize: number;
  /** Requests in flight per connection. */
  queueDepth: number;
  /** 0 when zero detection is off. */
  sparseSize: number;
  extents: boolean;
}

const DEFAULTS = { connections: POOL_DEFAULTS.connections, queueDepth: 8, queueSize: 16 * MiB, requestSize: MiB, sparseSize: 4096 };

/** What libnbd takes as an NBD URI: its scheme (nbd_is_uri looks no further). */
const NBD_URI = /^nbds?(\+(unix|vsock|tcp))?:\/\//i;

/** nbdcopy's destination that discards. */
const NULL_DESTINATION = 'null:';

function isPowerOf2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

function validateEndpoint(value: unknown, name: 'src' | 'dst'): asserts value is CopyEndpoint {
  const stream = name === 'src' ? value instanceof Readable : value instanceof Writable;
  if (typeof value === 'string' ? value.length === 0 : !(value instanceof Handle || value instanceof Pool || stream)) {
    throw invalidArgType(name, `an NBD URI, a path, a Handle, a Pool or a ${name === 'src' ? 'Readable' : 'Writable'}`, value);
  }
}

function handleName(h: Handle<boolean>): string {
  try {
    return h.getUri();
  } catch {
    return 'the Handle';
  }
}

interface Opening {
  connections: number;
  driver: Driver;
  extents: boolean;
  configure: CopyOptions['configure'];
}

async function openSource(src: CopyEndpoint, o: Opening): Promise<Side> {
  if (src instanceof Pool) return new NbdSide(src.uri, src, src.connections, false);
  if (src instanceof Handle) return new NbdSide(handleName(src), src as unknown as NbdTarget, 1, false);
  if (src instanceof Readable) return new StreamSource('the stream', src, false);
  if (NBD_URI.test(src as string)) {
    const configure = o.configure;
    return NbdSide.open(src as string, {
      connections: o.connections,
      driver: o.driver,
      source: true,
      extents: o.extents,
      configure: configure && ((h) => configure(h, 'source')),
    });
  }
  return openLocalSource(src as string, o.connections);
}

async function openDestination(dst: CopyEndpoint, size: number | undefined, o: Opening): Promise<Side> {
  let side: Side;
  if (dst instanceof Pool) side = new NbdSide(dst.uri, dst, dst.connections, false);
  else if (dst instanceof Handle) side = new NbdSide(handleName(dst), dst as unknown as NbdTarget, 1, false);
  else if (dst instanceof Writable) return new StreamDestination('the stream', dst, false);
  else if (dst === NULL_DESTINATION) return new NullSide(o.connections);
  else if (NBD_URI.test(dst as string)) {
    const configure = o.configure;
    side = await NbdSide.open(dst as string, {
      connections: o.connections,
      driver: o.driver,
      source: false,
      extents: false,
      configure: configure && ((h) => configure(h, 'destination')),
    });
  } else {
    side = await openLocalDestination(dst as string, size, o.connections);
  }
  try {
    if (side instanceof NbdSide) refuseReadOnly(side);
    if (size !== undefined && side.size !== undefined && side.size < size) {
      throw new NbdError(`${side.name}: the destination size (${side.size}) is smaller than the source size (${size})`, errno.ENOSPC);
    }
  } catch (e) {
    await side.close().catch(() => undefined);
    throw e;
  }
  return side;
}

function describeSide(side: Side): CopySideInfo {
  return { kind: side.kind, name: side.name, size: side.size, preferred: side.preferred, connections: side.connections };
}

/**
 * Copies `src` to `dst` and resolves with what was copied. Handles, Pools
 * and streams given are left open; what copy() opened is closed. On an
 * error or abort, requests in flight are waited for before it rejects. Bad
 * arguments throw at once, as the Promise forms' do.
 */
export function copy(src: CopyEndpoint, dst: CopyEndpoint, options: CopyOptions = {}): Promise<CopyStats> {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  validateEndpoint(src, 'src');
  validateEndpoint(dst, 'dst');
  const connectionsAsked = optionalInteger(options.connections, 'options.connections', 1, 64, DEFAULTS.connections);
  const driver = poolDriver(options.driver, 'options.driver');
  const queueDepth = optionalInteger(options.queueDepth, 'options.queueDepth', 1, 1024, DEFAULTS.queueDepth);
  const queueSize = optionalInteger(options.queueSize, 'options.queueSize', 1, 2 ** 32 - 1, DEFAULTS.queueSize);
  const requestSizeAsked = optionalInteger(options.requestSize, 'options.requestSize', 1, LIBNBD_MAXIMUM, DEFAULTS.requestSize);
  const sparse = options.sparse ?? true;
  if (typeof sparse !== 'boolean') throw invalidArgType('options.sparse', 'of type boolean', sparse);
  const detect = options.detectZeroes ?? true;
  if (typeof detect !== 'boolean' && !(typeof detect === 'number' && isPowerOf2(detect) && detect >= 512)) {
    throw invalidArgValue('options.detectZeroes', 'must be a boolean or a power of 2 >= 512', detect);
  }
  const useExtents = optionalBoolean(options.extents ?? true, 'options.extents');
  const destinationIsZero = optionalBoolean(options.destinationIsZero, 'options.destinationIsZero');
  const flush = optionalBoolean(options.flush, 'options.flush');
  const signal = optionalSignal(options.signal, 'options.signal');
  const { onProgress, onStart, configure } = options;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgType('options.onProgress', 'of type function', onProgress);
  if (onStart !== undefined && typeof onStart !== 'function') throw invalidArgType('options.onStart', 'of type function', onStart);
  if (configure !== undefined && typeof configure !== 'function') throw invalidArgType('options.configure', 'of type function', configure);
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const started = performance.now();
  // As nbdcopy: one connection when either side is a single one (a Handle,
  // a server command) or a stream; otherwise what the servers allow.
  const single = (e: CopyEndpoint) => e instanceof Handle || e instanceof Readable || e instanceof Writable;
  const connections = single(src) || single(dst) ? 1 : connectionsAsked;
  const opening: Opening = { connections, driver, extents: useExtents, configure };
  return start();

  async function start(): Promise<CopyStats> {
    const source = await openSource(src, opening);
    let destination: Side;
    try {
      destination = await openDestination(dst, source.size, { ...opening, connections: source.connections });
    } catch (e) {
      await source.close().catch(() => undefined);
      throw e;
    }
    let result: CopyStats | undefined;
    let failure: { error: unknown } | undefined;
    try {
      result = await new CopyJob(source, destination, settings(source, destination)).run();
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

  function settings(source: Side, destination: Side) {
    const align = Math.max(source.minimum, destination.minimum);
    const maximum = Math.min(source.maximum, destination.maximum, LIBNBD_MAXIMUM);
    // nbdcopy raises the request size to both sides' preferred block size.
    const wanted = Math.max(requestSizeAsked, source.preferred, destination.preferred);
    const requestSize = Math.max(align, Math.floor(Math.min(wanted, maximum) / align) * align);
    // Zero detection: not with --allocated, nor where its zeroes would be
    // written anyway (a pipe) or nothing is kept (null:); blocks no smaller
    // than what the destination prefers.
    const sparseSize =
      detect === false || !sparse || destination.sequential || destination.discards
        ? 0
        : Math.max(detect === true ? DEFAULTS.sparseSize : detect, destination.preferred, align);
    // As nbdcopy: per connection pair, at most queueDepth requests and
    // queueSize bytes (or one request) in flight; the side with fewer
    // connections sets the pace.
    const perConnection = Math.min(queueDepth, Math.max(1, Math.floor(queueSize / requestSize)));
    const pairs = Math.min(source.connections, destination.connections);
    onStart?.({
      source: describeSide(source),
      destination: describeSide(destination),
      connections: pairs,
      requestSize,
      queueDepth: perConnection,
      sparseSize,
      extents: useExtents,
    });
    return {
      requestSize,
      align,
      limit: perConnection * pairs,
      sparseSize,
      allocated: !sparse,
      destinationIsZero,
      extents: useExtents,
      flush,
      signal,
      onProgress,
      started,
    };
  }
}
