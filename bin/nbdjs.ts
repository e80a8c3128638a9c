// nbdjs: libnbd's tools (nbdinfo, nbdcopy, nbddump, nbdsh) on the libnbd
// package's public API (docs/cli.md; docs/architecture.md, "bin"). One
// table of subcommands; each is loaded only when it runs (start-up time is
// most of a short `nbdjs info --size`). Exit status: the subcommand's; 1 on
// a failure (one line, "nbdjs: SUBCOMMAND: <cause> (ECODE)", a stack trace
// with --debug); 2 on a usage error; 130 after Ctrl-C; death by SIGPIPE when
// stdout's reader went away.
import { dieOfSigpipe, processIo } from './output';
import { UsageError, type Subcommand } from './subcommand';

interface Entry {
  /** What follows `nbdjs NAME` in the overview. */
  synopsis: string;
  load(): Subcommand;
}

const SUBCOMMANDS: Record<string, Entry> = {
  info: { synopsis: "[nbdinfo's options] NBD-URI | [ CMD ARGS ... ]", load: () => require('./info') as Subcommand },
  copy: { synopsis: "[nbdcopy's options] SOURCE DESTINATION", load: () => require('./copy') as Subcommand },
  dump: { synopsis: "[nbddump's options] NBD-URI | [ CMD ARGS ... ]", load: () => require('./dump') as Subcommand },
  shell: { synopsis: "[nbdsh's options] [NBD-URI | [ CMD ARGS ... ]] [-c CODE ...]", load: () => require('./shell') as Subcommand },
};

const USAGE = `${Object.entries(SUBCOMMANDS)
  .map(([name, e], i) => `${i === 0 ? 'usage:' : '      '} nbdjs ${name} ${e.synopsis}`)
  .join('\n')}
       nbdjs SUBCOMMAND --help`;

/** "cause (ECODE)" of an error, one line. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  const message = e.message.split('\n')[0];
  return typeof code === 'string' && code !== '' && !message.includes(`(${code})`) ? `${message} (${code})` : message;
}

/** `--debug` before any `--`: a stack trace with a failure. Taken out for every subcommand. */
function takeDebug(argv: string[]): { debug: boolean; args: string[] } {
  const end = argv.indexOf('--');
  const head = end < 0 ? argv : argv.slice(0, end);
  const tail = end < 0 ? [] : argv.slice(end);
  const args = [...head.filter((a) => a !== '--debug'), ...tail];
  return { debug: args.length !== argv.length, args };
}

export async function main(argv: string[]): Promise<number> {
  const io = processIo();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === undefined) io.err(`${USAGE}\n`);
    else await io.out(`${USAGE}\n`).catch(() => undefined);
    return name === undefined ? 2 : 0;
  }
  const entry = Object.hasOwn(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined;
  if (entry === undefined) {
    io.err(`nbdjs: unknown subcommand '${name}'\n${USAGE}\n`);
    return 2;
  }
  const { debug, args } = takeDebug(rest);
  const ac = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C does not wait
    interrupted = true;
    ac.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSigint);
  let sub: Subcommand | undefined;
  try {
    sub = entry.load();
    const code = await sub.run(args, io, ac.signal);
    if (io.stdoutGone) return brokenPipe();
    return interrupted ? 130 : code;
  } catch (e) {
    if (io.stdoutGone) return brokenPipe();
    if (e instanceof UsageError) {
      const text = e.showUsage ? (sub?.usage() ?? '') : '';
      io.err(`nbdjs: ${name}: ${e.message}\n${text}${text === '' || text.endsWith('\n') ? '' : '\n'}`);
      return 2;
    }
    if (interrupted) {
      io.err(`nbdjs: ${name}: interrupted\n`);
      return 130;
    }
    io.err(`nbdjs: ${name}: ${describeError(e)}\n`);
    if (debug && e instanceof Error && e.stack !== undefined) io.err(`${e.stack}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** stdout's reader went away: end as the C tools do, by SIGPIPE, saying nothing. */
function brokenPipe(): number {
  dieOfSigpipe();
  return 141;
}

/** Runs nbdjs on the process's arguments (bin/nbdjs, the package's command, calls this). */
export function start(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`nbdjs: ${describeError(e)}\n`);
      process.exitCode = 1;
    },
  );
}

if (require.main === module) start();
