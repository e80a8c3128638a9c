// nbdjs info: nbdinfo, as the libnbd loaded ships it (1.14 on Debian 12,
// 1.22 on Debian 13): its options, its output byte for byte, its exit
// status (0; 1 on an error, a bad option included; --can: 0 or 2). The
// structure follows nbdinfo's sources (info/main.c here, the rest in
// bin/info/); only the error lines differ, "nbdjs: info: " where nbdinfo
// writes "nbdinfo: ", with the errno's name at the end. Public API only, and
// only the modules info needs (start-up time is most of a --size run).
import type { Handle } from '../lib';
import { doCan } from './info/can';
import { loadedFlavour } from './info/flavour';
import { doMap } from './info/map';
import { getopt, interpret, longOptions, SHORT_OPTIONS, usage as infoUsage, type InfoOptions } from './info/options';
import { closeHandle, createHandle, doConnect, Fatal, fatal, type Session, type Target } from './info/session';
import { collectExports, listAllExports, showConnection, showOneExport } from './info/show';
import { jsonString, Output } from './info/text';
import type { Io } from './subcommand';

/** `nbdjs info --help` for the libnbd loaded. */
export function usage(): string {
  return infoUsage(loadedFlavour());
}

/** Runs nbdinfo's main() on argv; resolves with its exit status. Ctrl-C (`signal`): the handles are closed, nothing is printed, exit status 130. */
export async function run(argv: string[], io: Io, signal?: AbortSignal): Promise<number> {
  const flavour = loadedFlavour();
  const warn = (line: string) => io.err(`nbdjs: info: ${line}\n`);
  const usageError = (line?: string) => {
    io.err(`${line === undefined ? '' : `nbdjs: info: ${line}\n`}${infoUsage(flavour)}`);
    return 1;
  };

  const parsed = getopt(argv, longOptions(flavour));
  const { exit, options } = interpret(parsed.options);
  switch (exit) {
    case 'help':
      return writeStdout(io, infoUsage(flavour));
    case 'long-options':
      return writeStdout(
        io,
        longOptions(flavour)
          .filter((o) => o.name !== 'long-options' && o.name !== 'short-options')
          .map((o) => `--${o.name}\n`)
          .join(''),
      );
    case 'short-options':
      return writeStdout(
        io,
        Object.keys(SHORT_OPTIONS)
          .map((c) => `-${c}\n`)
          .join(''),
      );
    case 'version':
      return writeStdout(io, `nbdinfo ${flavour.version}\n${flavour.packageName} ${flavour.version}\n`);
  }
  if (parsed.error !== undefined) return usageError(parsed.error.message);

  const { operands } = parsed;
  let target: Target;
  if (operands.length >= 3 && operands[0] === '[' && operands[operands.length - 1] === ']') target = { kind: 'command', argv: operands.slice(1, -1) };
  else if (operands.length === 1) target = { kind: 'uri', uri: operands[0] };
  // nbdinfo prints its usage alone here.
  else return usageError();

  const modes = [options.list, options.can !== undefined, options.map !== undefined, options.size, options.uri].filter(Boolean).length;
  if (modes > 1) {
    warn(flavour.uriOption ? 'you cannot use --can, --cannot, --list, --map, --size and --uri together.' : 'you cannot use --list, --map and --size together.');
    return 1;
  }
  if (options.content && options.noContent) {
    warn('you cannot use --content and --no-content together.');
    return 1;
  }
  if (options.totals && options.map === undefined) {
    warn('you must use --totals only with --map option.');
    return 1;
  }

  const s: Session = {
    flavour,
    options,
    target,
    probeContent: probeContent(options),
    out: new Output(options.colour ?? process.stdout.isTTY === true),
    warn,
    handles: new Set(),
    interrupted: false,
  };
  const work = runSession(s);
  // Settled either way once the handles are closed: never an unhandled rejection.
  work.catch(() => {});
  let code: number;
  try {
    code = await untilAborted(work, signal);
  } catch (e) {
    if (e instanceof Interrupted) {
      // As nbdinfo dies of SIGINT: no goodbye that could wait on the server.
      s.interrupted = true;
      for (const h of s.handles) h.close();
      s.handles.clear();
      return 130;
    }
    if (!(e instanceof Fatal)) throw e;
    warn(e.message);
    return 1;
  } finally {
    await Promise.all([...s.handles].map((h) => closeHandle(s, h)));
  }
  return (await writeStdout(io, s.out.bytes())) || code;
}

/** probe_content: yes without --list, unless told; never for --can or --map. */
function probeContent(o: InfoOptions): boolean {
  let probe = !o.list;
  if (o.content) probe = true;
  if (o.noContent) probe = false;
  if (o.can !== undefined || o.map !== undefined) probe = false;
  return probe;
}

/** main() from nbd_create to nbd_close: the exit status; the output is left in s.out. */
async function runSession(s: Session): Promise<number> {
  const { options: o, flavour: f } = s;
  const h = createHandle(s);
  const plainMode = o.can === undefined && o.map === undefined && !o.size && !o.uri;
  if (f.optModeAlways || plainMode) h.setOptMode(true);
  if (plainMode) h.setFullInfo(true);
  if (o.map !== undefined) {
    try {
      h.addMetaContext(o.map);
    } catch {
      // nbdinfo does not look; the --map check reports it.
    }
  }
  await doConnect(s, h);
  const exports = o.list ? await collectExports(s, h) : [];
  let code = 0;
  if (o.size) doSize(s, h);
  else if (o.uri) doUri(s, h);
  else if (o.can !== undefined) code = doCan(s, h, o.can);
  else if (o.map !== undefined) await doMap(s, h, o.map);
  else {
    showConnection(s, h);
    const ok = o.list ? await listAllExports(s, h, exports) : await showOneExport(s, h, undefined, true, true);
    if (o.json) s.out.write('}\n');
    code = ok ? 0 : 1;
  }
  await closeHandle(s, h);
  return code;
}

function doSize(s: Session, h: Handle<true>): void {
  try {
    s.out.write(`${h.getSize()}\n`);
  } catch (e) {
    throw fatal(e);
  }
}

function doUri(s: Session, h: Handle<true>): void {
  let uri: string;
  try {
    uri = h.getUri();
  } catch (e) {
    throw fatal(e);
  }
  s.out.write(`${s.options.json ? jsonString(uri) : uri}\n`);
}

class Interrupted extends Error {}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(new Interrupted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Interrupted());
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * The output, written at once as nbdinfo writes it: 0, or 1 after a write
 * error reported as nbdinfo reports it. A reader that went away (`| head`)
 * is nbdjs's to handle: it ends the process by SIGPIPE, quietly, as it
 * ends nbdinfo.
 */
async function writeStdout(io: Io, output: string | Uint8Array): Promise<number> {
  try {
    await io.out(output);
    return 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') throw e;
    io.err(`nbdjs: info: puts: ${(e as Error).message}\n`);
    return 1;
  }
}
