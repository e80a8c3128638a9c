// Streams an export, gzip-compressed, to a file ("-": stdout) over a Pool's
// connections, and gives up after --timeout seconds (AbortSignal.timeout):
// the pipeline is destroyed and the pool shuts down and closes at once.
//
//   node dist/examples/stream-gzip.js URI OUT.gz [--timeout SECONDS]
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { Pool } from '../lib';

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { timeout: { type: 'string' } } });
  const [uri, out] = positionals;
  const seconds = values.timeout === undefined ? undefined : Number(values.timeout);
  if (uri === undefined || out === undefined || positionals.length > 2 || (seconds !== undefined && !(seconds > 0))) {
    throw new Error('usage: stream-gzip URI OUT.gz [--timeout SECONDS]');
  }
  const signal = seconds === undefined ? undefined : AbortSignal.timeout(seconds * 1000);
  const pool = await Pool.connect(uri);
  // An aborted read stream closes once its reads in flight have completed,
  // and pipeline() (Node >= 22) settles only once every stream has closed: a
  // server slow to answer would hold the abort up until it did. Closing the
  // pool at the abort ends those reads now (they fail; the stream drops them).
  const closeNow = () => void pool.close().catch(() => undefined);
  signal?.addEventListener('abort', closeNow, { once: true });
  try {
    await pipeline(pool.createReadStream(), createGzip(), out === '-' ? process.stdout : createWriteStream(out), { signal });
  } finally {
    signal?.removeEventListener('abort', closeNow);
    await pool.close();
  }
}

main().catch((e: Error) => {
  // An abort's cause says why: here a TimeoutError from AbortSignal.timeout.
  const cause = e.cause instanceof Error ? ` (${e.cause.message})` : '';
  console.error(`stream-gzip: ${e.message}${cause}`);
  process.exitCode = 1;
});
