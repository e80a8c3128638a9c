// Shared by the fault suite: a seeded PRNG, bounded waits, a ledger that
// counts how often each command settles, the NbdError rule, stray-error
// collectors, and fd / child-process counts from /proc.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { runInThisContext } from 'node:vm';
import { NbdError, type Handle } from '../../../lib';

import { settled } from '../../helpers/outcome';
import { waitFor, within } from '../../helpers/wait';

/** mulberry32: a small seeded PRNG, so that a failing run replays from its seed. */
export class Rng {
  #state: number;

  constructor(readonly seed: number) {
    this.#state = seed >>> 0;
  }

  /** The stream of one round of a seeded test: replays without the rounds before it. */
  static forRound(seed: number, round: number, stream = 0): Rng {
    return new Rng((seed ^ Math.imul(round + 1, 0x9e3779b1) ^ Math.imul(stream, 0x85ebca6b)) >>> 0);
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
}

/** Whether `pred` came to hold within `ms` (waitFor's poll, a timeout being an answer rather than an error). */
export function until(pred: () => boolean, ms: number): Promise<boolean> {
  return waitFor(pred, 'until', ms).then(
    () => true,
    () => false,
  );
}

function show(e: unknown): string {
  try {
    if (e instanceof Error) return `${e.name}: ${e.message}`;
    return typeof e === 'symbol' ? e.toString() : String(e);
  } catch {
    return '<unprintable>';
  }
}

/**
 * Why `e` is not an acceptable libnbd error (undefined if it is): an NbdError
 * of this realm with libnbd's errno (a non-negative integer: libnbd reports
 * some failures, such as a bad handshake, with errno 0, as Python's binding
 * shows) and a symbolic code (never 'E0').
 */
export function nbdErrorProblem(e: unknown): string | undefined {
  if (!(e instanceof NbdError)) return `not an NbdError: ${show(e)}`;
  if (!Number.isInteger(e.errno) || e.errno < 0) return `NbdError with errno ${e.errno}: ${e.message}`;
  if (typeof e.code !== 'string' || e.code === 'E0' || e.code === '') return `NbdError with code ${String(e.code)}: ${e.message}`;
  return undefined;
}

interface Entry {
  label: string;
  settles: number;
  error: unknown;
  /** Chunk callbacks after the completion: a command must be over once completed. */
  lateChunks: number;
  /** Its issue threw synchronously. */
  threw: boolean;
}

/**
 * Counts the settlements of each issued command: completion-callback calls
 * for the aio forms, fulfilment or rejection for the Promise forms.
 */
export class Ledger {
  readonly entries: Entry[] = [];

  #add(label: string): Entry {
    const e: Entry = { label, settles: 0, error: undefined, lateChunks: 0, threw: false };
    this.entries.push(e);
    return e;
  }

  /** A completion callback (returning `ret`) and a chunk callback for one aio command. */
  aio(label: string, ret: number = 0): { completion: (err: { value: number }) => number; chunk: () => number } {
    const e = this.#add(label);
    return {
      completion: (err) => {
        e.settles++;
        if (err.value !== 0) e.error = err.value;
        return ret;
      },
      chunk: () => {
        if (e.settles > 0) e.lateChunks++;
        return 0;
      },
    };
  }

  /** Records a Promise form; a chunk callback for the structured ones. */
  promise(label: string, start: (chunk: () => number) => Promise<unknown>): void {
    const e = this.#add(label);
    const chunk = () => {
      if (e.settles > 0) e.lateChunks++;
      return 0;
    };
    let p: Promise<unknown>;
    try {
      p = start(chunk);
    } catch (err) {
      return this.threw(err);
    }
    p.then(
      () => void e.settles++,
      (err) => {
        e.settles++;
        e.error = err;
      },
    );
  }

  /** The command just recorded threw when issued: nothing may settle it later. */
  threw(err: unknown): void {
    const e = this.entries[this.entries.length - 1];
    e.threw = true;
    e.error = err;
  }

  get pending(): number {
    return this.entries.filter((e) => e.settles === 0 && !e.threw).length;
  }

  /** Waits up to `ms` for every command to settle; whether they all did. */
  settledWithin(ms: number): Promise<boolean> {
    return until(() => this.pending === 0, ms);
  }

  /** Everything wrong with the record, one line per command. */
  problems(opts: { settled: boolean }): string[] {
    const out: string[] = [];
    this.entries.forEach((e, i) => {
      const threw = e.threw;
      if (threw) out.push(`#${i} ${e.label} threw when issued: ${show(e.error)}`);
      if (threw ? e.settles !== 0 : e.settles > 1) out.push(`#${i} ${e.label} settled ${e.settles} times`);
      if (!threw && opts.settled && e.settles === 0) out.push(`#${i} ${e.label} never settled`);
      if (e.lateChunks > 0) out.push(`#${i} ${e.label}: ${e.lateChunks} chunk callbacks after its completion`);
      if (!threw && e.error !== undefined && typeof e.error !== 'number') {
        const p = nbdErrorProblem(e.error);
        if (p !== undefined) out.push(`#${i} ${e.label}: ${p}`);
      }
      if (typeof e.error === 'number' && !(Number.isInteger(e.error) && e.error > 0)) out.push(`#${i} ${e.label}: error.value ${e.error}`);
    });
    return out;
  }

  failed(): number {
    return this.entries.filter((e) => e.error !== undefined).length;
  }
}

/**
 * The real process: jest gives each test file a copy of `process` whose
 * listeners never hear the process's events, and swaps the real process's
 * 'uncaughtException'/'unhandledRejection' listeners when a file's tests
 * start, so the collectors go on the real one, from beforeAll.
 */
const realProcess = runInThisContext('process') as NodeJS.Process;

/**
 * Collects unhandled rejections and uncaught exceptions during the file's
 * tests (jest fails the test that happens to run too; this one also sees
 * those that land between tests). Call at the top level of a test file.
 */
export function collectStrayErrors(): string[] {
  const seen: string[] = [];
  const onRejection = (reason: unknown) => void seen.push(`unhandled rejection: ${show(reason)}`);
  const onException = (error: unknown) => void seen.push(`uncaught exception: ${show(error)}`);
  beforeAll(() => {
    realProcess.on('unhandledRejection', onRejection);
    realProcess.on('uncaughtException', onException);
  });
  afterAll(() => {
    realProcess.off('unhandledRejection', onRejection);
    realProcess.off('uncaughtException', onException);
  });
  return seen;
}

/** Open file descriptors of this process. */
export function openFds(): string[] {
  return readdirSync('/proc/self/fd');
}

/** What each open fd is (for failure messages): "7 -> anon_inode:[eventfd]". */
export function describeFds(): string[] {
  return openFds().map((fd) => {
    try {
      return `${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return `${fd} -> (gone)`;
    }
  });
}

/** Child processes of this process, of every thread (the thread driver forks from its I/O thread). */
export function childPids(pid: number = process.pid): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    } catch {
      // the thread exited meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

/** "1234 nbdkit" for a pid (for failure messages). */
export function describePid(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return `${pid} ${stat.slice(stat.indexOf('('), stat.lastIndexOf(')') + 1)} state ${stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)}`;
  } catch {
    return `${pid} (gone)`;
  }
}

/**
 * Shuts down and closes a handle whose connection died: neither may hang
 * (shutdown() settles within 2 s, with nothing but an NbdError; close()
 * returns within 1 s). The problems found, none if all went well.
 */
export async function closeDeadConnection(h: Handle): Promise<string[]> {
  const problems: string[] = [];
  const down = await within(settled(h.shutdown()), 2000);
  if (down === 'pending') problems.push('shutdown() did not settle within 2 s');
  else if (down.error !== undefined && nbdErrorProblem(down.error)) problems.push(`shutdown(): ${nbdErrorProblem(down.error)}`);
  const t = Date.now();
  h.close();
  if (Date.now() - t > 1000) problems.push(`close() took ${Date.now() - t} ms`);
  return problems;
}
