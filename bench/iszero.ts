// isZero's speed, run by bench/run.ts in a child process: GB/s over
// all-zero buffers (the worst case: every byte is read) of a few sizes, for
//  - 'isZero': the library's (lib/io/zero.ts: nbdcopy's test, memcmp of the
//    buffer against itself shifted by 16 bytes, through Buffer#compare);
//  - 'js words': a JS loop over an Int32Array view, 8 words per step;
//  - 'native': nbdcopy's is_zero in C as a N-API function (bench/iszero_napi.c),
//    when its compiled .node is given.
// Takes one JSON argument (an IsZeroJob) and prints one JSON line (IsZeroResult).
import { isZero } from '../lib';

export interface IsZeroJob {
  sizes: number[];
  /** Bytes scanned per size and variant. */
  bytes: number;
  native?: string;
}

/** GB/s (1e9 bytes/s) by variant, then by size. */
export type IsZeroResult = Record<string, Record<string, number>>;

function wordLoop(buf: Uint8Array): boolean {
  const n = buf.byteLength;
  let i = 0;
  const head = Math.min(n, (4 - (buf.byteOffset & 3)) & 3);
  for (; i < head; i++) if (buf[i] !== 0) return false;
  const words = (n - i) >>> 2;
  const v = new Int32Array(buf.buffer, buf.byteOffset + i, words);
  let j = 0;
  for (; j + 8 <= words; j += 8) {
    if ((v[j] | v[j + 1] | v[j + 2] | v[j + 3] | v[j + 4] | v[j + 5] | v[j + 6] | v[j + 7]) !== 0) return false;
  }
  for (; j < words; j++) if (v[j] !== 0) return false;
  for (i += words * 4; i < n; i++) if (buf[i] !== 0) return false;
  return true;
}

function measure(f: (b: Uint8Array) => boolean, size: number, bytes: number): number {
  // Real pages (not the shared zero page a fresh allocation maps), zero.
  const buf = Buffer.alloc(size, 1).fill(0);
  const iterations = Math.max(3, Math.ceil(bytes / size));
  for (let i = 0; i < Math.min(iterations, 1000); i++) f(buf); // warm up the JIT
  let all = true;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) all = f(buf) && all;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (!all) throw new Error('an all-zero buffer was not found zero');
  return (iterations * size) / seconds / 1e9;
}

function main(): void {
  const job = JSON.parse(process.argv[2]) as IsZeroJob;
  const variants: Record<string, (b: Uint8Array) => boolean> = { isZero, 'js words': wordLoop };
  if (job.native !== undefined) variants.native = (require(job.native) as { isZero(b: Uint8Array): boolean }).isZero;
  const result: IsZeroResult = {};
  for (const [name, f] of Object.entries(variants)) {
    result[name] = {};
    for (const size of job.sizes) result[name][String(size)] = measure(f, size, job.bytes);
  }
  console.log(JSON.stringify(result));
}

main();
