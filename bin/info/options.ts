// nbdinfo's command line: its long options at the loaded version, parsed as
// glibc's getopt_long parses them (nbdinfo's main.c): options and operands
// in any order unless POSIXLY_CORRECT is set, `--` ends the options, a long
// option may be abbreviated to a prefix naming one option (or several that
// mean the same), `--map` takes its value only as `--map=CONTEXT`.
import { getopt as getoptLong, type ArgKind } from '../getopt';
import type { Flavour } from './flavour';

export type Action =
  | 'help'
  | 'long-options'
  | 'short-options'
  | 'version'
  | 'json'
  | 'colour'
  | 'no-colour'
  | 'content'
  | 'no-content'
  | 'can'
  | 'cannot'
  | 'map'
  | 'size'
  | 'totals'
  | 'uri'
  | 'list';

interface LongOption {
  name: string;
  arg: ArgKind;
  action: Action;
}

/** nbdinfo's long_options[] at this version, in its order (--long-options prints them so). */
export function longOptions(f: Flavour): LongOption[] {
  const o = (name: string, action: Action, arg: ArgKind = 'none'): LongOption => ({ name, arg, action });
  const can = (name: string) => o(name, 'can', 'required');
  const cannot = (name: string) => o(name, 'cannot', 'required');
  const negated = (...names: string[]) => (f.negatedCan ? names.map(cannot) : []);
  return [
    o('help', 'help'),
    can('can'),
    ...negated('cannot', 'can-not', 'cant'),
    ...['color', 'colors', 'colour', 'colours'].map((n) => o(n, 'colour')),
    ...['no-color', 'no-colors', 'no-colour', 'no-colours'].map((n) => o(n, 'no-colour')),
    o('content', 'content'),
    o('no-content', 'no-content'),
    ...(f.hasAliases ? [can('has')] : []),
    ...negated('hasnot', 'has-not', 'hasnt'),
    ...(f.hasAliases ? [can('have')] : []),
    ...negated('havent', 'havenot', 'have-not'),
    can('is'),
    ...negated('isnot', 'is-not', 'isnt'),
    o('json', 'json'),
    o('list', 'list'),
    o('long-options', 'long-options'),
    o('map', 'map', 'optional'),
    o('short-options', 'short-options'),
    o('size', 'size'),
    o('total', 'totals'),
    o('totals', 'totals'),
    ...(f.uriOption ? [o('uri', 'uri')] : []),
    o('version', 'version'),
  ];
}

/** nbdinfo's short options: -L (--list), -V (--version). */
export const SHORT_OPTIONS: Record<string, Action> = { L: 'list', V: 'version' };

/** A command-line error, worded as glibc's getopt words it; nbdinfo then prints its usage and exits 1. */
export class OptionError extends Error {
  override name = 'OptionError';
}

export interface ParsedOption {
  action: Action;
  value?: string;
}

export interface GetoptResult {
  options: ParsedOption[];
  operands: string[];
  /** The first bad option: getopt reports it once the options before it have been acted on. */
  error?: OptionError;
}

/** getopt_long over argv (bin/getopt.ts): the options in the order given, and the operands (argv order kept). */
export function getopt(argv: string[], table: LongOption[], env: NodeJS.ProcessEnv = process.env): GetoptResult {
  const r = getoptLong(argv, { short: Object.keys(SHORT_OPTIONS).join(''), long: table.map((o) => ({ name: o.name, arg: o.arg, key: o.action })) }, env);
  const options = r.options.map((o): ParsedOption => {
    const action = (SHORT_OPTIONS[o.key] ?? o.key) as Action;
    return o.value === undefined ? { action } : { action, value: o.value };
  });
  return r.error === undefined ? { options, operands: r.operands } : { options, operands: [], error: new OptionError(r.error) };
}

/** What nbdinfo's main() makes of its options, before it connects. */
export interface InfoOptions {
  json: boolean;
  /** nbdinfo's `colour`: null leaves it to isatty(stdout). */
  colour: boolean | null;
  list: boolean;
  content: boolean;
  noContent: boolean;
  can?: string;
  cannot: boolean;
  map?: string;
  size: boolean;
  totals: boolean;
  uri: boolean;
}

/** The first thing the options ask that ends nbdinfo before it connects (help, --version, ...), if any, and the rest. */
export function interpret(parsed: ParsedOption[]): { exit?: 'help' | 'long-options' | 'short-options' | 'version'; options: InfoOptions } {
  const o: InfoOptions = { json: false, colour: null, list: false, content: false, noContent: false, cannot: false, size: false, totals: false, uri: false };
  for (const { action, value } of parsed) {
    switch (action) {
      case 'help':
      case 'long-options':
      case 'short-options':
      case 'version':
        return { exit: action, options: o };
      case 'json':
        o.json = true;
        break;
      case 'colour':
        o.colour = true;
        break;
      case 'no-colour':
        o.colour = false;
        break;
      case 'content':
        o.content = true;
        break;
      case 'no-content':
        o.noContent = true;
        break;
      case 'can':
        o.can = value;
        break;
      case 'cannot':
        o.can = value;
        o.cannot = true;
        break;
      case 'map':
        o.map = value ?? 'base:allocation';
        break;
      case 'size':
        o.size = true;
        break;
      case 'totals':
        o.totals = true;
        break;
      case 'uri':
        o.uri = true;
        break;
      case 'list':
        o.list = true;
        break;
    }
  }
  return { options: o };
}

/** `nbdjs info --help`: every option the loaded version's nbdinfo takes. */
export function usage(f: Flavour): string {
  const lines = [
    'usage: nbdjs info [--json] NBD-URI | [ CMD ARGS ... ]',
    '       nbdjs info --size [--json] NBD-URI | [ CMD ARGS ... ]',
    ...(f.uriOption ? ['       nbdjs info --uri [--json] NBD-URI'] : []),
    '       nbdjs info --is read-only|rotational NBD-URI | [ CMD ARGS ... ]',
    '       nbdjs info --can cache|connect|... NBD-URI | [ CMD ARGS ... ]',
    ...(f.negatedCan ? ['       nbdjs info --cannot cache|connect|... NBD-URI | [ CMD ARGS ... ]'] : []),
    '       nbdjs info --map[=CONTEXT] [--totals] [--json] NBD-URI | [ CMD ARGS ... ]',
    '       nbdjs info -L|--list [--json] NBD-URI | [ CMD ARGS ... ]',
    '',
    `nbdinfo ${f.version}, as the libnbd loaded: the same options, output and exit status.`,
    'NBD-URI is an NBD URI; [ CMD ARGS ... ] a server started by systemd socket',
    "activation (put -- before '[' when CMD has options). Options may be abbreviated.",
    '',
    '  --json                   JSON output',
    '  --size                   the export size in bytes, alone',
    ...(f.uriOption ? ['  --uri                    the URI of the export, alone'] : []),
    `  --can FEATURE, --is FEATURE${f.hasAliases ? ', --has FEATURE, --have FEATURE' : ''}`,
    '                           print nothing; exit 0 if the export has FEATURE, 2 if not, 1 on an error',
    ...(f.negatedCan
      ? ['  --cannot, --can-not, --cant, --isnt, --isnot, --is-not, --hasnt, --hasnot,', '  --has-not, --havent, --havenot, --have-not FEATURE', '                           the same, with 0 and 2 swapped']
      : []),
    `                           FEATURE: connect, read, write, read-only, rotational, tls, structured-reply,${f.extendedHeaders ? ' extended-headers,' : ''}`,
    `                           ${f.blockStatusPayload ? 'block-status-payload, ' : ''}cache, df, fast-zero, flush, fua, multi-conn, trim, zero`,
    '  --map[=CONTEXT]          the map of CONTEXT (default base:allocation)',
    '  --totals, --total        with --map: the size of each type, and its share of the export',
    '  -L, --list               every export the server lists',
    '  --content                probe the content with file(1) (the default without --list)',
    '  --no-content             do not',
    '  --color, --colour, --colors, --colours',
    '                           ANSI colours (the default when stdout is a terminal)',
    '  --no-color, --no-colour, --no-colors, --no-colours',
    '                           no colours',
    '  --long-options           list the long options',
    '  --short-options          list the short options',
    '  -V, --version            nbdinfo and libnbd versions',
    '  --help                   this text',
  ];
  return `${lines.join('\n')}\n`;
}
