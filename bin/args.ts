// Command-line parsing for nbdjs: util.parseArgs (no dependency), plus the
// two things it cannot express, done before it runs:
//  - a server command in brackets, `[ nbdkit -s memory 1G ]`, as nbdcopy and
//    nbdinfo take it: its words start with '-', so they are lifted out of
//    argv first and stand for one positional argument;
//  - an option whose value is optional (`--map` or `--map=CONTEXT`).
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Where to read or write: an NBD URI, a server command, a local file, or stdin/stdout. */
export type Endpoint =
  | { kind: 'uri'; uri: string }
  | { kind: 'command'; argv: string[] }
  | { kind: 'file'; path: string }
  | { kind: 'stdio' };

/** A usage error: exit status 2 with the subcommand's usage text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const NBD_URI = /^nbds?(\+(unix|vsock|tcp))?:\/\//i;
const COMMAND = '\0command:';

export function describeEndpoint(e: Endpoint): string {
  switch (e.kind) {
    case 'uri':
      return e.uri;
    case 'command':
      return `[ ${e.argv.join(' ')} ]`;
    case 'file':
      return e.path;
    case 'stdio':
      return '-';
  }
}

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  endpoints: Endpoint[];
}

/**
 * Parses argv (after the subcommand): `[ ... ]` groups become command
 * endpoints (a `--` just before a `[` is dropped, so options may follow the
 * group), `optional` options given bare get their default value, then
 * util.parseArgs takes the rest (strict: an unknown option is a UsageError).
 */
export function parse(argv: string[], options: ParseArgsConfig['options'], optional: Record<string, string> = {}): Parsed {
  const commands: string[][] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--' && argv[i + 1] === '[') continue;
    if (a === '[') {
      const end = argv.indexOf(']', i + 1);
      if (end < 0) throw new UsageError("'[' without a matching ']'");
      if (end === i + 1) throw new UsageError("'[ ]' needs a server command");
      commands.push(argv.slice(i + 1, end));
      rest.push(`${COMMAND}${commands.length - 1}`);
      i = end;
      continue;
    }
    if (a.startsWith('--') && Object.hasOwn(optional, a.slice(2))) {
      rest.push(`${a}=${optional[a.slice(2)]}`);
      continue;
    }
    rest.push(a);
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const endpoints = parsed.positionals.map((p): Endpoint => {
    if (p.startsWith(COMMAND)) return { kind: 'command', argv: commands[Number(p.slice(COMMAND.length))] };
    if (p === '-') return { kind: 'stdio' };
    if (NBD_URI.test(p)) return { kind: 'uri', uri: p };
    return { kind: 'file', path: p };
  });
  return { values: parsed.values as Parsed['values'], endpoints };
}

/** A size: bytes, or with a suffix K, M, G (powers of 1024; nbdcopy's --request-size takes the same). */
export function parseSize(text: string, name: string): number {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(text.trim());
  if (m === null) throw new UsageError(`${name}: not a size: '${text}'`);
  const n = Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase());
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${name}: not a positive size: '${text}'`);
  return n;
}

/** A positive integer option. */
export function parseCount(text: string, name: string, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new UsageError(`${name}: must be an integer from 1 to ${max}: '${text}'`);
  return n;
}
