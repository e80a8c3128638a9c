// nbdjs dump NBD-URI | [ CMD ARGS ... ]: nbddump (libnbd's dump/dump.c)
// of the libnbd loaded: a hexdump of the export, 16 bytes a line, runs of
// lines equal to the one printed before them shown as one '*' (never the
// first line or the last), ranges the server reports as zero not read; its
// options (-n/--length/--limit, the colour options, and from libnbd 1.22
// -o/--offset/--skip), its output byte for byte. Public API only.
import { getPackageName, getVersion, have, STATE_ZERO, type Handle } from '../lib';
import { closeHandle, openTarget, targetOf } from './endpoints';
import { getopt, listLongOptions, listShortOptions, type LongOption, type OptionTable } from './getopt';
import { UsageError, type Io } from './subcommand';

const o = (name: string, key: string, arg: LongOption['arg'] = 'none'): LongOption => ({ name, key, arg });

/** Whether the loaded libnbd's nbddump has --offset (libnbd 1.22's release notes). */
function hasOffset(): boolean {
  const [major, minor] = getVersion().split('.').map(Number);
  return major > 1 || minor >= 22;
}

/** nbddump's long_options[] of the loaded version, in its order. */
function optionTable(): OptionTable {
  const offset = hasOffset();
  return {
    short: offset ? 'n:o:V' : 'n:V',
    long: [
      o('help', 'help'),
      o('long-options', 'long-options'),
      o('short-options', 'short-options'),
      o('version', 'V'),
      ...['color', 'colors', 'colour', 'colours'].map((n) => o(n, 'colour')),
      ...['no-color', 'no-colors', 'no-colour', 'no-colours'].map((n) => o(n, 'no-colour')),
      o('length', 'n', 'required'),
      o('limit', 'n', 'required'),
      ...(offset ? [o('offset', 'o', 'required'), o('skip', 'o', 'required')] : []),
    ],
  };
}

export function usage(): string {
  return `usage: nbdjs dump [OPTIONS ...] NBD-URI | [ CMD ARGS ... ]
       nbdjs dump --help | -V|--version | --long-options | --short-options

nbddump's options, output and exit status: a hexdump of the export, runs of
identical lines shown as one '*', ranges the server reports as zero not read.
[ CMD ARGS ... ] is a server started by systemd socket activation (write --
before it when CMD has options).

  --color, --colour, --colors, --colours
                         ANSI colours even when stdout is not a terminal
  --no-color, --no-colour, --no-colors, --no-colours
                         no colours even on a terminal
  -n LEN, --length=LEN, --limit=LEN
                         stop after LEN bytes
${
    hasOffset()
      ? `  -o OFF, --offset=OFF, --skip=OFF
                         start at byte OFF
`
      : ''
  }  -V, --version          nbddump's and libnbd's version (the libnbd loaded)
  --long-options, --short-options
                         list the options
  --debug                a stack trace on failure
  --help                 this text
`;
}

/** nbddump's read buffer: the export is read and described 16 MiB at a time. */
const CHUNK = 16 * 1024 * 1024;
const UINT64_MAX = 2n ** 64n - 1n;

const ANSI = {
  GREEN: '22;32',
  GREY: '22;90',
  BRIGHT_BLUE: '1;34',
  BRIGHT_RED: '1;31',
  BRIGHT_MAGENTA: '1;35',
} as const;

/** sscanf's "%" SCNu64: digits after optional blanks and a sign (a '-' wraps, as strtoull does), the rest ignored. */
function scanUint64(text: string, option: string): bigint {
  const m = /^\s*([+-]?)(\d+)/.exec(text);
  if (m === null) throw new UsageError(`could not parse --${option} option: ${text}`, { usage: false });
  let n = BigInt(m[2]);
  if (n > UINT64_MAX) n = UINT64_MAX;
  return m[1] === '-' ? BigInt.asUintN(64, -n) : n;
}

/** nbddump's output, spooled a while and written with the stream's pace (a hexdump is 5 times its input). */
class Printer {
  #buf = Buffer.allocUnsafe(1 << 17);
  #length = 0;

  constructor(
    readonly io: Io,
    readonly colour: boolean,
  ) {}

  write(text: string): void {
    if (this.#length + text.length * 3 > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + text.length * 3));
      this.#buf.copy(bigger, 0, 0, this.#length);
      this.#buf = bigger;
    }
    this.#length += this.#buf.write(text, this.#length);
  }

  /** ansi_colour: only with colour on. */
  colourOn(code: string): void {
    if (this.colour) this.write(`\x1b[${code}m`);
  }

  /** ansi_restore. */
  restore(): void {
    if (this.colour) this.write('\x1b[0m');
  }

  /** Hands what is spooled to stdout once there is enough of it (or always, with `all`). */
  async flush(all = false): Promise<void> {
    if (this.#length === 0 || (!all && this.#length < 1 << 16)) return;
    const out = Buffer.from(this.#buf.subarray(0, this.#length));
    this.#length = 0;
    await this.io.out(out);
  }
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isPrint(c: number): boolean {
  return c >= 0x20 && c <= 0x7e;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** test_all_zeroes: whether the server says all of [offset, offset + count) reads as zeroes (false when it says less, or cannot say). */
async function allZeroes(h: Handle, offset: number, count: number): Promise<boolean> {
  const entries: number[] = [];
  const collect = (metacontext: string, _offset: unknown, e: ArrayLike<number | bigint>) => {
    if (metacontext === 'base:allocation') for (let i = 0; i < e.length; i++) entries.push(Number(e[i]));
    return 0;
  };
  if (have.blockStatus64) await h.blockStatus64(count, offset, collect);
  else await h.blockStatus(count, offset, collect);
  let covered = 0;
  for (let i = 0; i + 1 < entries.length; i += 2) {
    covered += entries[i];
    if ((entries[i + 1] & STATE_ZERO) === 0) return false;
  }
  return covered >= count;
}

export async function run(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const table = optionTable();
  const parsed = getopt(argv, table);
  let colour = require('node:tty').isatty(1) as boolean;
  let limit = UINT64_MAX;
  let skip = 0n;
  for (const { key, value } of parsed.options) {
    switch (key) {
      case 'help':
        await io.out(usage());
        return 0;
      case 'long-options':
        await io.out(listLongOptions(table));
        return 0;
      case 'short-options':
        await io.out(listShortOptions(table));
        return 0;
      case 'V':
        await io.out(`nbddump ${getVersion()}\n${getPackageName()} ${getVersion()}\n`);
        return 0;
      case 'colour':
        colour = true;
        break;
      case 'no-colour':
        colour = false;
        break;
      case 'n':
        limit = scanUint64(value!, 'length');
        break;
      case 'o':
        skip = scanUint64(value!, 'offset');
        break;
    }
  }
  if (parsed.error !== undefined) throw new UsageError(parsed.error);
  const target = targetOf(parsed.operands);
  if (target === undefined) throw new UsageError(parsed.operands.length === 0 ? 'NBD-URI or [ CMD ARGS ... ] is needed' : `one NBD-URI or [ CMD ARGS ... ], not: ${parsed.operands.join(' ')}`);

  const h = await openTarget(target, { metaContexts: ['base:allocation'], signal });
  const p = new Printer(io, colour);
  try {
    const canExtents = h.canMetaContext('base:allocation');
    const size = BigInt(h.getSize());
    // As nbddump's uint64_t arithmetic: an offset past the end leaves a count that fails the first read.
    const left = BigInt.asUintN(64, size - skip);
    await dump(h, p, { canExtents, size: Number(size), offset: Number(skip), count: Number(left > limit ? limit : left), signal });
    await p.flush(true);
  } catch (e) {
    if (signal.aborted) {
      // nbddump's catch_signal: end the line, restore the terminal's colours.
      p.write('\n');
      p.restore();
      await p.flush(true).catch(() => undefined);
    } else await p.flush(true).catch(() => undefined);
    throw e;
  } finally {
    await closeHandle(h);
  }
  return 0;
}

interface DumpRange {
  canExtents: boolean;
  size: number;
  offset: number;
  count: number;
  signal: AbortSignal;
}

/** do_dump. */
async function dump(h: Handle, p: Printer, { canExtents, size, offset, count, signal }: DumpRange): Promise<void> {
  const splat = p.colour ? '☆' : '*';
  const pipe = p.colour ? '│' : '|';
  const dot = p.colour ? '·' : '.';
  // Room for the line a partial chunk's tail is padded to.
  const buffer = Buffer.alloc(CHUNK + 16);
  const last = Buffer.alloc(16);
  let printedSplat = false;
  while (count > 0) {
    signal.throwIfAborted();
    const n = Math.min(count, CHUNK);
    const zero = canExtents && (await allZeroes(h, offset, n));
    if (zero) buffer.fill(0, 0, n);
    else await h.pread(buffer.subarray(0, n), offset);
    // A partial last line reads as zeroes after its end.
    if (n & 15) buffer.fill(0, n, n + 16 - (n & 15));

    for (let i = 0; i < n; i += 16) {
      const at = offset + i;
      // The first line is never squashed, nor the last.
      const same = at > 0 && at + 16 < size && buffer.compare(last, 0, 16, i, i + 16) === 0;
      if (same) {
        if (!printedSplat) {
          p.write(`${splat}\n`);
          printedSplat = true;
        }
        // Zeroes all through: every line up to the export's last is the same.
        if (zero && last.every((b) => b === 0)) {
          const lastLine = Math.floor((size - 1 - offset) / 16) * 16;
          const skipTo = Math.min(n, lastLine) - 16;
          if (skipTo > i) i = skipTo;
        }
        continue;
      }
      printedSplat = false;
      buffer.copy(last, 0, i, i + 16);
      printLine(p, buffer, i, Math.min(i + 16, n), at, pipe, dot);
      await p.flush();
    }
    offset += n;
    count -= n;
  }
}

function printLine(p: Printer, buffer: Buffer, i: number, end: number, at: number, pipe: string, dot: string): void {
  p.colourOn(ANSI.GREEN);
  p.write(at.toString(16).padStart(10, '0'));
  p.colourOn(ANSI.GREY);
  p.write(': ');
  let line = '';
  const flushLine = () => {
    p.write(line);
    line = '';
  };
  let j = i;
  for (; j < end; j++) {
    if (p.colour) {
      flushLine();
      p.colourOn(buffer[j] !== 0 ? ANSI.BRIGHT_BLUE : ANSI.GREY);
    }
    line += `${HEX[buffer[j]]} `;
    if (j - i === 7) line += ' ';
  }
  flushLine();
  p.colourOn(ANSI.GREY);
  for (; j < i + 16; j++) {
    line += '   ';
    if (j - i === 7) line += ' ';
  }
  line += pipe;
  for (j = i; j < end; j++) {
    const c = buffer[j];
    if (p.colour) {
      flushLine();
      p.colourOn(isAlnum(c) ? ANSI.BRIGHT_RED : isPrint(c) ? ANSI.BRIGHT_MAGENTA : ANSI.GREY);
    }
    line += isPrint(c) ? String.fromCharCode(c) : dot;
  }
  flushLine();
  p.colourOn(ANSI.GREY);
  for (; j < i + 16; j++) line += ' ';
  line += `${pipe}\n`;
  flushLine();
  p.restore();
}
