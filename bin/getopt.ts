// glibc's getopt_long, as libnbd's tools (nbdinfo, nbdcopy, nbddump) parse their
// command lines with it: short options from an optstring ("C:pR:S:T:vV":
// a letter, ':' for a required argument, '::' for an optional one),
// grouped (-pv) and with their argument attached (-C4) or next (-C 4);
// long options abbreviated to any prefix naming one option (or several
// that mean the same); operands anywhere unless POSIXLY_CORRECT is set or
// the optstring starts with '+'; `--` ends the options. The messages are
// glibc's.

export type ArgKind = 'none' | 'required' | 'optional';

export interface LongOption {
  name: string;
  arg: ArgKind;
  /** What the option means: a short option's letter, or a name of the caller's. */
  key: string;
}

export interface OptionTable {
  /** getopt's optstring. */
  short: string;
  long: LongOption[];
}

export interface ParsedOption {
  key: string;
  value?: string;
  /** As the user wrote it ("-C", "--connections"), for messages. */
  spelled: string;
}

export interface GetoptResult {
  /** The options in the order given, up to the first bad one. */
  options: ParsedOption[];
  /** The operands, in order. */
  operands: string[];
  /** The first bad option, in glibc's words ("unrecognized option '--frob'"). */
  error?: string;
}

/** The short options of an optstring, with their argument kinds. */
function shortOptions(optstring: string): Map<string, ArgKind> {
  const map = new Map<string, ArgKind>();
  const s = optstring.replace(/^[+-]/, '');
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === ':') continue;
    const kind: ArgKind = s[i + 1] === ':' ? (s[i + 2] === ':' ? 'optional' : 'required') : 'none';
    map.set(c, kind);
  }
  return map;
}

/** The letters of an optstring, in order (what --short-options lists). */
export function shortLetters(optstring: string): string[] {
  return [...shortOptions(optstring).keys()];
}

export function getopt(argv: readonly string[], table: OptionTable, env: NodeJS.ProcessEnv = process.env): GetoptResult {
  const shorts = shortOptions(table.short);
  const options: ParsedOption[] = [];
  const operands: string[] = [];
  const permute = env.POSIXLY_CORRECT === undefined && !table.short.startsWith('+');
  const fail = (error: string): GetoptResult => ({ options, operands, error });
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const value = eq < 0 ? undefined : a.slice(eq + 1);
      const opt = findLong(name, a, table.long);
      if (typeof opt === 'string') return fail(opt);
      const spelled = `--${opt.name}`;
      if (opt.arg === 'none' && value !== undefined) return fail(`option '${spelled}' doesn't allow an argument`);
      if (opt.arg === 'required' && value === undefined) {
        if (i + 1 >= argv.length) return fail(`option '${spelled}' requires an argument`);
        options.push({ key: opt.key, value: argv[++i], spelled });
      } else options.push(value === undefined ? { key: opt.key, spelled } : { key: opt.key, value, spelled });
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        const kind = shorts.get(c);
        if (kind === undefined) return fail(`invalid option -- '${c}'`);
        const spelled = `-${c}`;
        if (kind === 'none') {
          options.push({ key: c, spelled });
          continue;
        }
        const rest = a.slice(j + 1);
        if (rest !== '') options.push({ key: c, value: rest, spelled });
        else if (kind === 'optional') options.push({ key: c, spelled });
        else if (i + 1 < argv.length) options.push({ key: c, value: argv[++i], spelled });
        else return fail(`option requires an argument -- '${c}'`);
        break;
      }
      continue;
    }
    operands.push(a);
    if (!permute) {
      operands.push(...argv.slice(i + 1));
      break;
    }
  }
  return { options, operands };
}

/** An exact name, else the one option a prefix names (several spellings of one option count as one); else glibc's complaint. */
function findLong(name: string, arg: string, table: LongOption[]): LongOption | string {
  const exact = table.find((o) => o.name === name);
  if (exact !== undefined) return exact;
  const matches = name === '' ? [] : table.filter((o) => o.name.startsWith(name));
  if (matches.length === 0) return `unrecognized option '${arg}'`;
  const [first] = matches;
  if (matches.every((o) => o.key === first.key && o.arg === first.arg)) return first;
  // glibc names the first match and those that differ from it.
  const named = matches.filter((o) => o === first || o.key !== first.key || o.arg !== first.arg);
  return `option '${arg}' is ambiguous; possibilities:${named.map((o) => ` '--${o.name}'`).join('')}`;
}

/** What --long-options prints: every long option but those two, in the table's order. */
export function listLongOptions(table: OptionTable): string {
  return table.long
    .filter((o) => o.name !== 'long-options' && o.name !== 'short-options')
    .map((o) => `--${o.name}\n`)
    .join('');
}

/** What --short-options prints. */
export function listShortOptions(table: OptionTable): string {
  return shortLetters(table.short)
    .map((c) => `-${c}\n`)
    .join('');
}
