// Reads a whole export with aioPreadStructured at a chosen queue depth and
// prints how much came as DATA and as HOLE chunks, and the throughput.
//
//   npm run read-export -- [URI] [--queue-depth N] [--block-size BYTES]
//
// Without a URI it starts its own server through connectCommand:
// `nbdkit -s sparse-random size=1G` (random data with sparse regions).
import { Handle, READ_DATA, READ_HOLE } from '../lib';

interface Options {
  uri?: string;
  queueDepth: number;
  blockSize: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { queueDepth: 16, blockSize: 256 * 1024 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`${a} needs a positive integer`);
      return v;
    };
    if (a === '--queue-depth' || a === '-q') opts.queueDepth = value();
    else if (a === '--block-size' || a === '-b') opts.blockSize = value();
    else if (a === '--help' || a === '-h') {
      console.log('usage: read-export [URI] [--queue-depth N] [--block-size BYTES]');
      process.exit(0);
    } else if (!a.startsWith('-') && opts.uri === undefined) opts.uri = a;
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

export interface ReadSummary {
  size: number;
  dataBytes: number;
  holeBytes: number;
  chunks: number;
  seconds: number;
}

/** Reads [0, size) of a connected handle with `queueDepth` reads in flight. */
export function readExport(h: Handle, queueDepth: number, blockSize: number): Promise<ReadSummary> {
  const size = h.getSize();
  const summary: ReadSummary = { size, dataBytes: 0, holeBytes: 0, chunks: 0, seconds: 0 };
  const start = process.hrtime.bigint();
  let next = 0;
  let inFlight = 0;
  return new Promise((resolve, reject) => {
    const chunk = (subbuf: Uint8Array, _offset: number, status: number) => {
      summary.chunks++;
      if (status === READ_DATA) summary.dataBytes += subbuf.length;
      else if (status === READ_HOLE) summary.holeBytes += subbuf.length;
      return 0;
    };
    const issue = (buf: Buffer) => {
      const offset = next;
      const view = offset + buf.length > size ? buf.subarray(0, size - offset) : buf;
      next += view.length;
      inFlight++;
      h.aioPreadStructured(view, offset, chunk, (error) => {
        inFlight--;
        if (error.value !== 0) {
          reject(new Error(`read at ${offset} failed: errno ${error.value}`));
          return 1;
        }
        if (next < size) issue(buf);
        else if (inFlight === 0) {
          summary.seconds = Number(process.hrtime.bigint() - start) / 1e9;
          resolve(summary);
        }
        return 1;
      });
    };
    if (size === 0) return resolve(summary);
    for (let i = 0; i < queueDepth && next < size; i++) issue(Buffer.allocUnsafe(blockSize));
  });
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const h = new Handle();
  try {
    if (opts.uri !== undefined) {
      await h.connectUri(opts.uri);
    } else {
      console.log('no URI given: starting nbdkit -s sparse-random size=1G');
      await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'sparse-random', 'size=1G', 'seed=1']);
    }
    const s = await readExport(h, opts.queueDepth, opts.blockSize);
    const mib = s.size / (1024 * 1024);
    console.log(`export size     ${s.size} bytes (${mib.toFixed(1)} MiB)`);
    console.log(`DATA            ${s.dataBytes} bytes`);
    console.log(`HOLE            ${s.holeBytes} bytes`);
    console.log(`chunks          ${s.chunks}`);
    console.log(`queue depth     ${opts.queueDepth} x ${opts.blockSize} bytes`);
    console.log(`time            ${s.seconds.toFixed(3)} s`);
    console.log(`throughput      ${(mib / s.seconds).toFixed(1)} MiB/s`);
    await h.shutdown();
  } finally {
    h.close();
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
