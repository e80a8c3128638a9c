// nbdjs copy SRC DST: lib/io's copy() between NBD URIs, [ server commands ]
// (a Handle started by socket activation) and local files, as nbdcopy; with
// '-' on either side, a stream path instead (stdin or stdout has no size and
// no random access): Handle#createReadStream / createWriteStream or fs
// streams, piped. Public API only.
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { copy as copyExport, type CopyEndpoint, type CopyOptions, type Handle } from '../lib';
import { describeEndpoint, parse, parseCount, parseSize, UsageError, type Endpoint } from './args';
import { closeHandle, openHandle } from './endpoints';
import { noProgress, plainProgress, ttyProgress, type ProgressSink, type Sample } from './progress';

export const COPY_USAGE = `usage: nbdjs copy SRC DST [--connections N] [--requests N] [--request-size SIZE]
                 [--no-sparse] [--no-detect-zeroes] [--flush] [--progress | --no-progress]
       nbdjs copy [OPTIONS] -- [ SERVER COMMAND ARGS ... ] DST     (and likewise for DST)

SRC and DST: an NBD URI (nbd://, nbd+unix://, ...), a local file, '-' for
stdin/stdout, or a server command in brackets started by socket activation,
as nbdcopy takes it: -- [ nbdkit -s memory 1G ].
  --connections N       connections per NBD URI (default: 4, or the CPUs if fewer; 1 without multi-conn)
  --requests N          requests in flight per connection (default 8)
  --request-size SIZE   bytes per request, e.g. 1M (default 1M; clamped to the servers' limits)
  --no-sparse           allocate every block of the destination (nbdcopy --allocated)
  --detect-zeroes       treat all-zero 4 KiB blocks as holes (the default, nbdcopy -S 4096)
  --no-detect-zeroes    write them as data
  --flush               flush the destination at the end
  --progress            progress on stderr: a bar on a terminal (the default there), lines otherwise
  --no-progress         no progress, even on a terminal
  --debug               a stack trace on failure
  --help                this text
Ctrl-C stops the copy once the requests in flight complete (exit status 130).`;

const OPTIONS = {
  connections: { type: 'string', short: 'C' },
  requests: { type: 'string', short: 'R' },
  'request-size': { type: 'string' },
  'no-sparse': { type: 'boolean' },
  'detect-zeroes': { type: 'boolean' },
  'no-detect-zeroes': { type: 'boolean' },
  flush: { type: 'boolean' },
  progress: { type: 'boolean', short: 'p' },
  'no-progress': { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface CopyIo {
  out: (text: string) => void;
  err: (text: string) => void;
  signal: AbortSignal;
}

function progressSink(values: Record<string, unknown>, err: (text: string) => void): ProgressSink {
  if (values['no-progress']) return noProgress;
  if (process.stderr.isTTY) return ttyProgress(err);
  return values.progress ? plainProgress(err) : noProgress;
}

export async function copyCommand(argv: string[], io: CopyIo): Promise<void> {
  const { values, endpoints } = parse(argv, OPTIONS);
  if (values.help) {
    io.out(`${COPY_USAGE}\n`);
    return;
  }
  if (endpoints.length !== 2) throw new UsageError(`SRC and DST are needed (got ${endpoints.length} argument${endpoints.length === 1 ? '' : 's'})`);
  if (values['detect-zeroes'] && values['no-detect-zeroes']) throw new UsageError('--detect-zeroes and --no-detect-zeroes cannot be used together');
  if (values.progress && values['no-progress']) throw new UsageError('--progress and --no-progress cannot be used together');
  const options: CopyOptions = {
    sparse: !values['no-sparse'],
    detectZeroes: !values['no-detect-zeroes'],
    flush: values.flush === true,
    signal: io.signal,
  };
  if (values.connections !== undefined) options.connections = parseCount(values.connections as string, '--connections', 64);
  if (values.requests !== undefined) options.queueDepth = parseCount(values.requests as string, '--requests', 1024);
  if (values['request-size'] !== undefined) options.requestSize = parseSize(values['request-size'] as string, '--request-size');
  const [src, dst] = endpoints;
  if (dst.kind === 'stdio' && process.stdout.isTTY) throw new UsageError('refusing to write to a terminal: redirect stdout');
  const sink = progressSink(values, io.err);
  let last: Sample | undefined;
  const report = (s: Sample) => {
    last = s;
    sink.update(s);
  };
  try {
    if (src.kind === 'stdio' || dst.kind === 'stdio') await streamCopy(src, dst, options, report);
    else await exportCopy(src, dst, options, report);
    sink.done(last);
  } catch (e) {
    // The bar ends its line; the error goes on the next one.
    sink.done(undefined);
    throw e;
  }
}

/** copy() between URIs, files and command endpoints (each command a Handle, closed here). */
async function exportCopy(src: Endpoint, dst: Endpoint, options: CopyOptions, report: (s: Sample) => void): Promise<void> {
  const opened: Handle[] = [];
  const endpoint = async (e: Endpoint, source: boolean): Promise<CopyEndpoint> => {
    if (e.kind === 'uri') return e.uri;
    if (e.kind === 'file') return e.path;
    // nbdcopy: a command is one connection; the source gets base:allocation for its extents.
    const h = await openHandle(e, {
      metaContexts: source ? ['base:allocation'] : [],
      configure: (x) => x.setPreadInitialize(false),
      signal: options.signal,
    });
    opened.push(h);
    return h;
  };
  try {
    const from = await endpoint(src, true);
    const to = await endpoint(dst, false);
    await copyExport(from, to, {
      ...options,
      onProgress: ({ bytes, total, rate }) => report({ bytes, total, rate }),
    });
  } finally {
    // The source first, as nbdcopy.
    for (const h of opened) await closeHandle(h);
  }
}

/** A pass-through that counts bytes for the progress report. */
function counter(total: number | undefined, report: (s: Sample) => void): Transform {
  const started = performance.now();
  let bytes = 0;
  let lastAt = -Infinity;
  const sample = (): Sample => {
    const seconds = (performance.now() - started) / 1000;
    return { bytes, total, rate: seconds > 0 ? bytes / seconds : 0 };
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      const now = performance.now();
      if (now - lastAt >= 100) {
        lastAt = now;
        report(sample());
      }
      callback(null, chunk);
    },
    flush(callback) {
      report(sample());
      callback();
    },
  });
}

/**
 * The stream path: stdin or stdout on one side (nbdcopy's pipe mode). No
 * extents and no sparseness: a pipe carries every byte, and zeroes arrive
 * as data (nbdcopy writes real zeroes to a pipe too).
 */
async function streamCopy(src: Endpoint, dst: Endpoint, options: CopyOptions, report: (s: Sample) => void): Promise<void> {
  const opened: Handle[] = [];
  try {
    let input: Readable;
    let total: number | undefined;
    if (src.kind === 'stdio') input = process.stdin;
    else if (src.kind === 'file') {
      total = (await fsp.stat(src.path)).size;
      input = createReadStream(src.path);
    } else {
      const h = await openHandle(src, { signal: options.signal });
      opened.push(h);
      total = Number(h.getSize());
      input = h.createReadStream({ requestSize: options.requestSize, queueDepth: options.queueDepth });
    }
    let output: Writable;
    let fsyncPath: string | undefined;
    if (dst.kind === 'stdio') output = process.stdout;
    else if (dst.kind === 'file') {
      output = createWriteStream(dst.path);
      if (options.flush) fsyncPath = dst.path;
    } else {
      const h = await openHandle(dst, { signal: options.signal });
      opened.push(h);
      if (h.isReadOnly()) throw Object.assign(new Error(`copy: the destination ${describeEndpoint(dst)} is read-only`), { code: 'EROFS' });
      output = h.createWriteStream({ flush: options.flush, queueDepth: options.queueDepth });
    }
    await pipeline(input, counter(total, report), output, { signal: options.signal });
    if (fsyncPath !== undefined) {
      const fh = await fsp.open(fsyncPath, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  } finally {
    for (const h of opened) await closeHandle(h);
  }
}
