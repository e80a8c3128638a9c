// nbdinfo --map and --map --totals (info/map.c): block status over the whole
// export in nbdinfo's request sizes, then the extents with neighbours of one
// type merged, or the size of each type and its share of the export.
import type { Handle } from '../../lib';
import { SIZE_MINIMUM } from '../../lib/generated/constants';
import { Fatal, fatal, maybe, type Session } from './session';
import { ANSI, ANSI_RESTORE, ansi, fixed, general, jsonString, type Output } from './text';

/**
 * The extents of the map context, in order. Numbers while the export is
 * under 2^53 bytes (exact, and without a BigInt per extent), else bigints.
 */
interface Entries<N extends number | bigint> {
  lengths: N[];
  types: N[];
  zero: N;
}

type AnyEntries = Entries<number> | Entries<bigint>;

const UINT32_MAX = 0xffffffffn;
const UINT64_MOD = 1n << 64n;

/** do_map. */
export async function doMap(s: Session, h: Handle<true>, context: string): Promise<void> {
  const f = s.flavour;
  // Map mode goes to the transmission phase (1.20+: option mode).
  if (f.optModeAlways && h.aioIsNegotiating()) {
    try {
      await h.optGo();
    } catch (e) {
      throw fatal(e);
    }
  }
  // Before 1.20 a -1 (an error) counted as yes.
  const supported = maybe(() => h.canMetaContext(context));
  if (f.optModeAlways ? supported !== true : supported === false) {
    throw new Fatal(`--map: server does not support metadata context "${context}"`);
  }
  // C's uint64_t arithmetic: an error (-1) from get_block_size wraps.
  const minimum = maybe(() => h.getBlockSize(SIZE_MINIMUM)) ?? -1n;
  const align = (minimum === 0n ? 512n : minimum + UINT64_MOD) % UINT64_MOD;
  let maxLen = (UINT32_MAX - align + 1n + UINT64_MOD) % UINT64_MOD;
  let size: bigint;
  try {
    size = h.getSize();
  } catch (e) {
    throw fatal(e);
  }
  if (f.extendedHeaders && maybe(() => h.getExtendedHeadersNegotiated()) === true) maxLen = size;

  const small = size <= BigInt(Number.MAX_SAFE_INTEGER);
  const entries: AnyEntries = small ? { lengths: [], types: [], zero: 0 } : { lengths: [], types: [], zero: 0n };
  const push: (length: number | bigint, type: number | bigint) => void = small
    ? (length, type) => {
        (entries as Entries<number>).lengths.push(Number(length));
        (entries as Entries<number>).types.push(Number(type));
      }
    : (length, type) => {
        (entries as Entries<bigint>).lengths.push(BigInt(length));
        (entries as Entries<bigint>).types.push(BigInt(type));
      };
  for (let offset = 0n; offset < size; ) {
    const before = entries.lengths.length;
    const count = size - offset < maxLen ? size - offset : maxLen;
    const collect = (metacontext: string, _offset: bigint, pairs: Uint32Array | BigUint64Array) => {
      if (metacontext !== context) return 0;
      for (let i = 0; i + 1 < pairs.length; i += 2) push(pairs[i], pairs[i + 1]);
      return 0;
    };
    try {
      if (f.extendedHeaders) await h.blockStatus64(count, offset, collect);
      else await h.blockStatus(count, offset, collect);
    } catch (e) {
      throw fatal(e);
    }
    if (entries.lengths.length === before) throw new Fatal('--map: server did not return any extents');
    for (let i = before; i < entries.lengths.length; i++) offset += BigInt(entries.lengths[i]);
  }
  if (s.options.totals) printTotals(s, context, entries, size);
  else printExtents(s, context, entries);
}

/** extent_description: the words and colours nbdinfo gives a type of a context it knows. */
export function extentDescription(context: string, type: number | bigint): { text?: string; fg?: string; bg?: string } {
  const t = Number(type);
  if (context === 'base:allocation') {
    if (t === 0) return { text: 'data', fg: ANSI.FG_BOLD_BLACK };
    if (t === 1) return { text: 'hole' };
    if (t === 2) return { text: 'zero' };
    if (t === 3) return { text: 'hole,zero' };
  } else if (context.startsWith('qemu:dirty-bitmap:')) {
    if (t === 0) return { text: 'clean', fg: ANSI.FG_GREEN };
    if (t === 1) return { text: 'dirty', fg: ANSI.FG_RED };
  } else if (context === 'qemu:allocation-depth') {
    if (t === 0) return { text: 'absent' };
    if (t === 1) return { text: 'local', fg: ANSI.FG_BRIGHT_WHITE, bg: ANSI.BG_BLACK };
    return { text: `backing depth ${type}`, bg: ANSI.BG_LIGHT_GREY };
  }
  return {};
}

/** print_extents: runs of one type as one extent. */
function printExtents(s: Session, context: string, entries: AnyEntries): void {
  const { out } = s;
  const json = s.options.json;
  const { lengths, types } = entries as Entries<number>;
  const zero = entries.zero as number;
  let comma = false;
  let offset = zero;
  let described = { type: -1 as number | bigint, d: extentDescription(context, 0) };
  const printOne = (length: number, type: number) => {
    if (described.type !== type) described = { type, d: extentDescription(context, type) };
    const { d } = described;
    if (!json) {
      const line = `${String(offset).padStart(10)}  ${String(length).padStart(10)}  ${String(type).padStart(3)}${d.text === undefined ? '' : `  ${d.text}`}`;
      out.write(colourLine(out, d, line));
    } else {
      out.write(`${comma ? ',\n' : ''}{ "offset": ${offset}, "length": ${length}, "type": ${type}${d.text === undefined ? '' : `, "description": ${jsonString(d.text)}`}}`);
      comma = true;
    }
    offset += length;
  };
  if (json) out.write('[\n');
  let run = zero;
  for (let i = 0; i < lengths.length; i++) {
    if (i > 0 && types[i] !== types[i - 1]) {
      printOne(run, types[i - 1]);
      run = zero;
    }
    run += lengths[i];
  }
  if (lengths.length > 0) printOne(run, types[lengths.length - 1]);
  if (json) out.write('\n]\n');
}

/** A text line in its description's colours (restored before the newline, as nbdinfo does). */
function colourLine(out: Output, d: { fg?: string; bg?: string }, line: string): string {
  if (!out.colour || (d.fg === undefined && d.bg === undefined)) return `${line}\n`;
  return `${d.fg === undefined ? '' : ansi(d.fg)}${d.bg === undefined ? '' : ansi(d.bg)}${line}${ANSI_RESTORE}\n`;
}

/** print_totals: each type's total, smallest type first, and its percentage of the export. */
function printTotals(s: Session, context: string, entries: AnyEntries, size: bigint): void {
  const { out } = s;
  const json = s.options.json;
  if (size === 0n) {
    if (json) out.write('[]\n');
    return;
  }
  // Summed as bigints: a type's total may pass 2^53 where no one extent does.
  const totals = new Map<bigint, bigint>();
  for (let i = 0; i < entries.lengths.length; i++) {
    const type = BigInt(entries.types[i]);
    totals.set(type, (totals.get(type) ?? 0n) + BigInt(entries.lengths[i]));
  }
  if (json) out.write('[\n');
  let comma = false;
  for (const type of [...totals.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const c = totals.get(type)!;
    if (c === 0n) continue;
    const percent = (100 * Number(c)) / Number(size);
    const d = extentDescription(context, type);
    if (!json) {
      out.write(colourLine(out, d, `${String(c).padStart(10)} ${fixed(percent, 1).padStart(5)}% ${String(type).padStart(3)}${d.text === undefined ? '' : ` ${d.text}`}`));
    } else {
      if (comma) out.write(',\n');
      out.write(`{ "size": ${c}, "percent": ${general(percent)}, "type": ${type}`);
      if (d.text !== undefined) out.write(`, "description": ${jsonString(d.text)}`);
      out.write(' }');
      comma = true;
    }
  }
  if (json) out.write('\n]\n');
}
