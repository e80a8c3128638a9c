// Real NBD servers for the tests: nbdkit and qemu-nbd, started here, over
// Unix sockets in a temporary directory or as connectCommand subprocesses.
// Their stderr is kept and shown only for a failing test (helpers/output).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, openSync, closeSync, ftruncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, createServer, type Socket } from 'node:net';
import { Handle, type HandleOptions } from '../../lib';
import { keepServerOutput, withKeptStderr } from './output';

const cleanups: (() => void)[] = [];
afterAll(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A temporary directory removed after the test file. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'libnbd-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** argv for connectCommand: `nbdkit -s --exit-with-parent ARGS` (its stderr kept, through sh). */
export function nbdkit(...args: string[]): string[] {
  return withKeptStderr(['nbdkit', '-s', '--exit-with-parent', ...args]);
}

export interface Server {
  socket: string;
  uri: string;
  process: ChildProcess;
  stop(): void;
}

/**
 * Spawns a server (stdin ignored; stdout ignored unless `stdout: 'pipe'`),
 * its stderr kept, stopped with `stopSignal` (SIGTERM) by `stop()` or after
 * the test file.
 */
export function spawnServer(
  cmd: string,
  args: string[],
  options: { stdout?: 'pipe' | 'ignore'; stopSignal?: NodeJS.Signals } = {},
): { proc: ChildProcess; stop: () => void } {
  const proc = spawn(cmd, args, { stdio: ['ignore', options.stdout ?? 'ignore', 'pipe'] });
  let stopping = false;
  keepServerOutput(`${cmd} ${args.join(' ')} (pid ${proc.pid})`, proc, () => stopping);
  const stop = () => {
    stopping = true;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(options.stopSignal ?? 'SIGTERM');
  };
  cleanups.push(stop);
  return { proc, stop };
}

/** `nbdkit -U SOCKET ARGS` in the foreground, stopped after the test file. */
export async function startNbdkit(...args: string[]): Promise<Server> {
  const dir = tempDir();
  const socket = join(dir, 'nbd.sock');
  // nbdkit writes its pidfile once it accepts connections (the socket file
  // alone exists from bind(), before listen()).
  const pidfile = join(dir, 'nbdkit.pid');
  const { proc, stop } = spawnServer('nbdkit', ['-f', '--exit-with-parent', '-U', socket, '-P', pidfile, ...args]);
  await untilReady(proc, `nbdkit ${args.join(' ')}`, () => existsSync(pidfile));
  return { socket, uri: `nbd+unix:///?socket=${socket}`, process: proc, stop };
}

/** `qemu-nbd` serving FILE (raw) on a Unix socket. */
export async function startQemuNbd(file: string, ...args: string[]): Promise<Server> {
  const socket = join(tempDir(), 'qemu.sock');
  const { proc, stop } = spawnServer('qemu-nbd', ['-f', 'raw', '-k', socket, '--persistent', ...args, file]);
  await untilReady(proc, `qemu-nbd ${file}`, () => canConnect({ path: socket }));
  return { socket, uri: `nbd+unix:///?socket=${socket}`, process: proc, stop };
}

/**
 * A sparse raw file of `size` bytes with `fill` written at each given
 * [offset, length] extent; the rest are holes.
 */
export function sparseFile(size: number, extents: [number, number][], fill = 0xab): string {
  const path = join(tempDir(), 'sparse.raw');
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  for (const [offset, length] of extents) writeSync(fd, Buffer.alloc(length, fill), 0, length, offset);
  closeSync(fd);
  return path;
}

/** A file with the given contents in a temp dir. */
export function tempFile(name: string, contents: string | Buffer): string {
  const path = join(tempDir(), name);
  writeFileSync(path, contents);
  return path;
}

/** A handle connected to `argv` through connectCommand, closed after the test file. */
export async function connected<B extends boolean = false>(argv: string[], options?: HandleOptions<B>): Promise<Handle<B>> {
  const h = new Handle<B>(options);
  cleanups.push(() => h.close());
  await h.connectCommand(argv);
  return h;
}

/** A new handle closed after the test file. */
export function handle<B extends boolean = false>(options?: HandleOptions<B>): Handle<B> {
  const h = new Handle<B>(options);
  cleanups.push(() => h.close());
  return h;
}

/** nbdkit's pattern plugin: the big-endian uint64 at each 8-byte step is its own offset. */
export function pattern(offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i += 8) b.writeBigUInt64BE(BigInt(offset + i), i);
  return b;
}

/** `nbdkit -p PORT -i 127.0.0.1 ARGS`, TCP on loopback only. */
export async function startNbdkitTcp(port: string, ...args: string[]): Promise<ChildProcess> {
  const { proc } = spawnServer('nbdkit', ['-f', '--exit-with-parent', '-p', port, '-i', '127.0.0.1', ...args]);
  await untilReady(proc, `nbdkit on port ${port}`, () => canConnect({ host: '127.0.0.1', port: Number(port) }));
  return proc;
}

/** Whether a connection to the server succeeds (a probe, closed at once). */
function canConnect(to: { path: string } | { host: string; port: number }): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = createConnection(to);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Waits until `ready()` holds, failing if the server exits first. */
async function untilReady(proc: ChildProcess, what: string, ready: () => boolean | Promise<boolean>): Promise<void> {
  const until = Date.now() + 10000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    if (await ready()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A Unix socket server that accepts connections and never says a word (stopped after the test file). */
export async function silentServer(): Promise<{ socket: string; uri: string; accepted: () => number }> {
  const socket = join(tempDir(), 'silent.sock');
  let accepted = 0;
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    accepted++;
    sockets.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { socket, uri: `nbd+unix:///?socket=${socket}`, accepted: () => accepted };
}
