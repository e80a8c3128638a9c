// nbdjs: nbdinfo and nbdcopy's jobs on the libnbd package's public API
// (docs/architecture.md, "Layers"). Dispatches to a subcommand; exit status
// 0 on success, 1 on a failure (one line: "nbdjs: SUBCOMMAND: <cause> (ECODE)",
// a stack trace only with --debug), 2 on a usage error, 130 after Ctrl-C;
// info's statuses are nbdinfo's (1 on a usage error, 2 for a --can's no).
import { UsageError } from './args';

// Subcommands are loaded when run: each loads only the modules it needs
// (start-up time is most of a short `nbdjs info --size`).
const loadInfo = () => require('./info') as typeof import('./info');
const loadCopy = () => require('./copy') as typeof import('./copy');

const USAGE = `usage: nbdjs info [nbdinfo's options] NBD-URI | [ CMD ARGS ... ]
       nbdjs copy SRC DST [--connections N] [--requests N] [--request-size SIZE]
                          [--no-sparse] [--no-detect-zeroes] [--flush] [--progress]
       nbdjs SUBCOMMAND --help`;

const USAGES: Record<string, () => string> = { info: () => loadInfo().infoUsage(), copy: () => loadCopy().COPY_USAGE };

const out = (text: string | Uint8Array) => process.stdout.write(text);
const err = (text: string) => process.stderr.write(text);

/** "cause (ECODE)" of an error, one line. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  const message = e.message.split('\n')[0];
  return typeof code === 'string' && code !== '' && !message.includes(`(${code})`) ? `${message} (${code})` : message;
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub === undefined ? err : out)(`${USAGE}\n`);
    return sub === undefined ? 2 : 0;
  }
  if (!(sub in USAGES)) {
    err(`nbdjs: unknown subcommand '${sub}'\n${USAGE}\n`);
    return 2;
  }
  const debug = rest.includes('--debug');
  const args = rest.filter((a) => a !== '--debug');
  const ac = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C does not wait
    interrupted = true;
    ac.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSigint);
  try {
    // info exits as nbdinfo does (--can: 2 for no), with its own messages.
    const code = sub === 'info' ? await loadInfo().info(args, { out, err, signal: ac.signal }) : (await loadCopy().copyCommand(args, { out, err, signal: ac.signal }), 0);
    return interrupted ? 130 : code;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`nbdjs: ${sub}: ${e.message}\n${USAGES[sub]()}\n`);
      return 2;
    }
    if (interrupted) {
      err(`nbdjs: ${sub}: interrupted\n`);
      return 130;
    }
    err(`nbdjs: ${sub}: ${describeError(e)}\n`);
    if (debug && e instanceof Error && e.stack !== undefined) err(`${e.stack}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      err(`nbdjs: ${describeError(e)}\n`);
      process.exitCode = 1;
    },
  );
}
