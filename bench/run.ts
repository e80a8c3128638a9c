// `npm run bench`: this binding beside a plain C libnbd loop (bench/c_loop.c)
// and, where installed, libnbd's Python binding (bench/py_loop.py), all on one
// `nbdkit memory size=1G` server over a Unix socket, in one run.
//
//   npm run bench -- [--quick] [--workload W1[,W2...]] [--runs N] [--markdown] [--json PATH] [--no-rss]
//   npm run bench -- --instructions [--commands A,B] [--runs N] [--quick]
//
// Every measurement runs in a child process of its own; each is repeated and
// the median reported. --instructions counts instructions per command under
// valgrind's callgrind instead of timing. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { Driver } from '../lib';
import {
  ChildError,
  KiB,
  canPin,
  MiB,
  SetupError,
  fmt,
  fmtBytes,
  fmtTotal,
  live,
  median,
  renderMarkdown,
  renderText,
  runChild,
  pinned,
  runJson,
  startServer,
  type Table,
} from './common';
import { IO_WORKLOADS, runIo } from './io';
import { ELD_RESOLUTION_MS, type EventLoopDelay, type Form, type Job, type JsResult } from './js_loop';

const SOURCE_DIR = resolve(__dirname, '../../bench');
const JS_LOOP = join(__dirname, 'js_loop.js');
const PYTHON = '/usr/bin/python3';
const DRIVERS: Driver[] = ['loop', 'thread'];

// ------------------------------------------------------------------ options

interface Workload {
  name: string;
  block: number;
  qd: number;
  total: number;
  what: string;
}

/**
 * W1-W3: every client first reads this share of the run's bytes, neither
 * timed nor counted. Without it the Node rows time V8 compiling their loop
 * (in W3's 40 MB, most of the run), which C and Python do not pay.
 */
const WARMUP_SHARE = 1 / 4;
const warmupBytes = (w: Workload) => Math.floor((w.total * WARMUP_SHARE) / w.block) * w.block;

/** The standard workloads (shared/anchors/README.md). */
const WORKLOADS: Workload[] = [
  { name: 'W1', block: 256 * KiB, qd: 16, total: 4 * 1024 * MiB, what: 'throughput' },
  { name: 'W2', block: 4 * KiB, qd: 64, total: 400_000_000, what: 'per-command overhead' },
  { name: 'W3', block: 4 * KiB, qd: 1, total: 40_000_000, what: 'latency' },
];
const QUICK_DIVISOR = 8;
/** The RSS check: commands of RSS_BLOCK bytes at RSS_QD, after a warm-up. */
const RSS_COMMANDS = 1_000_000;
const RSS_WARMUP = 100_000;
const RSS_BLOCK = 4 * KiB;
const RSS_QD = 64;
/** --instructions: W2's shape, at two command counts whose difference cancels start-up. */
const INSTR_BLOCK = 4 * KiB;
const INSTR_QD = 64;
const INSTR_COMMANDS: [number, number] = [20_000, 40_000];
/** A client under callgrind runs ~50 times slower than natively. */
const INSTR_CHILD_TIMEOUT_MS = 900_000;

interface Options {
  quick: boolean;
  workloads: Workload[];
  /** The Node-native layer's workloads (bench/io.ts): W4, W5, W6, ISZERO. */
  io: string[];
  rss: boolean;
  runs: number;
  markdown: boolean;
  json: string;
  /** --instructions: count instructions per command under callgrind instead. */
  instructions: boolean;
  commands: [number, number];
  /** W1-W3 a second time, the server on CPU 0 and each client on CPU 1 (see canPin). */
  pinnedToo: boolean;
}

const USAGE = `usage: npm run bench -- [options]
  --quick            totals / ${QUICK_DIVISOR} (W6: 512 MiB), 3 runs, no RSS check
  --workload LIST    some of W1,W2,W3,W4,W5,W6,ISZERO,RSS (repeatable; default: all)
  --runs N           runs per measurement (default 5, --quick 3; at least 3)
  --markdown         print README-ready markdown tables
  --json PATH        where to write the results (default bench/results.json)
  --no-rss           skip the RSS check (1M commands)
  --no-pin           W1-W3 unpinned only (as users run them: the headline);
                     by default on 2+ CPUs they run a second time with the
                     server bound to CPU 0 and each client to CPU 1 (taskset)
  --instructions     instructions per command under valgrind --tool=callgrind
                     (W2's shape; default 3 runs, --quick 1) instead of timing
  --commands A,B     the two command counts --instructions differences
                     (default ${INSTR_COMMANDS.join(',')})`;

function parseArgs(argv: string[]): Options {
  let quick = false;
  let markdown = false;
  let noRss = false;
  let noPin = false;
  let instructions = false;
  let commands = INSTR_COMMANDS;
  let runs: number | undefined;
  let json = join(SOURCE_DIR, 'results.json');
  const picked = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') quick = true;
    else if (a === '--markdown') markdown = true;
    else if (a === '--no-rss') noRss = true;
    else if (a === '--no-pin') noPin = true;
    else if (a === '--instructions') instructions = true;
    else if (a === '--commands') {
      const c = value().split(',').map(Number);
      if (c.length !== 2 || !c.every((x) => Number.isSafeInteger(x) && x > 0) || c[0] >= c[1]) {
        throw new UsageError('--commands needs two positive integers A,B with A < B');
      }
      commands = [c[0], c[1]];
    }
    else if (a === '--json') json = resolve(value());
    else if (a === '--runs') {
      runs = Number(value());
      if (!Number.isSafeInteger(runs) || runs < 1) throw new UsageError('--runs needs a positive integer');
    } else if (a === '--workload' || a === '-w') {
      for (const w of value().toUpperCase().split(',')) {
        if (w !== 'RSS' && !IO_WORKLOADS.includes(w) && !WORKLOADS.some((x) => x.name === w)) throw new UsageError(`unknown workload ${w}`);
        picked.add(w);
      }
    } else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new UsageError(`unknown argument ${a}`);
  }
  const all = picked.size === 0;
  if (instructions && picked.size > 0) throw new UsageError('--instructions measures W2\'s shape only; no --workload');
  // Medians of timed runs need at least 3; instruction counts barely vary.
  if (!instructions && runs !== undefined && runs < 3) throw new UsageError('--runs needs an integer >= 3');
  return {
    quick,
    markdown,
    json,
    instructions,
    commands,
    pinnedToo: !noPin && !instructions && canPin(),
    runs: runs ?? (instructions ? (quick ? 1 : 3) : quick ? 3 : 5),
    workloads: WORKLOADS.filter((w) => all || picked.has(w.name)).map((w) =>
      quick ? { ...w, total: Math.floor(w.total / QUICK_DIVISOR) } : w,
    ),
    io: IO_WORKLOADS.filter((w) => all || picked.has(w)),
    // The RSS check takes 1M commands: asked for by name, or in a full run.
    rss: !noRss && (picked.has('RSS') || (all && !quick)),
  };
}

class UsageError extends Error {}

// ------------------------------------------------------------------ processes

/** The temp dir, removed on exit with the processes in `live`. */
let workDir: string | undefined;

function cleanup(): void {
  for (const p of live) p.kill('SIGTERM');
  live.clear();
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    console.error(`\nbench: ${sig}, stopping`);
    cleanup();
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[sig]);
  });
}

/** Fails with a clear message unless `cmd` can be run. */
function need(cmd: string, why: string, args = ['--version']): void {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.error !== undefined || r.status !== 0) {
    throw new SetupError(`${cmd} is needed ${why} but ${r.error !== undefined ? 'was not found' : `failed (${cmd} ${args.join(' ')})`}`);
  }
}

function compileC(dir: string): string {
  const flags = spawnSync('pkg-config', ['--cflags', '--libs', 'libnbd'], { encoding: 'utf8' });
  if (flags.status !== 0) throw new SetupError(`pkg-config libnbd failed (is libnbd-dev installed?): ${flags.stderr}`);
  const bin = join(dir, 'c_loop');
  const args = ['-O2', '-Wall', '-pthread', '-o', bin, join(SOURCE_DIR, 'c_loop.c'), ...flags.stdout.trim().split(/\s+/)];
  const cc = spawnSync('cc', args, { encoding: 'utf8' });
  if (cc.status !== 0) throw new SetupError(`cc ${args.join(' ')} failed:\n${cc.stderr}`);
  return bin;
}

// ------------------------------------------------------------------ clients

interface RunResult {
  ops: number;
  bytes: number;
  seconds: number;
  maxRssKiB: number;
}

interface Client {
  id: string;
  client: string;
  variant: string;
  run(w: Workload): Promise<RunResult>;
}

/** The CPUs of the server and of W1-W3's clients in their pinned runs. */
const SERVER_CPU = 0;
const CLIENT_CPU = 1;
const PINNED = `pinned: the server bound to CPU ${SERVER_CPU}, the client to CPU ${CLIENT_CPU} (taskset)`;

/** `cmd args`, on CLIENT_CPU when `pin`. */
function client(pin: boolean, cmd: string, args: string[]): [string, string[]] {
  return pin ? pinned(CLIENT_CPU, cmd, args) : [cmd, args];
}

function jsJob(job: Job, nodeFlags: string[] = [], pin = false): Promise<JsResult> {
  return runJson<JsResult>(...client(pin, process.execPath, [...nodeFlags, JS_LOOP, JSON.stringify(job)]));
}

function clients(uri: string, cBin: string, python: boolean, defaultDriver: Driver, pin: boolean): Client[] {
  const native = (cmd: string, pre: string[], post: (w: Workload) => string[]) => (w: Workload) =>
    runJson<RunResult>(...client(pin, cmd, [...pre, uri, String(w.block), String(w.qd), String(w.total), ...post(w)]));
  const list: Client[] = [{ id: 'c', client: 'C', variant: 'libnbd aio', run: native(cBin, [], (w) => ['poll', String(warmupBytes(w))]) }];
  // The floor of reading on another thread: the same loop with two wake-ups per completion.
  list.push({ id: 'c-thread', client: 'C', variant: 'I/O thread, hand-off to main', run: native(cBin, [], (w) => ['thread', String(warmupBytes(w))]) });
  if (python) list.push({ id: 'python', client: 'Python', variant: 'libnbd aio', run: native(PYTHON, [join(SOURCE_DIR, 'py_loop.py')], (w) => [String(warmupBytes(w))]) });
  for (const { driver, form, ...node } of nodeClients(defaultDriver)) {
    list.push({
      ...node,
      run: async (w) => {
        const r = await jsJob({ mode: 'measure', uri, driver, form, block: w.block, qd: w.qd, total: w.total, eld: false, warmup: warmupBytes(w) }, [], pin);
        return r as RunResult;
      },
    });
  }
  // The same loop on buffers Node 20 and 22 cannot pin: what the copy costs there.
  list.push({
    id: 'node-plain',
    client: 'Node',
    variant: `${defaultDriver} (default) / callback, Buffer.alloc`,
    run: async (w) => {
      const job: Job = { mode: 'measure', uri, driver: defaultDriver, form: 'callback', block: w.block, qd: w.qd, total: w.total, eld: false, warmup: warmupBytes(w), buffers: 'plain' };
      return (await jsJob(job, [], pin)) as RunResult;
    },
  });
  return list;
}

/** The binding's clients, one per form and driver, in the tables' order. */
function nodeClients(defaultDriver: Driver): { id: string; client: string; variant: string; driver: Driver; form: Form }[] {
  return (['callback', 'promise'] as Form[]).flatMap((form) =>
    DRIVERS.map((driver) => ({
      id: `node-${driver}-${form}`,
      client: 'Node',
      variant: `${driver}${driver === defaultDriver ? ' (default)' : ''} / ${form}`,
      driver,
      form,
    })),
  );
}

// ------------------------------------------------------------------ figures

interface Measured {
  id: string;
  client: string;
  variant: string;
  /** The runs that failed, and why; the figures are those of the other runs (NaN if none). */
  failures: string[];
  runs: RunResult[];
  opsPerSec: number;
  mibPerSec: number;
  ratioToC: number;
  /** (max - min) / median of the runs' ops/s. */
  spread: number;
  maxRssKiB: number;
}

function summarize(c: Client, runs: RunResult[], cOpsPerSec: number | undefined, failures: string[]): Measured {
  const ops = runs.map((r) => r.ops / r.seconds);
  const opsPerSec = median(ops);
  return {
    id: c.id,
    client: c.client,
    variant: c.variant,
    failures,
    runs,
    opsPerSec,
    mibPerSec: median(runs.map((r) => r.bytes / r.seconds / MiB)),
    ratioToC: cOpsPerSec === undefined ? NaN : opsPerSec / cOpsPerSec,
    spread: (Math.max(...ops) - Math.min(...ops)) / opsPerSec,
    maxRssKiB: median(runs.map((r) => r.maxRssKiB)),
  };
}

function workloadTable(w: Workload, results: Measured[], runs: number, placement = 'unpinned'): Table {
  return {
    title: `${w.name} (${w.what}), ${placement}: ${fmtBytes(w.block)} reads at queue depth ${w.qd}, ${fmtTotal(w.total)} per run after ${fmtTotal(warmupBytes(w))} untimed, median of ${runs} runs`,
    headers: ['client', 'driver / form', 'ops/s', 'MiB/s', '× C', 'spread', 'peak RSS'],
    align: 'llrrrrr',
    rows: results.map((m) =>
      m.runs.length === 0
        ? [m.client, `${m.variant} *`, 'failed', '-', '-', '-', '-']
        : [
            m.client,
            m.failures.length === 0 ? m.variant : `${m.variant} *`,
            fmt(m.opsPerSec),
            fmt(m.mibPerSec, 1),
            Number.isNaN(m.ratioToC) ? '-' : fmt(m.ratioToC, 2),
            `${fmt(m.spread * 100)}%`,
            `${fmt(m.maxRssKiB / KiB)} MiB`,
          ],
    ),
    notes: results
      .filter((m) => m.failures.length > 0)
      .map((m) => {
        const which = m.runs.length === 0 ? `all ${runs} runs failed` : `${m.failures.length} of ${runs} runs failed (figures from the others)`;
        return `* ${m.client} ${m.variant}: ${which}: ${[...new Set(m.failures)].join('; ')}`;
      }),
  };
}

/** W1's event-loop delay for one Node client: medians of its runs' p50/p99, the max of their maxima. */
interface ClientEld {
  variant: string;
  eld?: { p50Ms: number; p99Ms: number; maxMs: number };
}

/**
 * W1's event-loop delay, in runs of its own: the timed runs record none,
 * since the 1 ms timer wakes the JS thread, which on a client held to one
 * CPU costs the thread driver's I/O thread a context switch per tick. With
 * `warm`, each run first reads W1's bytes unrecorded (V8 compiles the loop's
 * functions meanwhile).
 */
async function eventLoopDelay(
  uri: string,
  w: Workload,
  defaultDriver: Driver,
  runs: number,
  pin: boolean,
  warm: boolean,
  attempt: <T>(what: string, run: () => Promise<T>) => Promise<T | ChildError>,
): Promise<ClientEld[]> {
  const per = new Map<string, EventLoopDelay[]>();
  for (let i = 1; i <= runs; i++) {
    for (const { variant, driver, form } of nodeClients(defaultDriver)) {
      const job: Job = { mode: 'measure', uri, driver, form, block: w.block, qd: w.qd, total: w.total, eld: true, warmup: warm ? w.total : undefined };
      const r = await attempt(`W1 event-loop delay (${warm ? 'warm' : 'cold'}) run ${i}/${runs} ${variant}`, () => jsJob(job, [], pin));
      if (!(r instanceof ChildError) && r.eld !== undefined) per.set(variant, [...(per.get(variant) ?? []), r.eld]);
    }
  }
  return nodeClients(defaultDriver).map(({ variant }) => {
    const e = per.get(variant) ?? [];
    return {
      variant,
      eld:
        e.length === 0
          ? undefined
          : { p50Ms: median(e.map((x) => x.p50Ms)), p99Ms: median(e.map((x) => x.p99Ms)), maxMs: Math.max(...e.map((x) => x.maxMs)) },
    };
  });
}

function eldTable(cold: ClientEld[], warm: ClientEld[], idle: EventLoopDelay | undefined, runs: number): Table {
  const ms = (x: number) => fmt(x, 2);
  // How late the p99 tick came: its interval less the 1 ms it was due after.
  const late = (p99: number) => ms(Math.max(0, p99 - ELD_RESOLUTION_MS));
  const figures = (e: ClientEld['eld']) => (e === undefined ? ['-', '-', '-', '-'] : [ms(e.p50Ms), ms(e.p99Ms), late(e.p99Ms), ms(e.maxMs)]);
  const rows = cold.map((c) => [c.variant, ...figures(c.eld), ...figures(warm.find((x) => x.variant === c.variant)?.eld).slice(1)]);
  if (idle !== undefined) rows.unshift(['idle process (floor)', ...figures(idle), '', '', '']);
  return {
    title: `Event-loop delay during W1 (monitorEventLoopDelay, resolution ${ELD_RESOLUTION_MS} ms; runs of their own, medians of ${runs} runs' p50/p99, max of maxima)`,
    headers: ['driver / form', 'p50 interval ms', 'p99 interval ms', 'p99 delay ms', 'max interval ms', 'warm: p99 interval ms', 'warm: p99 delay ms', 'warm: max ms'],
    align: 'lrrrrrrr',
    rows,
    notes: [
      `The histogram records whole timer intervals (Node's RecordDelta), so an idle loop shows about ${ELD_RESOLUTION_MS} ms, the resolution. "p99 delay" is how late the p99 tick came: its interval less the ${ELD_RESOLUTION_MS} ms it was due after.`,
      'The first columns are W1 runs from a cold start. "warm": runs that first read as much again, unrecorded, then record W1: in a cold run V8 compiles the loop\'s functions on worker threads throughout the run, and each compile job (up to 20 ms) that shares the client\'s CPU holds the event loop off it. The timed runs above record no delay (its timer would cost the thread driver a context switch per tick).',
    ],
  };
}

interface RssResult {
  form: Form;
  driver: Driver;
  result: JsResult | { failed: string };
}

function rssTable(rss: RssResult[]): Table {
  const mib = (b: number) => `${fmt(b / MiB, 1)} MiB`;
  const label = (driver: Driver, form: Form) => `${driver} (default) / ${form}`;
  return {
    title: `RSS over ${fmt(RSS_COMMANDS)} ${fmtBytes(RSS_BLOCK)} reads at queue depth ${RSS_QD}, after ${fmt(RSS_WARMUP)} warm-up reads (gc() before each sample)`,
    headers: ['driver / form', 'RSS after warm-up', 'after 0.5M', 'after 1M', 'growth', 'growth 0.5M→1M', 'V8 heapTotal growth', 'heapTotal 0.5M→1M', 'ops/s'],
    align: 'lrrrrrrrr',
    rows: rss.map(({ driver, form, result: r }) => {
      if ('failed' in r) return [`${label(driver, form)} *`, 'failed', '-', '-', '-', '-', '-', '-', '-'];
      const { afterWarmup: w, afterHalf: h, afterCommands: c } = r.memory!;
      return [label(driver, form), mib(w.rss), mib(h.rss), mib(c.rss), mib(c.rss - w.rss), mib(c.rss - h.rss), mib(c.heapTotal - w.heapTotal), mib(c.heapTotal - h.heapTotal), fmt(r.ops! / r.seconds!)];
    }),
    notes: [
      ...rss.flatMap(({ driver, form, result: r }) => ('failed' in r ? [`* ${driver} / ${form}: ${r.failed}`] : [])),
      'RSS figures are process RSS. V8 grows its young generation under a high allocation rate (heapTotal, not heapUsed), which gc() does not give back; a leak keeps growing from 0.5M to 1M.',
    ],
  };
}

// ------------------------------------------------------------------ instructions

/** A client of --instructions: the command line that issues `n` commands of W2's shape. */
interface InstrClient {
  id: string;
  client: string;
  variant: string;
  argv(n: number): string[];
}

function instrClients(uri: string, cBin: string, defaultDriver: Driver): InstrClient[] {
  const total = (n: number) => n * INSTR_BLOCK;
  const list: InstrClient[] = [
    { id: 'c', client: 'C', variant: 'libnbd aio', argv: (n) => [cBin, uri, String(INSTR_BLOCK), String(INSTR_QD), String(total(n))] },
  ];
  for (const { driver, form, ...node } of nodeClients(defaultDriver)) {
    list.push({
      ...node,
      argv: (n) => {
        const job: Job = { mode: 'measure', uri, driver, form, block: INSTR_BLOCK, qd: INSTR_QD, total: total(n), eld: false };
        return [process.execPath, JS_LOOP, JSON.stringify(job)];
      },
    });
  }
  return list;
}

/**
 * Runs `argv` under callgrind and resolves with the instructions the client
 * process executed, all its threads (the thread driver's I/O thread, V8's
 * helpers) included; children (a server it forks) are not traced.
 */
async function countInstructions(argv: string[], n: number, outFile: string): Promise<number> {
  const args = ['--tool=callgrind', '--trace-children=no', `--callgrind-out-file=${outFile}`, ...argv];
  const result = await runJson<{ ops?: number }>('valgrind', args, INSTR_CHILD_TIMEOUT_MS);
  if (result.ops !== n) throw new ChildError(`completed ${result.ops} commands, expected ${n}`, `valgrind ${args.join(' ')}`);
  let text: string;
  try {
    text = readFileSync(outFile, 'utf8');
  } finally {
    rmSync(outFile, { force: true });
  }
  // Without --separate-threads one file holds every thread; "summary" is their total Ir.
  const m = /^summary:\s*(\d+)/m.exec(text) ?? /^totals:\s*(\d+)/m.exec(text);
  if (m === null) throw new ChildError('no summary line in the callgrind output', `valgrind ${args.join(' ')}`);
  return Number(m[1]);
}

interface InstrMeasured {
  id: string;
  client: string;
  variant: string;
  failures: string[];
  /** Per run: instruction totals at the two command counts. */
  totals: [number, number][];
  /** Per run: (total(B) - total(A)) / (B - A). */
  perCommand: number[];
  /** Median of perCommand. */
  instructionsPerCommand: number;
  relativeToC: number;
}

function instrTable(results: InstrMeasured[], commands: [number, number], runs: number): Table {
  return {
    title:
      `Instructions per command under callgrind: ${fmtBytes(INSTR_BLOCK)} reads at queue depth ${INSTR_QD} (W2's shape), ` +
      `(I(${fmt(commands[1])}) − I(${fmt(commands[0])})) / ${fmt(commands[1] - commands[0])}, client process only, median of ${runs} run${runs === 1 ? '' : 's'}`,
    headers: ['client', 'driver / form', 'instructions / command', '÷ C', 'runs (min–max)'],
    align: 'llrrr',
    rows: results.map((m) =>
      m.perCommand.length === 0
        ? [m.client, `${m.variant} *`, 'failed', '-', '-']
        : [
            m.client,
            m.failures.length === 0 ? m.variant : `${m.variant} *`,
            fmt(m.instructionsPerCommand),
            Number.isNaN(m.relativeToC) ? '-' : fmt(m.relativeToC, 2),
            `${fmt(Math.min(...m.perCommand))}–${fmt(Math.max(...m.perCommand))}`,
          ],
    ),
    notes: [
      ...results.filter((m) => m.failures.length > 0).map((m) => `* ${m.client} ${m.variant}: ${[...new Set(m.failures)].join('; ')}`),
      'Counts do not move with machine load, but under callgrind the client runs ~50× slower than the server, so replies are',
      'usually already waiting in the socket: this is the client-bound regime. Threads are serialized (the thread driver included).',
    ],
  };
}

// ------------------------------------------------------------------ main

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n')[0].trim();
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const log = (s: string) => process.stderr.write(s + '\n');

  let lib: typeof import('../lib');
  try {
    lib = require('../lib') as typeof import('../lib');
  } catch (e) {
    throw new SetupError(`cannot load the binding (build it first: npm run build): ${(e as Error).message}`);
  }
  need('nbdkit', 'to serve the export');
  need('nbdcopy', 'to fill the export with random data');
  need('cc', 'to build the C loop (bench/c_loop.c)');
  need('pkg-config', 'to find libnbd for the C loop', ['--exists', 'libnbd']);
  if (opts.instructions) need('valgrind', 'for --instructions (apt-get install valgrind)');
  const python = spawnSync(PYTHON, ['-c', 'import nbd'], { stdio: 'ignore' }).status === 0;
  if (!python) log(`bench: ${PYTHON} cannot import nbd (python3-libnbd): Python figures skipped`);
  const defaultDriver = lib.defaultDriver();

  workDir = mkdtempSync(join(tmpdir(), 'libnbd-bench-'));
  const cBin = compileC(workDir);
  const server = await startServer(workDir, 'nbd');
  const uri = server.uri;
  log(`bench: server ${uri}; filling 1 GiB from nbdkit random seed=1 ...`);
  await runChild('nbdcopy', ['--', '[', 'nbdkit', 'random', 'size=1G', 'seed=1', ']', uri], 300_000);

  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    libnbd: lib.getVersion(),
    nbdkit: firstLine('nbdkit', ['--version']),
    python: python ? firstLine(PYTHON, ['--version']) : null,
    /** The source tree measured (the addon is whatever build/ holds). */
    commit: firstLine('git', ['-C', SOURCE_DIR, 'describe', '--always', '--dirty']) || 'unknown',
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    pinnedToo: opts.pinnedToo,
    runs: opts.runs,
    quick: opts.quick,
    defaultDriver,
    server: 'nbdkit memory size=1G, Unix socket, filled by nbdcopy from nbdkit random size=1G seed=1',
  };
  const all = clients(uri, cBin, python, defaultDriver, false);
  const tables: Table[] = [];
  const json: Record<string, unknown> = { meta, workloads: {} as Record<string, unknown> };

  let failures = 0;
  /** Runs one child; one that fails is logged, counted and comes back as its ChildError. */
  const attempt = async <T>(what: string, run: () => Promise<T>): Promise<T | ChildError> => {
    try {
      return await run();
    } catch (e) {
      if (!(e instanceof ChildError)) throw e;
      failures++;
      log(`${what}: FAILED, ${e.detail}`);
      const gone = server.exited();
      if (gone !== undefined) throw new SetupError(`the server is gone (${gone}) after ${what} failed`);
      return e;
    }
  };

  if (opts.instructions) {
    const list = instrClients(uri, cBin, defaultDriver);
    const [a, b] = opts.commands;
    const totals = new Map<string, [number, number][]>(list.map((c) => [c.id, []]));
    const failed = new Map<string, string[]>(list.map((c) => [c.id, []]));
    for (let i = 1; i <= opts.runs; i++) {
      for (const c of list) {
        const counted: number[] = [];
        for (const n of [a, b]) {
          const what = `instructions run ${i}/${opts.runs} ${c.client} ${c.variant}, ${fmt(n)} commands`;
          const r = await attempt(what, () => countInstructions(c.argv(n), n, join(workDir!, `callgrind.${c.id}.${n}.out`)));
          if (r instanceof ChildError) {
            failed.get(c.id)!.push(r.message);
            break;
          }
          counted.push(r);
          log(`${what}: ${fmt(r)} instructions`);
        }
        if (counted.length === 2) totals.get(c.id)!.push([counted[0], counted[1]]);
      }
    }
    const perCommand = (t: [number, number][]) => t.map(([x, y]) => (y - x) / (b - a));
    const cPer = median(perCommand(totals.get('c')!));
    const results: InstrMeasured[] = list.map((c) => {
      const per = perCommand(totals.get(c.id)!);
      const m = median(per);
      return { id: c.id, client: c.client, variant: c.variant, failures: failed.get(c.id)!, totals: totals.get(c.id)!, perCommand: per, instructionsPerCommand: m, relativeToC: m / cPer };
    });
    json.instructions = { block: INSTR_BLOCK, qd: INSTR_QD, commands: opts.commands, results };
    tables.push(instrTable(results, opts.commands, opts.runs));
  }

  /** W: every client `runs` times, interleaved so that drift hits them all alike. */
  const measure = async (w: Workload, list: Client[], label: string): Promise<Measured[]> => {
    const runs = new Map<string, RunResult[]>(list.map((c) => [c.id, []]));
    const failed = new Map<string, string[]>(list.map((c) => [c.id, []]));
    for (let i = 1; i <= opts.runs; i++) {
      for (const c of list) {
        const what = `${w.name}${label} run ${i}/${opts.runs} ${c.client} ${c.variant}`;
        const r = await attempt(what, () => c.run(w));
        if (r instanceof ChildError) {
          failed.get(c.id)!.push(r.message);
        } else {
          runs.get(c.id)!.push(r);
          log(`${what}: ${fmt(r.ops / r.seconds)} ops/s, ${fmt(r.bytes / r.seconds / MiB, 1)} MiB/s`);
        }
      }
    }
    const cRuns = runs.get('c')!;
    const cOps = cRuns.length === 0 ? undefined : median(cRuns.map((r) => r.ops / r.seconds));
    return list.map((c) => summarize(c, runs.get(c.id)!, cOps, failed.get(c.id)!));
  };

  const timed = opts.instructions ? [] : opts.workloads;
  for (const w of timed) {
    const results = await measure(w, all, '');
    tables.push(workloadTable(w, results, opts.runs));
    (json.workloads as Record<string, unknown>)[w.name] = { ...w, results };
    if (w.name === 'W1') {
      const idle = await attempt('idle event-loop delay', () => jsJob({ mode: 'idle', ms: opts.quick ? 1000 : 3000 }));
      const idleEld = idle instanceof ChildError ? undefined : idle.eld;
      json.idleEventLoopDelay = idleEld;
      const cold = await eventLoopDelay(uri, w, defaultDriver, opts.runs, false, false, attempt);
      const warm = await eventLoopDelay(uri, w, defaultDriver, opts.runs, false, true, attempt);
      json.eventLoopDelay = { cold, warm };
      tables.push(eldTable(cold, warm, idleEld, opts.runs));
    }
  }

  if (opts.pinnedToo && timed.length > 0) {
    // The same workloads with the server and each client on a CPU of their own.
    const pinnedClients = clients(uri, cBin, python, defaultDriver, true);
    const pinnedJson: Record<string, unknown> = {};
    server.pin(SERVER_CPU);
    try {
      for (const w of timed) {
        const results = await measure(w, pinnedClients, ' (pinned)');
        tables.push(workloadTable(w, results, opts.runs, PINNED));
        pinnedJson[w.name] = { ...w, results };
      }
    } finally {
      server.unpin();
    }
    json.pinned = { serverCpu: SERVER_CPU, clientCpu: CLIENT_CPU, workloads: pinnedJson };
  }

  if (opts.rss && !opts.instructions) {
    const rss: RssResult[] = [];
    for (const form of ['callback', 'promise'] as Form[]) {
      log(`RSS: ${fmt(RSS_COMMANDS)} commands, ${defaultDriver} / ${form} ...`);
      const job: Job = { mode: 'rss', uri, driver: defaultDriver, form, block: RSS_BLOCK, qd: RSS_QD, warmup: RSS_WARMUP, commands: RSS_COMMANDS };
      const result = await attempt(`RSS ${defaultDriver} / ${form}`, () => jsJob(job, ['--expose-gc']));
      rss.push({ driver: defaultDriver, form, result: result instanceof ChildError ? { failed: result.message } : result });
    }
    json.rss = { commands: RSS_COMMANDS, warmup: RSS_WARMUP, block: RSS_BLOCK, qd: RSS_QD, results: rss };
    tables.push(rssTable(rss));
  }

  if (opts.io.length > 0 && !opts.instructions) {
    const io = await runIo({ dir: workDir, uri, runs: opts.runs, quick: opts.quick, log, attempt }, opts.io);
    tables.push(...io.tables);
    json.io = io.json;
  }

  writeFileSync(opts.json, JSON.stringify(json, null, 2) + '\n');
  const header = `libnbd for Node.js ${meta.commit}; node ${meta.node}, libnbd ${meta.libnbd}, ${meta.nbdkit}${python ? `, ${meta.python}` : ''}; ${meta.cpus} × ${meta.cpu}
Server: ${meta.server}. W1-W3 run unpinned, as users run them${meta.pinnedToo ? `, then once more with the server bound to CPU ${SERVER_CPU} and each client to CPU ${CLIENT_CPU}: figures that hold still and show the code's own cost` : ''}. ${
    opts.instructions
      ? `Each client runs under valgrind --tool=callgrind --trace-children=no; "÷ C" = its instructions per command over the C loop's.`
      : `Each figure is the median of ${opts.runs} runs, each run a child process of its own; "× C" = median ops/s over the C loop's median ops/s; "spread" = (max - min) / median over the runs.`
  }`;
  if (opts.markdown) console.log([header, ...tables.map(renderMarkdown)].join('\n\n'));
  else console.log([header, ...tables.map(renderText)].join('\n\n'));
  log(`bench: results written to ${relative(process.cwd(), opts.json)}`);
  if (failures > 0) {
    log(`bench: ${failures} measurement(s) failed (see the tables)`);
    process.exitCode = 1;
  }
}

main().then(
  () => cleanup(),
  (e: unknown) => {
    cleanup();
    if (e instanceof UsageError) console.error(`bench: ${e.message}\n${USAGE}`);
    else if (e instanceof SetupError) console.error(`bench: ${e.message}`);
    else console.error('bench:', e);
    process.exitCode = 1;
  },
);
