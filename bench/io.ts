// The Node-native layer's workloads in `npm run bench`, each beside nbdcopy
// on the same servers in the same run (see bench/README.md):
//   W4  copy() of the 1 GiB random-filled nbdkit memory export to another  | nbdcopy SRC DST
//   W5  createReadStream() of it (a Handle's, a Pool's) into a Writable that drops the bytes | nbdcopy SRC null:
//   W6  copy() of nbdkit sparse-random size=4G to a local file             | nbdcopy SRC FILE
//   ISZERO  isZero's GB/s beside a JS word loop and nbdcopy's is_zero in C (N-API)
import { spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ChildError, MiB, fmt, median, runChild, runJson, startServer, type Table } from './common';
import { POOL_DEFAULTS } from '../lib/io/pool';
import type { CopyJob, CopyJobResult } from './copy_job';
import type { IsZeroJob, IsZeroResult } from './iszero';

export const IO_WORKLOADS = ['W4', 'W5', 'W6', 'ISZERO'];

const SOURCE_DIR = resolve(__dirname, '../../bench');
const COPY_JOB = join(__dirname, 'copy_job.js');
/** The nbdjs command (dist/bin/nbdjs.js), timed as nbdcopy is: its process from exec to exit. */
const NBDJS = join(__dirname, '..', 'bin', 'nbdjs.js');
const ISZERO_JOB = join(__dirname, 'iszero.js');
const ISZERO_SIZES = [4096, 256 * 1024, 32 * MiB];
const NBDJS_NOTE = '‡ the nbdjs command (bin/), same arguments as nbdcopy, timed as nbdcopy: its process from exec to exit (Node start-up included; no RSS figure).';
/** glibc malloc thresholds fixed (no trim under 512 MiB free, mmap only from 4 MiB): the W5 § row's environment. */
const MALLOC_TUNABLES = 'glibc.malloc.trim_threshold=536870912:glibc.malloc.mmap_threshold=4194304';
const COPY_TIMED = 'copy() from the call (connects included) to its resolution';

export interface IoContext {
  /** A temp dir for servers and files, removed by the caller. */
  dir: string;
  /** The 1 GiB nbdkit memory export filled from nbdkit random. */
  uri: string;
  runs: number;
  quick: boolean;
  log(line: string): void;
  /** Runs one child; one that fails is logged and counted, and comes back as its ChildError. */
  attempt<T>(what: string, run: () => Promise<T>): Promise<T | ChildError>;
}

interface Side {
  label: string;
  seconds: number[];
  maxRssKiB: number[];
  allocated: number[];
  failures: string[];
}

const side = (label: string): Side => ({ label, seconds: [], maxRssKiB: [], allocated: [], failures: [] });

interface CopyWorkload {
  name: string;
  title: string;
  /** The source's size. */
  size: number;
  /** Our children's jobs (one row each; `env` added to the child's environment), and nbdcopy's arguments, for one run. */
  jobs: { label: string; job: CopyJob; env?: Record<string, string> }[];
  nbdcopy: string[];
  /** `nbdjs copy` rows: its arguments, timed from exec to exit like nbdcopy. */
  commands?: { label: string; args: string[] }[];
  /** What our time covers, for the note under the table. */
  timed: string;
  notes?: string[];
  /** A destination file, removed before each run and measured after it. */
  file?: string;
}

async function measureCopy(ctx: IoContext, w: CopyWorkload): Promise<{ ours: Side[]; theirs: Side }> {
  const ours = [...w.jobs.map((j) => side(j.label)), ...(w.commands ?? []).map((c) => side(c.label))];
  const theirs = side('nbdcopy');
  const fresh = () => {
    if (w.file !== undefined) rmSync(w.file, { force: true });
  };
  const runOurs = async (what: string) => {
    for (const [k, { label, job, env }] of w.jobs.entries()) {
      fresh();
      const node = [process.execPath, COPY_JOB, JSON.stringify(job)];
      const [cmd, ...args] = env === undefined ? node : ['env', ...Object.entries(env).map(([name, value]) => `${name}=${value}`), ...node];
      const r = await ctx.attempt(`${what} ${label}`, () => runJson<CopyJobResult>(cmd, args));
      if (r instanceof ChildError) ours[k].failures.push(r.message);
      else {
        ours[k].seconds.push(r.seconds);
        ours[k].maxRssKiB.push(r.maxRssKiB);
        if (w.file !== undefined) ours[k].allocated.push(statSync(w.file).blocks * 512);
        ctx.log(`${what} ${label}: ${fmt(r.bytes / r.seconds / MiB, 1)} MiB/s`);
      }
    }
    for (const [k, { label, args }] of (w.commands ?? []).entries()) {
      const s = ours[w.jobs.length + k];
      fresh();
      const t = performance.now();
      const r = await ctx.attempt(`${what} ${label}`, () => runChild(process.execPath, [NBDJS, ...args], 300_000));
      const seconds = (performance.now() - t) / 1000;
      if (r instanceof ChildError) s.failures.push(r.message);
      else {
        s.seconds.push(seconds);
        if (w.file !== undefined) s.allocated.push(statSync(w.file).blocks * 512);
        ctx.log(`${what} ${label}: ${fmt(w.size / seconds / MiB, 1)} MiB/s`);
      }
    }
  };
  const runNbdcopy = async (what: string) => {
    fresh();
    const t0 = performance.now();
    const n = await ctx.attempt(`${what} nbdcopy`, () => runChild('nbdcopy', w.nbdcopy, 300_000));
    const seconds = (performance.now() - t0) / 1000;
    if (n instanceof ChildError) theirs.failures.push(n.message);
    else {
      theirs.seconds.push(seconds);
      if (w.file !== undefined) theirs.allocated.push(statSync(w.file).blocks * 512);
      ctx.log(`${what} nbdcopy: ${fmt(w.size / seconds / MiB, 1)} MiB/s`);
    }
  };
  // An untimed nbdcopy first: the destination server allocates its memory
  // then, not during whichever copy comes first.
  fresh();
  await ctx.attempt(`${w.name} warm-up nbdcopy`, () => runChild('nbdcopy', w.nbdcopy, 300_000));
  for (let i = 1; i <= ctx.runs; i++) {
    // Interleaved, in turns, so that drift on the shared machine hits all alike.
    const what = `${w.name} run ${i}/${ctx.runs}`;
    if (i % 2 === 1) {
      await runOurs(what);
      await runNbdcopy(what);
    } else {
      await runNbdcopy(what);
      await runOurs(what);
    }
  }
  fresh();
  return { ours, theirs };
}

function copyTable(w: CopyWorkload, { ours, theirs }: { ours: Side[]; theirs: Side }, runs: number): Table {
  const spread = (s: Side) => {
    const rates = s.seconds.map((x) => w.size / x);
    return `${fmt(((Math.max(...rates) - Math.min(...rates)) / median(rates)) * 100)}%`;
  };
  const withFile = w.file !== undefined;
  const row = (s: Side) => {
    if (s.seconds.length === 0) return [`${s.label} *`, 'failed', '-', '-', '-', ...(withFile ? ['-'] : [])];
    const ratio = theirs.seconds.length > 0 ? fmt(median(theirs.seconds) / median(s.seconds), 2) : '-';
    return [
      s.failures.length > 0 ? `${s.label} *` : s.label,
      fmt(w.size / median(s.seconds) / MiB, 1),
      ratio,
      spread(s),
      s.maxRssKiB.length > 0 ? `${fmt(median(s.maxRssKiB) / 1024)} MiB` : '-',
      ...(withFile ? [`${fmt(median(s.allocated) / MiB, 1)} MiB`] : []),
    ];
  };
  const all = [theirs, ...ours];
  return {
    title: `${w.title}, median of ${runs} runs`,
    headers: ['client', 'MiB/s', '× nbdcopy', 'spread', 'peak RSS', ...(withFile ? ['file allocated'] : [])],
    align: withFile ? 'lrrrrr' : 'lrrrr',
    rows: all.map(row),
    notes: [
      ...[...new Set(all.flatMap((s) => s.failures.map((f) => `${s.label}: ${f}`)))].map((f) => `* ${f}`),
      `MiB/s = bytes of the source (holes included) / time; nbdcopy: its process from exec to exit; Node: ${w.timed}.`,
      ...(w.notes ?? []),
    ],
  };
}

/** Compiles bench/iszero_napi.c into a .node file in `dir`, or says why not. */
function compileIsZero(dir: string): { path: string } | { failed: string } {
  let include: string;
  try {
    include = (require('node-api-headers') as { include_dir: string }).include_dir;
  } catch {
    include = join(dirname(process.execPath), '..', 'include', 'node');
  }
  const path = join(dir, 'iszero_napi.node');
  const args = ['-shared', '-fPIC', '-O2', `-I${include}`, '-o', path, join(SOURCE_DIR, 'iszero_napi.c')];
  const cc = spawnSync('cc', args, { encoding: 'utf8' });
  return cc.status === 0 ? { path } : { failed: `cc ${args.join(' ')}: ${cc.stderr || cc.error}` };
}

async function measureIsZero(ctx: IoContext): Promise<{ table: Table; json: unknown }> {
  const native = compileIsZero(ctx.dir);
  const job: IsZeroJob = { sizes: ISZERO_SIZES, bytes: ctx.quick ? 1e9 : 4e9, native: 'path' in native ? native.path : undefined };
  const runs: IsZeroResult[] = [];
  for (let i = 1; i <= ctx.runs; i++) {
    const r = await ctx.attempt(`ISZERO run ${i}/${ctx.runs}`, () => runJson<IsZeroResult>(process.execPath, [ISZERO_JOB, JSON.stringify(job)]));
    if (!(r instanceof ChildError)) runs.push(r);
  }
  const variants = runs.length > 0 ? Object.keys(runs[0]) : [];
  const label: Record<string, string> = {
    isZero: 'isZero (memcmp through Buffer#compare)',
    'js words': 'JS loop over an Int32Array, 8 words per step',
    native: "C N-API function (nbdcopy's is_zero)",
  };
  const gbps = (v: string, size: number) => runs.map((r) => r[v][String(size)]);
  return {
    table: {
      title: `isZero: GB/s over all-zero buffers (every byte read), median of ${runs.length} runs`,
      headers: ['variant', ...ISZERO_SIZES.map((s) => (s >= MiB ? `${s / MiB} MiB` : `${s / 1024} KiB`)), 'spread'],
      align: 'l' + 'r'.repeat(ISZERO_SIZES.length + 1),
      rows: variants.map((v) => {
        const spreads = ISZERO_SIZES.map((s) => {
          const xs = gbps(v, s);
          return (Math.max(...xs) - Math.min(...xs)) / median(xs);
        });
        return [label[v] ?? v, ...ISZERO_SIZES.map((s) => fmt(median(gbps(v, s)), 1)), `${fmt(Math.max(...spreads) * 100)}%`];
      }),
      notes: [
        ...('failed' in native ? [`The C reference was not built: ${native.failed}`] : []),
        'Fresh buffers of real pages; the 32 MiB one does not fit in cache. "spread": the largest (max - min) / median of a column.',
      ],
    },
    json: { sizes: ISZERO_SIZES, runs },
  };
}

export async function runIo(ctx: IoContext, picked: string[]): Promise<{ tables: Table[]; json: Record<string, unknown> }> {
  const tables: Table[] = [];
  const json: Record<string, unknown> = {};
  const GiB = 1024 * MiB;
  if (picked.includes('W4')) {
    const dst = await startServer(ctx.dir, 'w4-dst', ['memory', 'size=1G']);
    const w: CopyWorkload = {
      name: 'W4',
      title: 'W4 (copy): copy() of the 1 GiB random-filled nbdkit memory export to another nbdkit memory export',
      size: GiB,
      jobs: [{ label: 'Node copy()', job: { mode: 'copy', src: ctx.uri, dst: dst.uri } }],
      nbdcopy: ['--', ctx.uri, dst.uri],
      commands: [{ label: 'nbdjs copy ‡', args: ['copy', ctx.uri, dst.uri] }],
      timed: COPY_TIMED,
      notes: [NBDJS_NOTE],
    };
    const r = await measureCopy(ctx, w);
    tables.push(copyTable(w, r, ctx.runs));
    json.W4 = r;
  }
  if (picked.includes('W5')) {
    const w: CopyWorkload = {
      name: 'W5',
      title: 'W5 (stream): createReadStream() of the 1 GiB export into a Writable that drops it',
      size: GiB,
      jobs: [
        { label: 'Node Pool#createReadStream, defaults', job: { mode: 'stream', src: ctx.uri, pool: true } },
        { label: 'Node Handle#createReadStream, defaults (loop driver)', job: { mode: 'stream', src: ctx.uri } },
        { label: 'Node Handle#createReadStream, thread driver', job: { mode: 'stream', src: ctx.uri, driver: 'thread' } },
        {
          label: 'Node Pool#createReadStream, defaults, malloc thresholds §',
          job: { mode: 'stream', src: ctx.uri, pool: true },
          env: { GLIBC_TUNABLES: MALLOC_TUNABLES },
        },
      ],
      nbdcopy: ['--', ctx.uri, 'null:'],
      timed: 'from createReadStream() (connected) to the end of the pipeline',
      notes: [
        `Every stream with the stream's defaults (1 MiB requests, 16 in flight, highWaterMark 1 MiB; libnbd's zeroing of each read buffer off around its own reads). A Pool's defaults: ${POOL_DEFAULTS.connections} connections here (4, or one per CPU if fewer, as nbdcopy's), the thread driver. A Handle's stream reads over its one connection on the handle's driver.`,
        `§ the process run with GLIBC_TUNABLES=${MALLOC_TUNABLES}: fixed malloc thresholds, so that the heap is not trimmed (and its pages faulted in again) as the collector frees batches of 1 MiB buffers.`,
      ],
    };
    const r = await measureCopy(ctx, w);
    tables.push(copyTable(w, r, ctx.runs));
    json.W5 = r;
  }
  if (picked.includes('W6')) {
    const size = ctx.quick ? 512 * MiB : 4 * GiB;
    const src = await startServer(ctx.dir, 'w6-src', ['sparse-random', `size=${size}`, 'seed=1']);
    const file = join(ctx.dir, 'w6.raw');
    const w: CopyWorkload = {
      name: 'W6',
      title: `W6 (sparse copy): copy() of nbdkit sparse-random size=${size / GiB >= 1 ? `${size / GiB}G` : `${size / MiB}M`} to a local file`,
      size,
      jobs: [{ label: 'Node copy()', job: { mode: 'copy', src: src.uri, dst: file } }],
      nbdcopy: ['--', src.uri, file],
      commands: [{ label: 'nbdjs copy ‡', args: ['copy', src.uri, file] }],
      timed: COPY_TIMED,
      notes: [NBDJS_NOTE],
      file,
    };
    const r = await measureCopy(ctx, w);
    tables.push(copyTable(w, r, ctx.runs));
    json.W6 = r;
  }
  if (picked.includes('ISZERO')) {
    const r = await measureIsZero(ctx);
    tables.push(r.table);
    json.ISZERO = r.json;
  }
  return { tables, json };
}
