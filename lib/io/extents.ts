// extents(): the block map of an export as contiguous, merged extents,
// as nbdinfo --map prints it, for any meta context.
import type { Extent64Callback, ExtentCallback } from '../callbacks';
import { NbdError, errno, invalidArgType, invalidArgValue, outOfRange } from '../errors';
import { optionalOffset, serverLimits } from './stream-support';

/** One extent: `length` bytes from `offset` with the context's `flags` (base:allocation: STATE_HOLE | STATE_ZERO). */
export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

export interface ExtentsOptions {
  /** The meta context: 'base:allocation' (default), 'qemu:dirty-bitmap:NAME', 'qemu:allocation-depth', ... */
  context?: string;
  /** First byte (default 0). */
  start?: number | bigint;
  /** End of the range, exclusive, as block status counts (default: the export's size). */
  end?: number | bigint;
}

/** What extents() needs of a connection: a Handle, or a Pool. */
export interface ExtentSource {
  getSize(): number | bigint;
  getBlockSize(sizeType: number): number | bigint;
  canMetaContext(metacontext: string): boolean;
  blockStatus(count: number, offset: number, extent: ExtentCallback, flags?: number): Promise<void>;
  /** libnbd >= 1.18: whether the connection has 64-bit requests and replies (then blockStatus64 is used). */
  getExtendedHeadersNegotiated?(): boolean;
  blockStatus64?(count: number, offset: number, extent: Extent64Callback, flags?: number): Promise<void>;
}

/**
 * The most one block-status call asks for: under 2 GiB (servers and
 * libnbd 1.14 take a 32-bit count; some treat it as signed), a multiple of
 * any minimum block size (a power of 2 up to 64 KiB). With extended headers
 * the count is 64-bit and one call may ask for the whole range.
 */
export const MAX_BLOCK_STATUS = 2 ** 31 - 4 * 2 ** 20;

/** Whether `src` negotiated extended headers (false where libnbd predates them). */
function extendedHeaders(src: ExtentSource): boolean {
  try {
    return src.blockStatus64 !== undefined && src.getExtendedHeadersNegotiated?.() === true;
  } catch {
    return false; // ENOTSUP before libnbd 1.18
  }
}

/**
 * The extents of `[start, end)` in `context`: contiguous, adjacent extents
 * with equal flags merged, covering exactly the range. Block-status calls
 * ask for at most MAX_BLOCK_STATUS bytes, aligned to the minimum block size;
 * replies that cover less are continued, replies past the range are
 * clipped, zero-length extents are skipped. The connection must have been
 * made with the context added (addMetaContext before connecting; connect()'s
 * metaContexts option).
 *
 * Bad options throw at once (TypeError/RangeError, as the Promise forms');
 * what needs the connection (the export's size, the context) fails the
 * first next().
 */
export function extents(src: ExtentSource, options: ExtentsOptions = {}): AsyncGenerator<Extent, void, undefined> {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const context = options.context ?? 'base:allocation';
  if (typeof context !== 'string') throw invalidArgType('options.context', 'of type string', context);
  const start = optionalOffset(options.start, 'options.start') ?? 0;
  const end = optionalOffset(options.end, 'options.end');
  if (end !== undefined && start > end) throw invalidArgValue('options.start', `must not be after options.end (${end})`, start);
  return walk(src, context, start, end);
}

async function* walk(src: ExtentSource, context: string, start: number, wantEnd: number | undefined): AsyncGenerator<Extent, void, undefined> {
  const size = Number(src.getSize());
  const end = wantEnd ?? size;
  if (end > size) throw outOfRange('options.end', `<= the export size (${size})`, end);
  if (start > end) throw outOfRange('options.start', `<= the export size (${size})`, start);
  if (!src.canMetaContext(context)) {
    throw new NbdError(
      `extents: meta context '${context}' was not negotiated: add it before connecting ` +
        `(addMetaContext('${context}') or connect(uri, { metaContexts: ['${context}'] })); the server may not offer it`,
      errno.ENOTSUP,
    );
  }
  const align = serverLimits(src).minimum;
  const alignedEnd = Math.min(size, Math.ceil(end / align) * align);
  const wide = extendedHeaders(src);

  let pending: Extent | undefined;
  let cursor = start;
  while (cursor < end) {
    const reqOffset = cursor - (cursor % align);
    const count = wide ? alignedEnd - reqOffset : Math.min(alignedEnd - reqOffset, MAX_BLOCK_STATUS);
    // The reply for our context, as (length, flags) pairs. A re-issued call
    // (a Pool after a reconnection) reports again: the last report is the
    // one to use.
    let reply: { offset: number; entries: ArrayLike<number> } | undefined;
    if (wide) {
      await src.blockStatus64!(count, reqOffset, (metacontext, offset, entries, error) => {
        if (metacontext === context && error.value === 0) reply = { offset: Number(offset), entries: Array.from(entries, Number) };
        return 0;
      });
    } else {
      await src.blockStatus(count, reqOffset, (metacontext, offset, entries, error) => {
        if (metacontext === context && error.value === 0) reply = { offset: Number(offset), entries: entries.slice() };
        return 0;
      });
    }
    const before = cursor;
    if (reply !== undefined) {
      let pos = reply.offset;
      const e = reply.entries;
      for (let i = 0; i + 1 < e.length && pos < end; i += 2) {
        const length = e[i];
        const flags = e[i + 1];
        const from = Math.max(pos, cursor);
        pos += length;
        const to = Math.min(pos, end);
        if (to <= from) continue; // zero-length, or before the cursor
        if (pending !== undefined && pending.flags === flags) {
          pending.length += to - from;
        } else {
          if (pending !== undefined) yield pending;
          pending = { offset: from, length: to - from, flags };
        }
        cursor = to;
      }
    }
    if (cursor === before) {
      throw new NbdError(
        `extents: the server returned no extent of context '${context}' at offset ${cursor} ` +
          `(block status of ${count} bytes at ${reqOffset}): it is not making progress`,
        errno.EPROTO,
      );
    }
  }
  if (pending !== undefined) yield pending;
}
