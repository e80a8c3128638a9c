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
export function run(file: string, args: string[], options: { input?: Buffer; timeout?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { maxBuffer: 256 * 1024 * 1024, timeout: options.timeout ?? 60000, encoding: 'buffer', env: options.env }, (error, stdout, stderr) => {
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
export function nbdjs(args: string[], options?: { input?: Buffer; timeout?: number; env?: NodeJS.ProcessEnv }): Promise<Run> {
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

/** `nbdinfo ARGS` and `nbdjs info ARGS`, one after the other (servers that take one client at a time see one at a time). */
export async function nbdinfoAndNbdjs(args: string[], options?: { input?: Buffer; timeout?: number; env?: NodeJS.ProcessEnv }): Promise<{ theirs: Run; ours: Run }> {
  const theirs = await run('nbdinfo', args, options);
  const ours = await nbdjs(['info', ...args], options);
  return { theirs, ours };
}

/**
 * The lines nbdinfo itself wrote on stderr (not a server's), as nbdjs words
 * them: "nbdinfo: " becomes "nbdjs: info: "; from nbdjs's, the errno's name
 * it adds at the end of a line (" (ENOENT)") is dropped.
 */
export function toolLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('nbdinfo: ') || l.startsWith('nbdjs: info: '))
    .map((l) => l.replace(/^nbdinfo: /, 'nbdjs: info: ').replace(/ \((E[A-Z0-9]+|UNKNOWN)\)$/, ''));
}

/**
 * Runs nbdinfo and `nbdjs info` with `args` and expects the same stdout
 * (byte for byte), exit status and signal, nbdinfo's being `code` (when
 * given: where versions differ, it is left to nbdinfo); unless `stderr:
 * 'any'`, also the same lines of nbdinfo's own on stderr.
 */
export async function expectAsNbdinfo(
  args: string[],
  expected: { code?: number; stderr?: 'same' | 'any'; timeout?: number; env?: NodeJS.ProcessEnv },
): Promise<{ theirs: Run; ours: Run }> {
  const both = await nbdinfoAndNbdjs(args, { timeout: expected.timeout, env: expected.env });
  const { theirs, ours } = both;
  expect({ code: expected.code === undefined ? theirs.code : expected.code, signal: null }).toEqual({ code: theirs.code, signal: theirs.signal });
  expect({ stdout: ours.stdout, code: ours.code, signal: ours.signal }).toEqual({ stdout: theirs.stdout, code: theirs.code, signal: theirs.signal });
  if ((expected.stderr ?? 'same') === 'same') expect(toolLines(ours.stderr)).toEqual(toolLines(theirs.stderr));
  return both;
}
