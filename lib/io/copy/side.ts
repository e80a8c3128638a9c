// One end of a copy, as nbdcopy's `struct rw` and its ops (copy/nbdcopy.h):
// what CopyJob asks of a source or a destination, whatever it is. The kinds
// are nbdcopy's: an NBD export (nbd-side.ts, nbd-ops.c), a regular file or
// a block device (file-side.ts, file-ops.c), a pipe or any other stream
// (stream-side.ts, pipe-ops.c), and null: (null-side.ts, null-ops.c).
import type { Extent } from '../extents';

/** nbdcopy's ops names, as its --verbose prints them. */
export type SideKind = 'nbd_ops' | 'file_ops' | 'pipe_ops' | 'null_ops';

export interface Side {
  readonly kind: SideKind;
  /** What the user named (a URI, a path, a command), for messages. */
  readonly name: string;
  /** The size in bytes; undefined for a stream source, whose size is known at its end. */
  readonly size: number | undefined;
  /** Connections this side spreads requests over (the in-flight limit scales with them). */
  readonly connections: number;
  /** Requests are aligned to this (the server's minimum block size, else 1). */
  readonly minimum: number;
  /** nbdcopy's `preferred`: a power of 2, at least 4096 unless the server says less. */
  readonly preferred: number;
  /** The largest read or write request. */
  readonly maximum: number;
  /** Reads as zeroes wherever nothing is written (a file copy() truncated; null:). */
  readonly zeroed: boolean;
  /**
   * Zero ranges must still be written when blocks are to stay allocated,
   * though it reads as zeroes: a file copy() truncated (nbdcopy fallocates it).
   */
  readonly preallocate: boolean;
  /** Takes writes only in offset order, each once (a pipe). */
  readonly sequential: boolean;
  /** Throws away what is written (null:): nothing written needs inspecting. */
  readonly discards: boolean;
  /** Fills `buf` from `offset`. */
  read(buf: Buffer, offset: number): Promise<void>;
  /** A stream source: the next bytes into `buf`, as many as there are up to its length; 0 at the end. */
  readNext?(buf: Buffer): Promise<number>;
  write(buf: Buffer, offset: number): Promise<void>;
  /** Zeroes [offset, offset + count); `allocated` asks for the blocks to stay allocated. */
  zero(count: number, offset: number, allocated: boolean): Promise<void>;
  /** The base:allocation map of [start, end), or undefined where there is none (everything is data). */
  extents(start: number, end: number): AsyncIterable<Extent> | undefined;
  flush(): Promise<void>;
  /** The copy failed or was aborted: writes still waiting for their turn (a pipe) fail with `error`. */
  abandon?(error: unknown): void;
  /** The copy succeeded with `size` bytes: what a stream destination owes at its end (a file truncated to the size). */
  finish?(size: number): Promise<void>;
  /** Closes what copy() opened (not the caller's Handle, Pool or stream). */
  close(): Promise<void>;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Waits for every promise; then throws the first rejection, if any (no rejection is left unhandled). */
export async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** nbdcopy's rule for a preferred block size: the one given if it is a power of 2, else 4096. */
export function preferredOr4096(n: number): number {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n)) ? n : 4096;
}
