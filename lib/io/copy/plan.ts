// What to copy, in order: nbdcopy's work ranges (multi-thread-copying.c),
// each walked with the source's extents of that range, cut into data
// pieces (read, then written) and zero pieces (written as zeroes, or
// skipped where the destination already reads as zeroes).
import { STATE_ZERO } from '../../generated/constants';
import type { Extent } from '../extents';
import { isZeroRange } from '../zero';
import { MiB } from './side';

/**
 * nbdcopy's THREAD_WORK_SIZE: the source is walked in ranges of this size,
 * each with its own block-status calls, and no request crosses a range (so
 * no zero request is larger).
 */
export const WORK_RANGE = 128 * MiB;

export interface Piece {
  offset: number;
  length: number;
  zero: boolean;
}

export interface PlanInput {
  size: number;
  /** Zero pieces are aligned to this (what an unaligned end of a zero extent leaves over is data). */
  align: number;
  /** Data pieces are at most this long. */
  requestSize: number;
  /** The source's base:allocation map of [start, end), or undefined: all data (nbdcopy --no-extents, or none to be had). */
  extents(start: number, end: number): AsyncIterable<Extent> | undefined;
}

/**
 * The pieces of the whole source, lazily, range by range. Zero means
 * STATE_ZERO, as nbdcopy has it: an allocated zero extent is zero, a hole
 * that does not read as zeroes is data. Adjacent pieces of one kind merge
 * within a range; a data piece is cut every `requestSize` bytes from its
 * start. If the extents of a range cannot be had (the server fails block
 * status), the rest of that range is data, as without extents.
 */
export async function* plan(input: PlanInput): AsyncGenerator<Piece, void, undefined> {
  for (let start = 0; start < input.size; start += WORK_RANGE) {
    yield* rangePieces(input, start, Math.min(input.size, start + WORK_RANGE));
  }
}

async function* rangePieces({ align, requestSize, extents }: PlanInput, start: number, end: number): AsyncGenerator<Piece, void, undefined> {
  let cur: Piece | undefined;
  let covered = start;
  function* add(offset: number, length: number, zero: boolean): Generator<Piece> {
    if (length === 0) return;
    covered = offset + length;
    if (cur !== undefined && cur.zero === zero) {
      cur.length += length;
    } else {
      if (cur !== undefined) yield* cut(cur, true);
      cur = { offset, length, zero };
    }
    yield* cut(cur, false);
  }
  /** Yields whole requests of `p` (all of it, with `all`), leaving the rest in `p`. */
  function* cut(p: Piece, all: boolean): Generator<Piece> {
    const step = p.zero ? WORK_RANGE : requestSize;
    while (p.length > step || (all && p.length > 0)) {
      const n = Math.min(step, p.length);
      yield { offset: p.offset, length: n, zero: p.zero };
      p.offset += n;
      p.length -= n;
    }
  }
  const map = extents(start, end);
  if (map !== undefined) {
    try {
      for await (const e of map) {
        const to = e.offset + e.length;
        if ((e.flags & STATE_ZERO) === 0) {
          yield* add(e.offset, e.length, false);
          continue;
        }
        const zeroFrom = Math.ceil(e.offset / align) * align;
        const zeroTo = to === end ? to : Math.floor(to / align) * align;
        if (zeroTo <= zeroFrom) {
          yield* add(e.offset, e.length, false);
          continue;
        }
        yield* add(e.offset, zeroFrom - e.offset, false);
        yield* add(zeroFrom, zeroTo - zeroFrom, true);
        yield* add(zeroTo, to - zeroTo, false);
      }
    } catch {
      // Block status failed: what is left of the range is read as data.
    }
  }
  yield* add(covered, end - covered, false);
  if (cur !== undefined) yield* cut(cur, true);
}

/**
 * The data and zero runs of `buf` (at `offset` in the source), zero where a
 * whole `block`-aligned block of `block` bytes is zero; a partial block at
 * either end is data (nbdcopy's -S, in finished_read). Runs are
 * [from, to, zero], relative to buf.
 */
export function* zeroRuns(buf: Buffer, offset: number, block: number): Generator<[number, number, boolean]> {
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
