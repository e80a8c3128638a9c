// nbdjs shell: nbdsh (libnbd's python/nbdsh.py) for Node: a REPL
// (node:repl, top-level await, history in ~/.nbdjs_history) with `h`, a
// Handle, and the package's exports in scope (also as `nbd`); or, with
// -c CODE, the code run in order and the shell's exit status its own.
// nbdsh's options (--base-allocation, --opt-mode, -u URI, -n, -v, -c,
// -c -) act in the order given, as nbdsh's snippets; an NBD URI or a
// [ CMD ARGS ... ] operand connects `h` before any -c runs. Public API only.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import * as nbd from '../lib';
import { describeTarget, targetOf, type Target } from './endpoints';
import { getopt, type LongOption, type OptionTable } from './getopt';
import { UsageError, type Io } from './subcommand';

const o = (name: string, key: string, arg: LongOption['arg'] = 'none'): LongOption => ({ name, key, arg });

/** nbdsh's options (argparse's, as getopt_long spells them), --connect its old name for --uri. */
const OPTIONS: OptionTable = {
  short: 'c:nu:vVh',
  long: [
    o('help', 'h'),
    o('base-allocation', 'base-allocation'),
    o('command', 'c', 'required'),
    o('opt-mode', 'opt-mode'),
    o('uri', 'u', 'required'),
    o('connect', 'u', 'required'),
    o('verbose', 'v'),
    o('version', 'V'),
    o('short-options', 'short-options'),
    o('long-options', 'long-options'),
  ],
};

/** What --short-options and --long-options print: nbdsh's lists, sorted as it sorts them. */
const SHORT_LIST = ['-c', '-n', '-u', '-v', '-V'].sort();
const LONG_LIST = ['--base-allocation', '--command', '--opt-mode', '--uri', '--verbose', '--version'].sort();

export function usage(): string {
  return `usage: nbdjs shell [--base-allocation] [-c CODE | -c -] [-n] [--opt-mode]
                   [-u URI] [-v] [NBD-URI | [ CMD ARGS ... ]]
       nbdjs shell --help | -V|--version | --long-options | --short-options

nbdsh for Node: a REPL (top-level await; history in ~/.nbdjs_history, or in
NBDJS_HISTORY: a path, or '' for none) with the NBD handle 'h' and the libnbd
package's exports in scope (and as 'nbd'). The options act in the order
given, as nbdsh's.

  NBD-URI, [ CMD ARGS ... ]  connect 'h' to the URI, or to the server CMD
                             started by systemd socket activation (write --
                             before '[' when CMD has options), before any -c
  --base-allocation          h.addMetaContext('base:allocation')
  -c CODE, --command=CODE    run the JavaScript CODE (several run in order;
                             top-level await makes CODE an async function body)
                             instead of the REPL; the status is 0, or exit(N)'s
  -c -                       the same with the code read from stdin
  -n                         no handle 'h'
  --opt-mode                 h.setOptMode(true)
  -u URI, --uri=URI          h.connectUri(URI) (--connect is the old name)
  -v, --verbose              libnbd's debug messages (LIBNBD_DEBUG=1)
  -V, --version              nbdsh's and libnbd's version (the libnbd loaded)
  --long-options, --short-options
                             list the options
  --debug                    a stack trace on failure
  -h, --help                 this text
`;
}

type Snippet =
  | { kind: 'command'; code: string }
  | { kind: 'stdin' }
  | { kind: 'base-allocation' }
  | { kind: 'opt-mode' }
  | { kind: 'uri'; uri: string }
  | { kind: 'connect'; target: Target };

/** exit(N) in CODE: ends the shell with status N once the handle is closed. */
class Exit {
  constructor(readonly code: number) {}
}

/** `exit(code)` as nbdsh's scripts call it. */
function exitFunction(code: unknown = 0): never {
  throw new Exit(typeof code === 'number' && Number.isInteger(code) ? code : code ? 1 : 0);
}

/**
 * Runs one -c snippet in the shell's global scope, as a script: its
 * declarations are seen by the next. Code with top-level await runs as
 * the body of an async function instead (its declarations stay in it).
 */
async function runCode(code: string, name: string): Promise<void> {
  let script: Script;
  try {
    script = new Script(code, { filename: name });
  } catch (e) {
    if (!(e instanceof SyntaxError) || !/\bawait\b/.test(code)) throw codeFailure(e);
    try {
      script = new Script(`(async () => {\n${code}\n})()`, { filename: name, lineOffset: -1 });
    } catch {
      throw codeFailure(e);
    }
  }
  try {
    await script.runInThisContext({ displayErrors: false });
  } catch (e) {
    throw codeFailure(e);
  }
}

/** Whichever settles first: `work`, or the signal's abort. */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function banner(h: nbd.Handle | undefined, target: Target | undefined): string {
  const example = (code: string, what: string) => `${code.padEnd(44)} // ${what}`;
  const lines = [
    '',
    'Welcome to nbdjs shell, the Node.js shell for interacting with',
    'Network Block Device (NBD) servers.',
    '',
    "The libnbd package's exports are in scope (and as 'nbd'),",
    h === undefined
      ? 'and there is no handle (-n).'
      : `and there is an NBD handle called 'h'${target === undefined ? '' : `, connected to ${describeTarget(target)}`}.`,
    '',
    ...(h === undefined ? [example('const h = new Handle()', 'Create a new handle.')] : []),
    example('h.getSize()', 'Get size of the remote disk.'),
    example('const buf = Buffer.alloc(512); await h.pread(buf, 0)', 'Read the first sector.'),
    example('.exit, exit() or Ctrl-D', 'Quit the shell.'),
    '',
  ];
  return lines.join('\n');
}

/**
 * `-- [ CMD ARGS ... ]` lifted out of argv, so that options may follow the
 * group (`nbdjs shell -- [ nbdkit memory 1G ] -c CODE`): its words, and the
 * rest of argv for getopt.
 */
function liftCommand(argv: string[]): { group?: string[]; rest: string[] } {
  const at = argv.findIndex((a, i) => a === '--' && argv[i + 1] === '[');
  if (at < 0) return { rest: argv };
  const end = argv.indexOf(']', at + 2);
  if (end < 0) return { rest: argv };
  return { group: argv.slice(at + 1, end + 1), rest: [...argv.slice(0, at), ...argv.slice(end + 1)] };
}

/** A failure of the user's code, named by its kind ("TypeError: ..."), its stack kept for --debug. */
function codeFailure(e: unknown): unknown {
  if (!(e instanceof Error) || e instanceof nbd.NbdError || e instanceof Exit) return e;
  const failure = new Error(`${e.name}: ${e.message}`, { cause: e });
  failure.stack = e.stack;
  return failure;
}

export async function run(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { group, rest } = liftCommand(argv);
  const parsed = getopt(rest, OPTIONS);
  if (group !== undefined) parsed.operands.unshift(...group);
  const snippets: Snippet[] = [];
  let noHandle = false;
  let verbose = false;
  for (const { key, value } of parsed.options) {
    switch (key) {
      case 'h':
        await io.out(usage());
        return 0;
      case 'V':
        await io.out(`nbdsh ${nbd.getVersion()}\n${nbd.getPackageName()} ${nbd.getVersion()}\n`);
        return 0;
      case 'short-options':
        await io.out(`${SHORT_LIST.join('\n')}\n`);
        return 0;
      case 'long-options':
        await io.out(`${LONG_LIST.join('\n')}\n`);
        return 0;
      case 'c':
        snippets.push(value === '-' ? { kind: 'stdin' } : { kind: 'command', code: value! });
        break;
      case 'n':
        noHandle = true;
        break;
      case 'v':
        verbose = true;
        break;
      case 'base-allocation':
      case 'opt-mode':
        snippets.push({ kind: key });
        break;
      case 'u':
        snippets.push({ kind: 'uri', uri: value! });
        break;
    }
  }
  if (parsed.error !== undefined) throw new UsageError(parsed.error);
  const target = parsed.operands.length === 0 ? undefined : targetOf(parsed.operands);
  if (parsed.operands.length > 0 && target === undefined) throw new UsageError(`one NBD-URI or [ CMD ARGS ... ], not: ${parsed.operands.join(' ')}`);
  if (target !== undefined) {
    // The operand connects after the settings and before the code.
    const firstCode = snippets.findIndex((s) => s.kind === 'command' || s.kind === 'stdin');
    snippets.splice(firstCode < 0 ? snippets.length : firstCode, 0, { kind: 'connect', target });
  }
  const needsHandle = snippets.some((s) => s.kind !== 'command' && s.kind !== 'stdin');
  if (noHandle && needsHandle) throw new UsageError('-n cannot be used with --base-allocation, --opt-mode, --uri or a URI');
  // As nbdsh: -v is LIBNBD_DEBUG=1, for every handle made from here on.
  if (verbose) process.env.LIBNBD_DEBUG = '1';

  const h = noHandle ? undefined : new nbd.Handle();
  h?.setHandleName('nbdsh');
  // The scope of the code and of the REPL: the package's exports, `nbd`, `h`, exit().
  const scope: Record<string, unknown> = { nbd, exit: exitFunction };
  for (const [name, value] of Object.entries(nbd)) if (/^[A-Za-z]\w*$/.test(name)) scope[name] = value;
  if (h !== undefined) scope.h = h;
  Object.assign(globalThis, scope);
  // The code writes to process.stdout itself: taken through io, whose
  // listener notes a reader that went away (EPIPE), so that nbdjs ends by
  // SIGPIPE after the code, not with an unhandled 'error' event.
  void io.stdout;
  try {
    let code = 0;
    try {
      for (const s of snippets) {
        switch (s.kind) {
          case 'base-allocation':
            h!.addMetaContext(nbd.CONTEXT_BASE_ALLOCATION);
            break;
          case 'opt-mode':
            h!.setOptMode(true);
            break;
          case 'uri':
            await unlessAborted(h!.connectUri(s.uri), signal);
            break;
          case 'connect':
            if (s.target.kind === 'uri') await unlessAborted(h!.connectUri(s.target.uri), signal);
            else await unlessAborted(h!.connectSystemdSocketActivation(s.target.argv), signal);
            break;
          case 'command':
            await unlessAborted(runCode(s.code, 'nbdjs shell -c'), signal);
            break;
          case 'stdin':
            await unlessAborted(runCode(readFileSync(0, 'utf8'), 'nbdjs shell -c -'), signal);
            break;
        }
      }
    } catch (e) {
      if (!(e instanceof Exit)) throw e;
      code = e.code;
    }
    if (snippets.some((s) => s.kind === 'command' || s.kind === 'stdin')) return code;
    return await interact(io, h, target, signal);
  } finally {
    if (h !== undefined) {
      if (signal.aborted) h.close();
      else await h[Symbol.asyncDispose]();
    }
  }
}

/** The REPL, until .exit, exit() or Ctrl-D (or Ctrl-C twice); resolves with the status. */
async function interact(io: Io, h: nbd.Handle | undefined, target: Target | undefined, signal: AbortSignal): Promise<number> {
  const repl = require('node:repl') as typeof import('node:repl');
  io.err(`${banner(h, target)}\n`);
  let status = 0;
  const server = repl.start({ prompt: 'nbd> ', useGlobal: true, input: process.stdin, output: process.stdout });
  // In the REPL, exit(N) leaves it with status N.
  server.context.exit = (code: unknown = 0) => {
    status = typeof code === 'number' && Number.isInteger(code) ? code : code ? 1 : 0;
    server.close();
  };
  const history = process.env.NBDJS_HISTORY ?? join(homedir(), '.nbdjs_history');
  if (history !== '' && process.stdin.isTTY) {
    await new Promise<void>((resolve) => server.setupHistory(history, () => resolve()));
  }
  await new Promise<void>((resolve) => {
    server.on('exit', resolve);
    signal.addEventListener('abort', () => server.close(), { once: true });
  });
  return status;
}
