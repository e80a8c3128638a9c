// Servers' stderr, kept in memory instead of on the terminal. The servers
// the tests start are meant to complain now and then (a client cut off
// mid-reply, injected errors, refused requests); what they said is handed
// to console.error at the end of each test, which test/helpers/environment.js
// shows only if that test failed. A server that exits on its own with an
// error status is reported at once, whatever the test's outcome.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

/** At most this much of each stream is kept between two tests (the end of it). */
const KEEP = 64 * 1024;

const kept = new Map<string, string>();

function append(name: string, text: string): void {
  const all = (kept.get(name) ?? '') + text;
  kept.set(name, all.length > KEEP ? `[...]${all.slice(-KEEP)}` : all);
}

/** Keeps what `stream` (a server's stderr) says under `name`. */
export function keepOutput(name: string, stream: Readable): void {
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => append(name, text));
}

/**
 * Keeps a spawned server's stderr (spawn it with stdio[2] 'pipe') and
 * reports it at once if the server exits with an error status while not
 * being stopped (`stopping()` true).
 */
export function keepServerOutput(name: string, proc: ChildProcess, stopping: () => boolean = () => false): void {
  keepOutput(name, proc.stderr!);
  proc.once('exit', (code) => {
    if (code === null || code === 0 || stopping()) return;
    // After the last of its stderr: 'close' follows 'exit' once the pipes are drained.
    proc.once('close', () => {
      process.stderr.write(`${name} exited with status ${code} on its own; its stderr:\n${kept.get(name) ?? ''}\n`);
    });
  });
}

// Servers that libnbd starts (connectCommand) inherit fd 2 from this
// process, not a pipe: connectCommandArgv has them append it to one file.
let logDir: string | undefined;
let logRead = 0;
function logFile(): string {
  logDir ??= mkdtempSync(join(tmpdir(), 'libnbd-test-log-'));
  return join(logDir, 'stderr.log');
}

/** `argv` run so that its stderr goes to this file's kept output (through sh, which execs it: same pid). */
export function withKeptStderr(argv: string[]): string[] {
  return ['sh', '-c', 'log=$1; shift; exec "$@" 2>>"$log"', 'sh', logFile(), ...argv];
}

function readLog(): void {
  if (logDir === undefined) return;
  const path = logFile();
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return;
  }
  if (size <= logRead) return;
  const buf = Buffer.alloc(size - logRead);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, buf.length, logRead);
  } finally {
    closeSync(fd);
  }
  logRead = size;
  append('servers started by connectCommand', buf.toString('utf8'));
}

function handOver(): void {
  readLog();
  for (const [name, text] of kept) {
    if (text !== '') console.error(`${name}, stderr:\n${text}`);
  }
  kept.clear();
}

afterEach(handOver);
afterAll(() => {
  handOver();
  if (logDir !== undefined) rmSync(logDir, { recursive: true, force: true });
});
