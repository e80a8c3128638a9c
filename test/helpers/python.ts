// libnbd's Python binding (Debian's python3-libnbd) as the reference: a test
// runs the same scenario through it and through this binding and compares.
// Python's callbacks run inside libnbd, so what it reports is what a C
// program observes.
import { execFile } from 'node:child_process';

/** The system python3, the one python3-libnbd installs `nbd` for. */
export const systemPython = '/usr/bin/python3';

export interface PythonOptions {
  /** sys.argv[1:] of the script. */
  args?: string[];
  /** Written to the script's stdin as JSON. */
  input?: unknown;
  timeoutMs?: number;
}

/**
 * Runs `script` with the system python3 and resolves with the JSON of the
 * last line it prints. Asynchronous on purpose: the scripted servers run in
 * this process, and a blocking spawnSync would deadlock against them. Fails
 * with the script's stderr, and says so when `nbd` cannot be imported.
 */
export function runPython<T>(script: string, options: PythonOptions = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      systemPython,
      ['-c', script, ...(options.args ?? [])],
      { encoding: 'utf8', timeout: options.timeoutMs ?? 60000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          const hint = /No module named '?nbd'?/.test(stderr)
            ? " (install Debian's python3-libnbd: libnbd's Python binding is the reference of these tests)"
            : '';
          reject(new Error(`${systemPython} failed${hint}: ${error.message}\n${stderr}`));
          return;
        }
        const lines = stdout.trim().split('\n');
        try {
          resolve(JSON.parse(lines[lines.length - 1]) as T);
        } catch (e) {
          reject(new Error(`${systemPython} printed no JSON last line: ${String(e)}\n${stdout}\n${stderr}`));
        }
      },
    );
    child.stdin!.end(options.input === undefined ? '' : JSON.stringify(options.input));
  });
}
