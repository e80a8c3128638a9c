// nbdinfo's output as bytes: spooled and written at once at the end (on an
// error nothing reaches stdout), ANSI colours as libnbd's ansi-colours.h
// writes them, strings as its print_json_string quotes them, numbers as C's
// printf formats them.

export const ANSI = {
  FG_BOLD_BLACK: '1;30',
  FG_BRIGHT_MAGENTA: '1;35',
  FG_BRIGHT_WHITE: '1;37',
  FG_GREEN: '22;32',
  FG_GREY: '22;90',
  FG_RED: '22;31',
  BG_BLACK: '40',
  BG_LIGHT_GREY: '47',
} as const;

/** The escape sequence that sets an ANSI colour. */
export function ansi(code: string): string {
  return `\x1b[${code}m`;
}

export const ANSI_RESTORE = '\x1b[0m';

/**
 * nbdinfo's memstream: what it prints, as UTF-8 bytes, with or without
 * colour. Bytes rather than strings kept: a map of a million extents is
 * written as it is made instead of living on as a million strings.
 */
export class Output {
  #buf = Buffer.allocUnsafe(1 << 16);
  #length = 0;

  constructor(readonly colour: boolean) {}

  write(text: string): void {
    const most = text.length * 3;
    if (this.#length + most > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + most));
      this.#buf.copy(bigger, 0, 0, this.#length);
      this.#buf = bigger;
    }
    this.#length += this.#buf.write(text, this.#length);
  }

  /** ansi_colour: only when colour is on. */
  ansiColour(code: string): void {
    if (this.colour) this.write(ansi(code));
  }

  /** ansi_restore. */
  ansiRestore(): void {
    if (this.colour) this.write(ANSI_RESTORE);
  }

  bytes(): Buffer {
    return this.#buf.subarray(0, this.#length);
  }
}

/** print_json_string: backslash before `\` and `"`, \u00XX for control characters, everything else as is. */
export function jsonString(s: string): string {
  // eslint-disable-next-line no-control-regex
  return `"${s.replace(/[\\"\u0000-\u001f]/g, (c) => (c === '\\' || c === '"' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))}"`;
}

/** human_size: exact, with the largest binary suffix that divides (and whether there is one). */
export function humanSize(bytes: bigint | number): { text: string; scaled: boolean } {
  const ext = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
  let n = BigInt(bytes);
  let i = 0;
  while (n !== 0n && (n & 1023n) === 0n && i < ext.length - 1) {
    n >>= 10n;
    i++;
  }
  return { text: `${n}${ext[i]}`, scaled: i > 0 };
}

/** A finite double >= 0 exactly, as integer / 10^scale. */
function exactDecimal(x: number): { int: bigint; scale: number } {
  if (x === 0) return { int: 0n, scale: 0 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp: number;
  if (biased === 0) exp = -1074;
  else {
    mantissa |= 1n << 52n;
    exp = biased - 1075;
  }
  if (exp >= 0) return { int: mantissa << BigInt(exp), scale: 0 };
  return { int: mantissa * 5n ** BigInt(-exp), scale: -exp };
}

/** n / 10^drop rounded to nearest, ties to even (glibc's printf in the default rounding mode). */
function roundDrop(n: bigint, drop: number): bigint {
  if (drop <= 0) return n * 10n ** BigInt(-drop);
  const d = 10n ** BigInt(drop);
  const q = n / d;
  const twice = (n % d) * 2n;
  return twice > d || (twice === d && q % 2n === 1n) ? q + 1n : q;
}

/** printf("%.Nf", x) for x >= 0. */
export function fixed(x: number, decimals: number): string {
  const { int, scale } = exactDecimal(x);
  const digits = roundDrop(int, scale - decimals).toString().padStart(decimals + 1, '0');
  return decimals === 0 ? digits : `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
}

/** printf("%g", x) for x >= 0: six significant digits, trailing zeros dropped. */
export function general(x: number): string {
  const P = 6;
  if (x === 0) return '0';
  const { int, scale } = exactDecimal(x);
  const n = int.toString().length;
  let q = roundDrop(int, n - P);
  let X = n - 1 - scale;
  if (q === 10n ** BigInt(P)) {
    q /= 10n;
    X++;
  }
  const digits = q.toString();
  const strip = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (P > X && X >= -4) {
    const decimals = P - 1 - X;
    const padded = digits.padStart(decimals + 1, '0');
    return strip(decimals === 0 ? padded : `${padded.slice(0, -decimals)}.${padded.slice(-decimals)}`);
  }
  const mantissa = strip(`${digits[0]}.${digits.slice(1)}`);
  return `${mantissa}e${X < 0 ? '-' : '+'}${String(Math.abs(X)).padStart(2, '0')}`;
}
