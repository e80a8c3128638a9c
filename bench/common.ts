// What bench/run.ts and bench/io.ts share: child processes, servers, figures and tables.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** Everything to stop on exit: servers and the running child. */
export const live = new Set<ChildProcess>();

export class SetupError extends Error {}

/** A child that failed: `message` is short, `detail` has its command line and stderr. */
export class ChildError extends Error {
  constructor(
    message: string,
    readonly detail: string,
  ) {
    super(message);
  }
}

/** Runs a command to its end; resolves with its stdout, rejects with its stderr. */
export function runChild(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      if (code === 0) resolvePromise(out);
      else {
        const how = timedOut ? `hung: killed after ${timeoutMs / 1000} s` : signal !== null ? `killed by ${signal}` : `exit status ${code}`;
        reject(new ChildError(`${how}: ${err.trim().split('\n')[0] || '(no stderr)'}`, `${cmd} ${args.join(' ')}\n${err.trim()}`));
      }
    });
  });
}

/** No child takes this long: W1 at 500 MiB/s, or the RSS check at 20k ops/s, takes under a minute. */
export const CHILD_TIMEOUT_MS = 120_000;

/** Runs a child to its end; resolves with the last line of its stdout, as JSON. */
export async function runJson<T>(cmd: string, args: string[], timeoutMs = CHILD_TIMEOUT_MS): Promise<T> {
  const out = await runChild(cmd, args, timeoutMs);
  const line = out.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new ChildError('no JSON result line', `${cmd} ${args.join(' ')}\nprinted: ${out.trim() || '(nothing)'}`);
  }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

export interface Server {
  uri: string;
  /** Why the server is gone, or undefined while it runs. */
  exited(): string | undefined;
  /** Binds the server, every thread it has and makes later, to one CPU. */
  pin(cpu: number): void;
  /** Lets the server use every CPU again. */
  unpin(): void;
}

/** `nbdkit ARGS` (default `memory size=1G`) on a Unix socket `NAME.sock` in `dir`, ready for connections. */
export async function startServer(dir: string, name = 'nbd', args = ['memory', 'size=1G']): Promise<Server> {
  const socket = join(dir, `${name}.sock`);
  const pidFile = join(dir, `${name}.pid`);
  const argv = ['-f', '--exit-with-parent', '-U', socket, '-P', pidFile, ...args];
  const server = spawn('nbdkit', argv, {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  live.add(server);
  let exited: string | undefined;
  server.on('exit', (code, signal) => {
    live.delete(server);
    exited = `nbdkit exited (${signal ?? `status ${code}`})`;
  });
  server.on('error', (e) => (exited = `nbdkit: ${e.message}`));
  // nbdkit writes its pid file once the socket is listening.
  for (const deadline = Date.now() + 15_000; !existsSync(pidFile) || readFileSync(pidFile, 'utf8') === ''; ) {
    if (exited !== undefined) throw new SetupError(exited);
    if (Date.now() > deadline) throw new SetupError('nbdkit did not start within 15 s');
    await sleep(20);
  }
  const pid = Number(readFileSync(pidFile, 'utf8'));
  return {
    uri: `nbd+unix:///?socket=${socket}`,
    exited: () => exited,
    pin: (to: number) => setAffinity(pid, String(to)),
    unpin: () => setAffinity(pid, `0-${cpus().length - 1}`),
  };
}

/** Sets the CPUs of `pid`'s threads; -a: every thread it has, and those make the later ones. */
function setAffinity(pid: number, list: string): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' });
  if (r.status !== 0) throw new SetupError(`taskset could not set nbdkit's CPUs to ${list} (pid ${pid})`);
}

/** `cmd args` bound to one CPU: taskset execs it, so the pid and parent stay. */
export function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return ['taskset', ['-c', String(cpu), cmd, ...args]];
}

/**
 * Whether W1-W3 can be measured a second time with the server bound to CPU 0
 * and each client to CPU 1: unpinned, as users run, the scheduler decides
 * run by run whether a client shares the server's CPU, which moves a figure
 * by ±20%; pinned, the figures hold still and show the code's own cost.
 */
export function canPin(): boolean {
  return cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' }).status === 0;
}

/** The median; NaN for no values. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Table {
  title: string;
  headers: string[];
  /** 'l' or 'r' per column. */
  align: string;
  rows: string[][];
  notes?: string[];
}

export function renderText(t: Table): string {
  const widths = t.headers.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (t.align[i] === 'r' ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [t.title, line(t.headers), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(line), ...(t.notes ?? [])].join('\n');
}

export function renderMarkdown(t: Table): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const rule = line([...t.align].map((a) => (a === 'r' ? '---:' : '---')));
  return [`**${t.title}**`, '', line(t.headers), rule, ...t.rows.map(line), ...(t.notes ?? []).map((n) => `\n${n}`)].join('\n');
}

export const fmt = (x: number, digits = 0) => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
export const fmtBytes = (n: number) => (n % MiB === 0 ? `${n / MiB} MiB` : n % KiB === 0 ? `${n / KiB} KiB` : `${n} B`);
export const fmtTotal = (n: number) => (n % (1024 * MiB) === 0 ? `${n / (1024 * MiB)} GiB` : n % MiB === 0 ? `${n / MiB} MiB` : `${fmt(n / 1e6)} MB`);

