// nbdjs copy SOURCE DESTINATION: nbdcopy (its main.c here; the copying is
// lib/io's copy()): nbdcopy's options with nbdcopy's meaning, short and
// long, parsed as its getopt_long parses them, and its endpoints: NBD URIs,
// files, block and character devices, `-` for stdin or stdout, `null:` as
// the destination, and `[ CMD ARGS ... ]`, a server started by systemd
// socket activation. Public API only.
import { availableParallelism } from 'node:os';
import { copy, getPackageName, getVersion, type CopyEndpoint, type CopyOptions, type CopyStart, type Handle } from '../lib';
import { closeHandle, openTarget, type Target } from './endpoints';
import { getopt, listLongOptions, listShortOptions, type LongOption, type OptionTable } from './getopt';
import { humanSize } from './info/text';
import { fdProgress, noProgress, plainProgress, ttyProgress, type ProgressSink, type Sample } from './progress';
import { UsageError, type Io } from './subcommand';

const o = (name: string, key: string, arg: LongOption['arg'] = 'none'): LongOption => ({ name, key, arg });

/** nbdcopy's option table (the same at 1.14 and 1.22), then nbdjs's own spellings. */
const OPTIONS: OptionTable = {
  short: 'C:pR:S:T:vVh',
  long: [
    o('help', 'help'),
    o('long-options', 'long-options'),
    o('allocated', 'allocated'),
    o('connections', 'C', 'required'),
    o('destination-is-zero', 'destination-is-zero'),
    o('flush', 'flush'),
    o('no-extents', 'no-extents'),
    o('progress', 'p', 'optional'),
    o('queue-size', 'queue-size', 'required'),
    o('request-size', 'request-size', 'required'),
    o('requests', 'R', 'required'),
    o('short-options', 'short-options'),
    o('sparse', 'S', 'required'),
    o('synchronous', 'synchronous'),
    o('target-is-zero', 'destination-is-zero'),
    o('threads', 'T', 'required'),
    o('verbose', 'v'),
    o('version', 'V'),
    // nbdjs's earlier names.
    o('no-sparse', 'allocated'),
    o('detect-zeroes', 'detect-zeroes'),
    o('no-detect-zeroes', 'no-detect-zeroes'),
    o('no-progress', 'no-progress'),
  ],
};

export function usage(): string {
  return `usage: nbdjs copy [--allocated] [-C N|--connections=N]
                  [--destination-is-zero|--target-is-zero] [--flush]
                  [--no-extents] [-p|--progress|--progress=FD]
                  [--queue-size=N] [--request-size=N] [-R N|--requests=N]
                  [-S N|--sparse=N] [--synchronous] [-T N|--threads=N]
                  [-v|--verbose]
                  SOURCE DESTINATION
       nbdjs copy --help | -V|--version | --long-options | --short-options

nbdcopy's options, with its meaning:
SOURCE, DESTINATION := - | FILE | DEVICE | NBD-URI | [ CMD ARGS ... ]
DESTINATION += null:
'-' is stdin or stdout; [ CMD ARGS ... ] a server started by systemd socket
activation (write -- before the first option of CMD, as for nbdcopy).

  --allocated, --no-sparse  allocate every block of the destination: zero with
                            NO_HOLE, write zeroes to a file, no zero detection
  -C, --connections=N       connections per NBD URI (default 4, or the CPUs if
                            fewer; 1 when a side lacks multi-conn or is a
                            [ CMD ], a stream or -)
  --destination-is-zero, --target-is-zero
                            the destination reads as zeroes: zeroes are not written
  --flush                   flush the destination at the end (NBD flush, fsync)
  --no-extents              read everything, not only what the source's
                            base:allocation map says is data
  -p, --progress            progress on stderr: a bar on a terminal (the default
                            there), plain lines elsewhere
  --progress=FD             nbdcopy's machine-readable lines "N/100" to FD
  --no-progress             no progress, even on a terminal
  --queue-size=N            bytes of requests in flight per connection (default 16M)
  --request-size=N          bytes per request, a power of 2 from 4096 to 32M
                            (default 1M: nbdcopy's is 256K); suffixes K, M, G
  -R, --requests=N          requests in flight per connection (default 8: nbdcopy's is 64)
  -S, --sparse=N            treat all-zero blocks of N bytes as holes (default
                            4096); 0: write them as data. --no-detect-zeroes
                            is -S 0, --detect-zeroes -S 4096
  --synchronous             one connection and one request at a time
  -T, --threads=N           at most N connections (nbdcopy runs one thread per
                            connection; default: the CPUs)
  -v, --verbose             the sides and settings on stderr, and libnbd's debug messages
  -V, --version             nbdcopy's and libnbd's version (the libnbd loaded)
  --long-options, --short-options
                            list the options
  --debug                   a stack trace on failure
  -h, --help                this text
Ctrl-C stops the copy once the requests in flight complete (exit status 130).
`;
}

interface Settings {
  allocated: boolean;
  connections: number;
  destinationIsZero: boolean;
  flush: boolean;
  extents: boolean;
  progress: 'default' | 'on' | 'off' | { fd: number };
  queueSize?: number;
  requestSize?: number;
  requests?: number;
  sparse?: number;
  synchronous: boolean;
  threads: number;
  verbose: boolean;
}

/** A bad option value is reported in one line, as nbdcopy reports it. */
const VALUE = { usage: false };

/** sscanf's "%u": digits after optional blanks (and a '+'), anything after them ignored; -1 when there are none. */
function scanUnsigned(text: string): number {
  const m = /^\s*\+?(\d+)/.exec(text);
  return m === null ? -1 : Number(m[1]);
}

/** human_size_parse: digits with an optional suffix b, s (512), k, m, g, t, p, e (powers of 1024). */
export function parseHumanSize(text: string, option: string): number {
  const m = /^\s*([+-]?\d+)(.*)$/.exec(text);
  if (m === null) throw new UsageError(`${option}: could not parse size string: ${text}`, VALUE);
  const n = Number(m[1]);
  if (n < 0) throw new UsageError(`${option}: size cannot be negative: ${text}`, VALUE);
  const suffix = m[2];
  if (suffix.length > 1) throw new UsageError(`${option}: could not parse size: unknown suffix: ${suffix}`, VALUE);
  const scales: Record<string, number> = { '': 1, b: 1, s: 512, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };
  const scale = scales[suffix.toLowerCase()];
  if (scale === undefined) throw new UsageError(`${option}: could not parse size: unknown suffix: ${suffix}`, VALUE);
  return n * scale;
}

function isPowerOf2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

type Exit = 'help' | 'long-options' | 'short-options' | 'version';

/** nbdcopy's option loop: each option acted on in order (so --help before a bad option wins); the first that ends nbdcopy at once, if any. */
function interpret(argv: string[]): { exit?: Exit; settings: Settings; operands: string[] } {
  const parsed = getopt(argv, OPTIONS);
  const s: Settings = {
    allocated: false,
    connections: 4,
    destinationIsZero: false,
    flush: false,
    extents: true,
    progress: 'default',
    synchronous: false,
    threads: 0,
    verbose: false,
  };
  for (const { key, value, spelled } of parsed.options) {
    const v = value ?? '';
    switch (key) {
      case 'help':
      case 'h':
        return { exit: 'help', settings: s, operands: [] };
      case 'long-options':
      case 'short-options':
        return { exit: key, settings: s, operands: [] };
      case 'V':
        return { exit: 'version', settings: s, operands: [] };
      case 'allocated':
        s.allocated = true;
        break;
      case 'destination-is-zero':
        s.destinationIsZero = true;
        break;
      case 'flush':
        s.flush = true;
        break;
      case 'no-extents':
        s.extents = false;
        break;
      case 'synchronous':
        s.synchronous = true;
        break;
      case 'C':
        s.connections = scanUnsigned(v);
        if (s.connections <= 0) throw new UsageError(`--connections: could not parse: ${v}`, VALUE);
        break;
      case 'p':
        if (value === undefined) s.progress = 'on';
        else {
          const fd = /^\s*[+-]?\d+/.test(v) ? Number(/^\s*([+-]?\d+)/.exec(v)![1]) : -1;
          if (fd < 0) throw new UsageError(`--progress: could not parse: ${v}`, VALUE);
          s.progress = { fd };
        }
        break;
      case 'no-progress':
        s.progress = 'off';
        break;
      case 'queue-size':
        s.queueSize = parseHumanSize(v, '--queue-size');
        if (s.queueSize > 2 ** 32 - 1) throw new UsageError(`--queue-size is too large: ${v}`, VALUE);
        break;
      case 'request-size': {
        const n = parseHumanSize(v, '--request-size');
        if (n < 4096 || n > 32 * 2 ** 20 || !isPowerOf2(n)) throw new UsageError(`--request-size: must be a power of 2 within 4096-33554432: ${v}`, VALUE);
        s.requestSize = n;
        break;
      }
      case 'R':
        s.requests = scanUnsigned(v);
        if (s.requests <= 0) throw new UsageError(`--requests: could not parse: ${v}`, VALUE);
        break;
      case 'S': {
        const n = parseHumanSize(v, '--sparse');
        if (n !== 0 && (n < 512 || n > 2 ** 32 - 1 || !isPowerOf2(n))) throw new UsageError(`--sparse: must be a power of 2, between 512-4294967295: ${v}`, VALUE);
        s.sparse = n;
        break;
      }
      case 'detect-zeroes':
        s.sparse = 4096;
        break;
      case 'no-detect-zeroes':
        s.sparse = 0;
        break;
      case 'T':
        s.threads = scanUnsigned(v);
        if (s.threads < 0) throw new UsageError(`--threads: could not parse: ${v}`, VALUE);
        break;
      case 'v':
        s.verbose = true;
        break;
      default:
        throw new UsageError(`${spelled}: not an option of nbdjs copy`);
    }
  }
  if (parsed.error !== undefined) throw new UsageError(parsed.error);
  return { settings: s, operands: parsed.operands };
}

type Operand = { kind: 'command'; argv: string[] } | { kind: 'name'; name: string };

/** SOURCE then DESTINATION, as nbdcopy reads them: each `[ ... ]` or one word. */
function endpointsOf(operands: string[]): [Operand, Operand] {
  const out: Operand[] = [];
  let i = 0;
  while (i < operands.length && out.length < 2) {
    if (operands[i] === '[') {
      const end = operands.indexOf(']', i + 1);
      if (end < 0) throw new UsageError("'[' without a matching ']'");
      if (end === i + 1) throw new UsageError("'[ ]' needs a server command");
      out.push({ kind: 'command', argv: operands.slice(i + 1, end) });
      i = end + 1;
    } else out.push({ kind: 'name', name: operands[i++] });
  }
  if (out.length < 2) throw new UsageError(`SOURCE and DESTINATION are needed (got ${out.length})`);
  if (i !== operands.length) throw new UsageError(`unexpected arguments after DESTINATION: ${operands.slice(i).join(' ')}`);
  return [out[0], out[1]];
}

function progressSink(s: Settings, io: Io): ProgressSink {
  const p = s.progress;
  if (p === 'off') return noProgress;
  if (typeof p === 'object') return fdProgress(p.fd);
  if (process.stderr.isTTY) return ttyProgress(io.err);
  return p === 'on' ? plainProgress(io.err) : noProgress;
}

/** print_rw, as nbdcopy --verbose prints each side. */
function describeSide(prefix: string, side: CopyStart['source'], name: string): string {
  // nbdcopy's sizes: -1 for a pipe (unknown), INT64_MAX for null:.
  const size = side.kind === 'pipe_ops' ? -1n : side.kind === 'null_ops' ? 2n ** 63n - 1n : BigInt(side.size ?? -1);
  const human = humanSize(BigInt.asUintN(64, size)).text;
  return `${prefix}: ${side.kind} "${name}"\n${prefix}: size=${size} (${human}), preferred block size=${side.preferred}\n`;
}

export async function run(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { exit, settings: s, operands } = interpret(argv);
  switch (exit) {
    case 'help':
      await io.out(usage());
      return 0;
    case 'long-options':
      await io.out(listLongOptions(OPTIONS));
      return 0;
    case 'short-options':
      await io.out(listShortOptions(OPTIONS));
      return 0;
    case 'version':
      await io.out(`nbdcopy ${getVersion()}\n${getPackageName()} ${getVersion()}\n`);
      return 0;
  }
  const [src, dst] = endpointsOf(operands);
  if (dst.kind === 'name' && dst.name === '-' && require('node:tty').isatty(1)) throw new Error('refusing to write to tty');

  // nbdcopy: a thread per connection, as many as the CPUs unless -T says;
  // --synchronous is one connection, one request at a time.
  const threads = s.threads > 0 ? s.threads : availableParallelism();
  const connections = s.synchronous ? 1 : Math.min(s.connections, threads, 64);
  const names: Record<'source' | 'destination', string> = { source: '', destination: '' };
  const handleCount = { source: 0, destination: 0 };
  // As nbdcopy: libnbd's debug messages with -v (and not otherwise, whatever
  // LIBNBD_DEBUG says), each handle named src0, src1, ..., dst0, ...
  const configure = (h: Handle, side: 'source' | 'destination') => {
    h.setDebug(s.verbose);
    if (s.verbose) h.setHandleName(`${side === 'source' ? 'src' : 'dst'}${handleCount[side]++}`);
  };
  const options: CopyOptions = {
    connections,
    queueDepth: s.synchronous ? 1 : Math.min(s.requests ?? 8, 1024),
    queueSize: s.queueSize === undefined ? undefined : Math.max(1, s.queueSize),
    requestSize: s.requestSize,
    sparse: !s.allocated,
    detectZeroes: s.sparse === undefined ? true : s.sparse === 0 ? false : s.sparse,
    extents: s.extents,
    destinationIsZero: s.destinationIsZero,
    flush: s.flush,
    signal,
    configure,
  };
  if (s.verbose) {
    options.onStart = (start) => {
      io.err(describeSide('nbdcopy: src', start.source, names.source));
      io.err(describeSide('nbdcopy: dst', start.destination, names.destination));
      io.err(`nbdcopy: connections=${start.connections} requests=${start.queueDepth} threads=${start.connections} synchronous=${s.synchronous}\n`);
    };
  }

  const opened: Handle[] = [];
  const endpoint = async (e: Operand, side: 'source' | 'destination'): Promise<CopyEndpoint> => {
    if (e.kind === 'name') {
      names[side] = e.name;
      if (e.name !== '-') return e.name;
      return side === 'source' ? io.stdin : io.stdout;
    }
    // nbdcopy names a command by its program; a command is one connection.
    names[side] = e.argv[0];
    const target: Target = { kind: 'command', argv: e.argv };
    const h = await openTarget(target, {
      metaContexts: side === 'source' && s.extents ? ['base:allocation'] : [],
      configure: (x) => {
        configure(x, side);
        x.setPreadInitialize(false);
      },
      signal,
    });
    opened.push(h);
    return h;
  };

  const sink = progressSink(s, io);
  let last: Sample | undefined;
  options.onProgress = ({ bytes, total, rate }) => {
    last = { bytes, total, rate };
    sink.update(last);
  };
  try {
    const from = await endpoint(src, 'source');
    const to = await endpoint(dst, 'destination');
    sink.start?.();
    const stats = await copy(from, to, options);
    sink.done(last ?? { bytes: stats.bytes, total: stats.bytes, rate: 0 });
  } catch (e) {
    // A bar ends its line; the error goes on the next one.
    sink.done(undefined);
    throw e;
  } finally {
    // The source first, as nbdcopy.
    for (const h of opened) await closeHandle(h);
  }
  return 0;
}
