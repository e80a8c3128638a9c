// One measurement of this binding, run by bench/run.ts in a child process of
// its own (one per run, so that runs do not pollute each other). Takes one
// JSON argument (a Job) and prints one JSON line (a JsResult).
//
// Forms:
//  - 'callback': the same loop as bench/c_loop.c: QD reads of BLOCK bytes in
//    flight with aioPreadStructured, the chunk callback counts bytes, the
//    completion callback auto-retires and issues the slot's next read.
//  - 'promise': N = QD concurrent loops, each awaiting `pread` in turn.
// Buffers come from allocBuffer, as bench/py_loop.py's from nbd.Buffer (job
// `buffers: 'plain'`: Buffer.alloc, which Node 20 and 22 cannot pin, so
// libnbd works on a copy of each).
// Reads wrap at the export's end. Connect and shutdown are not timed.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Handle, allocBuffer, type Driver, type ErrorRef } from '../lib';

export type Form = 'callback' | 'promise';
/** Where the reads' buffers come from: allocBuffer (the default), or Buffer.alloc. */
export type Buffers = 'alloc' | 'plain';

let newBuffer: (size: number) => Buffer = allocBuffer;

/** monitorEventLoopDelay's sampling interval here, ms. */
export const ELD_RESOLUTION_MS = 1;

export type Job =
  /**
   * Read `total` bytes; with `eld`, record the event-loop delay meanwhile.
   * `warmup` bytes are read first, neither timed nor recorded (V8 compiles
   * the loop's functions meanwhile).
   */
  | { mode: 'measure'; uri: string; driver: Driver; form: Form; block: number; qd: number; total: number; eld: boolean; warmup?: number; buffers?: Buffers }
  /** Memory after `warmup` commands, then after half and all of `commands` more (gc() before each sample). */
  | { mode: 'rss'; uri: string; driver: Driver; form: Form; block: number; qd: number; warmup: number; commands: number }
  /** The event-loop delay of an idle process over `ms`: the floor of the figures above. */
  | { mode: 'idle'; ms: number };

export interface EventLoopDelay {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export interface JsResult {
  ops?: number;
  bytes?: number;
  seconds?: number;
  eld?: EventLoopDelay;
  /** process.memoryUsage() after the warm-up, after half the commands, after all. */
  memory?: { afterWarmup: MemorySample; afterHalf: MemorySample; afterCommands: MemorySample };
  /** process.resourceUsage().maxRSS: peak RSS of this child, KiB. */
  maxRssKiB: number;
}

export type MemorySample = Pick<NodeJS.MemoryUsage, 'rss' | 'heapTotal' | 'heapUsed' | 'external'>;

interface Counts {
  ops: number;
  bytes: number;
}

/**
 * Keeps `qd` reads in flight; each completion issues its slot's next read.
 * After a failure it issues no more and settles once the reads in flight are
 * done, so that the server never sees a disconnect with replies on the way.
 */
function callbackLoop(h: Handle, size: number, block: number, qd: number, n: number): Promise<Counts> {
  return new Promise((resolve, reject) => {
    const counts: Counts = { ops: 0, bytes: 0 };
    let issued = 0;
    let offset = 0;
    let inFlight = 0;
    let failure: { error: unknown } | undefined;
    const chunk = (subbuf: Uint8Array) => {
      counts.bytes += subbuf.length;
      return 0;
    };
    const issue = (buf: Buffer, completion: (error: ErrorRef) => number) => {
      if (offset + block > size) offset = 0;
      try {
        h.aioPreadStructured(buf, offset, chunk, completion);
      } catch (e) {
        failure ??= { error: e };
        return;
      }
      issued++;
      inFlight++;
      offset += block;
    };
    const settle = () => {
      if (failure !== undefined) {
        if (inFlight === 0) reject(failure.error);
      } else if (counts.ops === n) resolve(counts);
    };
    for (let slot = 0; slot < qd && issued < n && failure === undefined; slot++) {
      const buf = newBuffer(block);
      const completion = (error: ErrorRef): number => {
        inFlight--;
        if (error.value !== 0) failure ??= { error: new Error(`read failed: errno ${error.value}`) };
        else counts.ops++;
        if (failure === undefined && issued < n) issue(buf, completion);
        settle();
        return 1; // auto-retire
      };
      issue(buf, completion);
    }
    settle();
  });
}

/** `qd` concurrent loops, each awaiting one `pread` at a time; all stop at the first failure. */
async function promiseLoop(h: Handle, size: number, block: number, qd: number, n: number): Promise<Counts> {
  const counts: Counts = { ops: 0, bytes: 0 };
  let issued = 0;
  let offset = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    const buf = newBuffer(block);
    while (issued < n && failure === undefined) {
      if (offset + block > size) offset = 0;
      const at = offset;
      issued++;
      offset += block;
      try {
        await h.pread(buf, at);
      } catch (e) {
        failure ??= { error: e };
        return;
      }
      counts.ops++;
      counts.bytes += block;
    }
  };
  await Promise.all(Array.from({ length: Math.min(qd, n) }, worker));
  if (failure !== undefined) throw failure.error;
  return counts;
}

const loops = { callback: callbackLoop, promise: promiseLoop };

async function withHandle<T>(uri: string, driver: Driver, use: (h: Handle, size: number) => Promise<T>): Promise<T> {
  const h = new Handle({ driver });
  try {
    await h.connectUri(uri);
    const result = await use(h, h.getSize());
    await h.shutdown();
    return result;
  } catch (e) {
    await h.shutdown().catch(() => undefined); // a clean disconnect where there can be one
    throw e;
  } finally {
    h.close();
  }
}

function summarize(h: IntervalHistogram): EventLoopDelay {
  const ms = (ns: number) => ns / 1e6;
  return { p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max), meanMs: ms(h.mean) };
}

async function run(job: Job): Promise<Omit<JsResult, 'maxRssKiB'>> {
  switch (job.mode) {
    case 'measure':
      if (job.buffers === 'plain') newBuffer = (size) => Buffer.alloc(size);
      return withHandle(job.uri, job.driver, async (h, size) => {
        const n = Math.floor(job.total / job.block);
        if (job.warmup !== undefined) await loops[job.form](h, size, job.block, job.qd, Math.floor(job.warmup / job.block));
        const eld = job.eld ? monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS }) : undefined;
        eld?.enable();
        const t0 = process.hrtime.bigint();
        const counts = await loops[job.form](h, size, job.block, job.qd, n);
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        eld?.disable();
        if (counts.ops !== n || counts.bytes !== n * job.block) {
          throw new Error(`read ${counts.ops} commands, ${counts.bytes} bytes; expected ${n}, ${n * job.block}`);
        }
        return {
          ...counts,
          seconds,
          eld: eld && summarize(eld),
        };
      });
    case 'rss':
      return withHandle(job.uri, job.driver, async (h, size) => {
        const gc = (globalThis as { gc?: () => void }).gc;
        const sample = (): MemorySample => {
          gc?.();
          const { rss, heapTotal, heapUsed, external } = process.memoryUsage();
          return { rss, heapTotal, heapUsed, external };
        };
        let seconds = 0;
        const loop = async (n: number) => {
          const t0 = process.hrtime.bigint();
          const counts = await loops[job.form](h, size, job.block, job.qd, n);
          seconds += Number(process.hrtime.bigint() - t0) / 1e9;
          return counts;
        };
        await loop(job.warmup);
        const afterWarmup = sample();
        seconds = 0; // ops/s of the measured commands, samples excluded
        const half = Math.floor(job.commands / 2);
        const first = await loop(half);
        const afterHalf = sample();
        const second = await loop(job.commands - half);
        const afterCommands = sample();
        return {
          ops: first.ops + second.ops,
          bytes: first.bytes + second.bytes,
          seconds,
          memory: { afterWarmup, afterHalf, afterCommands },
        };
      });
    case 'idle': {
      const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
      eld.enable();
      await new Promise((r) => setTimeout(r, job.ms));
      eld.disable();
      return { eld: summarize(eld) };
    }
  }
}

if (require.main === module) {
  run(JSON.parse(process.argv[2]) as Job).then(
    (result) => {
      const out: JsResult = { ...result, maxRssKiB: process.resourceUsage().maxRSS };
      process.stdout.write(JSON.stringify(out) + '\n');
    },
    (e: unknown) => {
      console.error('js_loop:', e);
      process.exitCode = 1;
    },
  );
}
