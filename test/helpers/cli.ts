// Runs the nbdjs command (dist/bin/nbdjs.js, built by `npm test`'s pretest)
// and the reference tools (nbdinfo, nbdcopy) as child processes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const NBDJS = join(__dirname, '..', '..', 'dist', 'bin', 'nbdjs.js');

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `file args`, resolving with its exit status and output (never rejects on a non-zero status). */
export function run(file: string, args: string[], options: { input?: Buffer; timeout?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { maxBuffer: 256 * 1024 * 1024, timeout: options.timeout ?? 60000, encoding: 'buffer' }, (error, stdout, stderr) => {
      const e = error as (Error & { code?: unknown; signal?: NodeJS.Signals }) | null;
      if (e !== null && typeof e.code !== 'number' && e.signal == null) {
        reject(e);
        return;
      }
      resolve({ code: child.exitCode, signal: child.signalCode, stdout: stdout.toString('latin1'), stderr: stderr.toString() });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    else child.stdin!.end();
  });
}

/** `node dist/bin/nbdjs.js ARGS`. */
export function nbdjs(args: string[], options?: { input?: Buffer; timeout?: number }): Promise<Run> {
  return run(process.execPath, [NBDJS, ...args], options);
}

/** Starts nbdjs without waiting (for signals); stderr and stdout collected. */
export function startNbdjs(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [NBDJS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}
