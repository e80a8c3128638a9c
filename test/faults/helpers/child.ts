// Child processes for what could crash the test runner: the fixtures in
// test/faults/fixtures run the compiled facade (dist/, built by `tsc` in
// `npm test`'s pretest) and report JSON lines on stdout.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES = join(__dirname, '..', 'fixtures');
const DIST = join(__dirname, '..', '..', '..', 'dist', 'lib', 'index.js');

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
  /** The JSON lines of stdout. */
  lines: any[];
  /** The last "@..." breadcrumb line of stdout (the call being made), if any. */
  breadcrumb: string | undefined;
}

/** Signs of a crash of Node or of the addon. */
export const CRASH = /FATAL ERROR|Segmentation fault|Aborted|core dumped|Assertion failed|unexpected C\+\+ exception|FIXTURE FAILURE|node::|double free|corrupted/;

/** `node --no-warnings FIXTURE ARGS` with a hard timeout (SIGKILL). */
export function runFixture(fixture: string, args: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ChildResult> {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`npx tsc -p tsconfig.json\` (npm test does)`);
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--no-warnings', join(FIXTURES, fixture), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const all = stdout.split('\n');
      const lines = all.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      const breadcrumb = all.filter((l) => l.startsWith('@')).pop();
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut, lines, breadcrumb });
    });
  });
}

/** A one-line account of how a child ended, for failure messages. */
export function howItEnded(r: ChildResult): string {
  const crash = CRASH.exec(r.stderr);
  return [
    r.timedOut ? `killed after ${r.ms} ms` : `exit ${r.code ?? r.signal}`,
    crash ? `stderr: ${r.stderr.slice(Math.max(0, crash.index - 100), crash.index + 200).replace(/\s+/g, ' ')}` : '',
    r.breadcrumb && (r.code !== 0 || r.timedOut) ? `last call ${r.breadcrumb.slice(1, 300)}` : '',
  ]
    .filter(Boolean)
    .join('; ');
}
