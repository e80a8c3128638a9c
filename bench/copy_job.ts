// One measurement of the Node-native layer (lib/io), run by bench/io.ts in a
// child process of its own. Takes one JSON argument (a CopyJob) and prints
// one JSON line (a CopyJobResult).
//  - 'copy': copy(src, dst) with the default options; the time is copy()'s,
//    from the call (connects included) to its resolution.
//  - 'stream': createReadStream() with its defaults, of the whole export,
//    piped into a Writable that drops the bytes: a Handle's on `driver`, or
//    with `pool` a Pool's (Pool.connect with its defaults). The time runs
//    from createReadStream() (connected) to the pipeline's end.
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Handle, Pool, copy, type Driver } from '../lib';

export interface StreamJob {
  mode: 'stream';
  src: string;
  pool?: boolean;
  driver?: Driver;
}

export type CopyJob = { mode: 'copy'; src: string; dst: string } | StreamJob;

export interface CopyJobResult {
  seconds: number;
  bytes: number;
  dataBytes: number;
  maxRssKiB: number;
}

async function stream(job: StreamJob): Promise<CopyJobResult> {
  let from: Handle | Pool;
  if (job.pool !== true) {
    const h = new Handle({ driver: job.driver });
    await h.connectUri(job.src);
    from = h;
  } else {
    from = await Pool.connect(job.src, { driver: job.driver });
  }
  const bytes = from.getSize();
  const t0 = performance.now();
  await pipeline(
    from.createReadStream(),
    new Writable({
      write(_chunk, _encoding, callback) {
        callback();
      },
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  if (from instanceof Pool) await from.close();
  else {
    await from.shutdown();
    from.close();
  }
  return { seconds, bytes, dataBytes: bytes, maxRssKiB: process.resourceUsage().maxRSS };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as CopyJob;
  let result: CopyJobResult;
  if (job.mode === 'copy') {
    const r = await copy(job.src, job.dst);
    result = { seconds: r.seconds, bytes: r.bytes, dataBytes: r.dataBytes, maxRssKiB: process.resourceUsage().maxRSS };
  } else {
    result = await stream(job);
  }
  console.log(JSON.stringify(result));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
