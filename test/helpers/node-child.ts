// Node child processes for what could crash or hang the test runner (the
// fixtures of test/fixtures and test/faults/fixtures, which load the
// compiled facade in dist/, built by `tsc` in `npm test`'s pretest and
// report JSON lines on stdout).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const DIST = join(__dirname, '..', '..', 'dist', 'lib', 'index.js');

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
  /** The JSON lines of stdout (those that start with "{"). */
  lines: any[];
  /** The last "@..." breadcrumb line of stdout (the call being made), if any. */
  breadcrumb: string | undefined;
}

/**
 * `node ARGS` with its output kept in memory and a hard timeout (SIGKILL),
 * so that a hung child fails its test rather than jest's. The environment is
 * this process's, with `env` added.
 */
export function runNode(args: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ChildResult> {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`npx tsc -p tsconfig.json\` (npm test does)`);
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
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
