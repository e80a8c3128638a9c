// One measurement of the Node-native layer (lib/io), run by bench/io.ts in a
// child process of its own. Takes one JSON argument (a CopyJob) and prints
// one JSON line (a CopyJobResult).
//  - 'copy': copy(src, dst) with the default options; the time is copy()'s,
//    from the call (connects included) to its resolution.
//  - 'stream': Handle#createReadStream() of the whole export piped into a
//    Writable that drops the bytes; reports `unavailable` when this build has
//    no createReadStream (it is built apart from copy(): lib/io/read-stream.ts).
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Handle, copy } from '../lib';

export type CopyJob = { mode: 'copy'; src: string; dst: string } | { mode: 'stream'; src: string };

export type CopyJobResult =
  | { seconds: number; bytes: number; dataBytes: number; maxRssKiB: number }
  | { unavailable: string; maxRssKiB: number };

async function stream(src: string): Promise<CopyJobResult> {
  const h = new Handle();
  try {
    await h.connectUri(src);
    const create = (h as unknown as { createReadStream?: () => NodeJS.ReadableStream }).createReadStream;
    if (typeof create !== 'function') {
      return { unavailable: 'Handle#createReadStream is not in this build', maxRssKiB: process.resourceUsage().maxRSS };
    }
    const bytes = h.getSize();
    const t0 = performance.now();
    await pipeline(
      create.call(h),
      new Writable({
        write(_chunk, _encoding, callback) {
          callback();
        },
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    await h.shutdown();
    return { seconds, bytes, dataBytes: bytes, maxRssKiB: process.resourceUsage().maxRSS };
  } finally {
    h.close();
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as CopyJob;
  let result: CopyJobResult;
  if (job.mode === 'copy') {
    const r = await copy(job.src, job.dst);
    result = { seconds: r.seconds, bytes: r.bytes, dataBytes: r.dataBytes, maxRssKiB: process.resourceUsage().maxRSS };
  } else {
    result = await stream(job.src);
  }
  console.log(JSON.stringify(result));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
