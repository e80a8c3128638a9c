// Pool: several connections to one export (only one without multi-conn),
// commands spread over them, lost connections replaced with their reads
// re-issued, across a restart of the server on the same socket.
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortError, Handle, NbdError, Pool, type CommandOptions } from '../../lib';
import { clip, collect, nbdinfoMap, pool } from '../helpers/io';
import { collectUnhandledRejections } from '../helpers/unhandled';
import { pattern, sparseFile, spawnServer, startNbdkit, tempDir } from '../helpers/servers';
import { waitFor } from '../helpers/wait';

const KiB = 1024;
const MiB = 1024 * KiB;

collectUnhandledRejections();



/** Counts the commands each handle of the pool is asked for. */
function spy(p: Pool, method: 'pread' | 'pwrite'): number[] {
  const counts = p.handles.map(() => 0);
  p.handles.forEach((h, i) => {
    const original = h[method].bind(h);
    h[method] = (buf: ArrayBufferView, offset: number | bigint, options?: number | CommandOptions) => {
      counts[i]++;
      return original(buf, offset, options);
    };
  });
  return counts;
}

/** nbdkit on a fixed Unix socket, which can be killed and started again on it. */
class RestartableNbdkit {
  readonly dir = tempDir();
  readonly socket = join(this.dir, 'nbd.sock');
  readonly uri = `nbd+unix:///?socket=${this.socket}`;
  proc: ChildProcess | undefined;
  constructor(readonly args: string[]) {}

  async start(): Promise<void> {
    const pidfile = join(this.dir, 'nbdkit.pid');
    rmSync(pidfile, { force: true });
    rmSync(this.socket, { force: true });
    const { proc } = spawnServer('nbdkit', ['-f', '--exit-with-parent', '-U', this.socket, '-P', pidfile, ...this.args]);
    this.proc = proc;
    await waitFor(() => existsSync(pidfile) && readFileSync(pidfile, 'utf8') !== '', 'nbdkit to listen');
  }

  async kill(): Promise<void> {
    const proc = this.proc!;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }
}

const running: RestartableNbdkit[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.kill()));
});

async function restartable(...args: string[]): Promise<RestartableNbdkit> {
  const s = new RestartableNbdkit(args);
  running.push(s);
  await s.start();
  return s;
}

/** A file of `size` bytes where byte i is (i * 13 + i / 4096) mod 256. */
function patternFile(size: number): { path: string; data: Buffer } {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 13 + Math.floor(i / 4096)) & 0xff;
  const path = join(tempDir(), 'disk.raw');
  writeFileSync(path, data);
  return { path, data };
}

test('opens the connections asked for when the server allows multi-conn, and spreads commands over them', async () => {
  const server = await startNbdkit('memory', 'size=8M');
  const p = await pool(server.uri, { connections: 3 });
  expect(p.connections).toBe(3);
  expect(p.canMultiConn()).toBe(true);
  expect(p.getSize()).toBe(8 * MiB);
  const writes = spy(p, 'pwrite');
  const reads = spy(p, 'pread');
  const block = 64 * KiB;
  await Promise.all(Array.from({ length: 24 }, (_, i) => p.pwrite(Buffer.alloc(block, i + 1), i * block)));
  const bufs = Array.from({ length: 24 }, () => Buffer.alloc(block));
  await Promise.all(bufs.map((b, i) => p.pread(b, i * block)));
  bufs.forEach((b, i) => expect(b.equals(Buffer.alloc(block, i + 1))).toBe(true));
  // Least in flight first, ties in turn: each connection got a third.
  expect(writes).toEqual([8, 8, 8]);
  expect(reads).toEqual([8, 8, 8]);
  await p.flush();
  await p.zero(block, 0);
  await p.trim(block, block);
  await p.cache(block, 2 * block);
});

test('without `connections`, opens 4 connections, or one per CPU if fewer, as nbdcopy', async () => {
  const server = await startNbdkit('memory', 'size=1M');
  const p = await pool(server.uri);
  expect(p.connections).toBe(Math.min(4, availableParallelism()));
});

test('one connection when the server does not advertise multi-conn', async () => {
  const server = await startNbdkit('--filter=multi-conn', 'memory', 'size=1M', 'multi-conn-mode=disable');
  const p = await pool(server.uri, { connections: 4 });
  expect(p.canMultiConn()).toBe(false);
  expect(p.connections).toBe(1);
  await p.pwrite(Buffer.alloc(512, 7), 512);
  const b = Buffer.alloc(512);
  await p.pread(b, 512);
  expect(b[0]).toBe(7);
});

test('extents() over a pool equals nbdinfo --map; block sizes and contexts as the server gave them', async () => {
  const file = sparseFile(16 * MiB, [
    [MiB, 2 * MiB],
    [9 * MiB, 64 * KiB],
  ]);
  const server = await startNbdkit('file', file);
  const p = await pool(server.uri, { connections: 2 });
  const map = nbdinfoMap(server.uri);
  expect(await collect(p.extents())).toEqual(map);
  expect(await collect(p.extents({ start: MiB + 5, end: 9 * MiB + 1 }))).toEqual(clip(map, MiB + 5, 9 * MiB + 1));
  expect(p.canMetaContext('base:allocation')).toBe(true);
  expect(p.canMetaContext('qemu:dirty-bitmap:x')).toBe(false);
  const h = p.handles[0];
  expect(p.getBlockSize(0)).toBe(h.getBlockSize(0));
  expect(p.getBlockSize(2)).toBe(h.getBlockSize(2));
  const bare = await pool(server.uri, { connections: 1, metaContexts: [] });
  await expect(collect(bare.extents())).rejects.toThrow(/not negotiated/);
});

test("a pool's read stream issues its reads without libnbd's zeroing and leaves each connection's setting as configured", async () => {
  const server = await startNbdkit('pattern', 'size=4M');
  const p = await pool(server.uri, { connections: 2 });
  // What each connection's pread_initialize was when the stream's reads were issued.
  const seen: boolean[][] = p.handles.map(() => []);
  p.handles.forEach((h, i) => {
    const original = h.pread.bind(h);
    h.pread = (buf: ArrayBufferView, offset: number | bigint, options?: number | CommandOptions) => {
      seen[i].push(h.getPreadInitialize());
      return original(buf, offset, options);
    };
  });
  const chunks: Buffer[] = [];
  await pipeline(
    p.createReadStream({ requestSize: 256 * KiB }),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
  );
  expect(Buffer.concat(chunks).equals(pattern(0, 4 * MiB))).toBe(true);
  expect(seen.flat()).toHaveLength(16);
  expect(seen.flat().every((v) => v === false)).toBe(true);
  expect(p.handles.map((h) => h.getPreadInitialize())).toEqual([true, true]);
});

test('createReadStream over a pool: the whole export in order, its reads spread over the connections', async () => {
  const server = await startNbdkit('pattern', 'size=8M');
  const p = await pool(server.uri, { connections: 2 });
  const reads = spy(p, 'pread');
  const chunks: Buffer[] = [];
  await pipeline(
    p.createReadStream({ requestSize: 256 * KiB, queueDepth: 8 }),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
  );
  expect(Buffer.concat(chunks).equals(pattern(0, 8 * MiB))).toBe(true);
  expect(reads[0]).toBeGreaterThan(0);
  expect(reads[1]).toBeGreaterThan(0);
  expect(reads[0] + reads[1]).toBe(32);
});

test('createWriteStream over a pool (flush: true): its writes spread over the connections, read back whole', async () => {
  const server = await startNbdkit('memory', 'size=8M');
  const p = await pool(server.uri, { connections: 2 });
  const writes = spy(p, 'pwrite');
  const data = Buffer.alloc(4 * MiB);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
  const source = async function* () {
    for (let off = 0; off < data.length; off += 64 * KiB) yield data.subarray(off, off + 64 * KiB);
  };
  await pipeline(source, p.createWriteStream({ start: MiB, highWaterMark: 256 * KiB, queueDepth: 4, flush: true }));
  expect(writes[0]).toBeGreaterThan(0);
  expect(writes[1]).toBeGreaterThan(0);
  const back = Buffer.alloc(data.length);
  await p.pread(back, MiB);
  expect(back.equals(data)).toBe(true);
});

test('Promise forms take { flags, signal } as the Handle does: an abort rejects with AbortError', async () => {
  const server = await startNbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=200ms');
  const p = await pool(server.uri, { connections: 2 });
  const ac = new AbortController();
  const read = p.pread(Buffer.alloc(512), 0, { signal: ac.signal });
  ac.abort();
  await expect(read).rejects.toBeInstanceOf(AbortError);
  await p.pread(Buffer.alloc(512), 0, { flags: 0 });
  await expect(p.pwrite(Buffer.alloc(512), 0, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
});

describe('a server restarted on the same socket', () => {
  const size = 4 * MiB;
  let file: { path: string; data: Buffer };
  beforeAll(() => {
    file = patternFile(size);
  });

  test('reads issued during the outage complete after it, with the right data', async () => {
    const server = await restartable('file', file.path);
    const p = await pool(server.uri, { connections: 2, reconnect: { delay: 20, maxDelay: 100, retries: 100 } });
    expect(p.connections).toBe(2);
    const reconnected: number[] = [];
    p.on('reconnect', (i: number) => reconnected.push(i));
    const first = Buffer.alloc(64 * KiB);
    await p.pread(first, 0);
    expect(first.equals(file.data.subarray(0, 64 * KiB))).toBe(true);

    await server.kill();
    // Both connections notice while idle ('disconnect' with an NbdError).
    await waitFor(() => p.handles.every((h) => h.closed), 'the pool to drop its dead connections');
    const bufs = Array.from({ length: 16 }, () => Buffer.alloc(64 * KiB));
    const reads = bufs.map((b, i) => p.pread(b, i * 128 * KiB));
    let settled = 0;
    for (const r of reads) r.then(() => settled++, () => settled++);
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(0);

    await server.start();
    await Promise.all(reads);
    bufs.forEach((b, i) => expect(b.equals(file.data.subarray(i * 128 * KiB, i * 128 * KiB + 64 * KiB))).toBe(true));
    // The reads needed one connection back; the other one follows.
    await waitFor(() => reconnected.length === 2, 'both connections to be replaced');
    expect(reconnected.sort()).toEqual([0, 1]);
    expect(p.handles.every((h) => !h.closed && h.aioIsReady())).toBe(true);
  });

  test('reads in flight when the server dies are issued again; writes in flight fail with their error', async () => {
    const server = await restartable('--filter=delay', 'file', file.path, 'delay-read=1', 'delay-write=1');
    const p = await pool(server.uri, { connections: 2, reconnect: { delay: 20, maxDelay: 100, retries: 100 } });
    const bufs = Array.from({ length: 8 }, () => Buffer.alloc(32 * KiB));
    const reads = bufs.map((b, i) => p.pread(b, MiB + i * 32 * KiB));
    const write = p.pwrite(Buffer.alloc(4 * KiB, 0xee), 3 * MiB);
    const writeOutcome = write.then(
      () => 'written',
      (e: unknown) => e,
    );
    await waitFor(() => p.handles.every((h) => h.aioInFlight() > 0), 'commands in flight on both connections');
    await server.kill();
    const failed = await writeOutcome;
    expect(failed).toBeInstanceOf(NbdError);
    await server.start();
    await Promise.all(reads);
    bufs.forEach((b, i) => expect(b.equals(file.data.subarray(MiB + i * 32 * KiB, MiB + (i + 1) * 32 * KiB))).toBe(true));
    // The pool writes again once reconnected.
    await p.pwrite(Buffer.alloc(512, 1), 0);
  });

  test('a connection given up after its retries fails the reads waiting for it', async () => {
    const server = await restartable('file', file.path);
    const p = await pool(server.uri, { connections: 1, reconnect: { delay: 10, maxDelay: 20, retries: 3 } });
    const failures: unknown[] = [];
    p.on('connectionFailed', (_i: number, e: unknown) => failures.push(e));
    await server.kill();
    const e = await p.pread(Buffer.alloc(512), 0).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdError);
    expect(failures).toHaveLength(1);
    await expect(p.pread(Buffer.alloc(512), 0)).rejects.toBeInstanceOf(NbdError);
  });

  test('close() during an outage stops reconnecting and fails the waiting reads', async () => {
    const server = await restartable('file', file.path);
    const p = await pool(server.uri, { connections: 2, reconnect: { delay: 20, maxDelay: 50, retries: 1000 } });
    await server.kill();
    await waitFor(() => p.handles.every((h) => h.closed), 'the pool to drop its dead connections');
    const read = p.pread(Buffer.alloc(512), 0);
    await p.close();
    await expect(read).rejects.toThrow(/the pool is closed/);
    await expect(p.pread(Buffer.alloc(512), 0)).rejects.toThrow(/the pool is closed/);
    await p.close();
  });
});

test('a genuine server error on a live connection is not retried', async () => {
  const server = await startNbdkit('--filter=error', 'memory', 'size=1M', 'error-pread-rate=1', 'error=EIO');
  const p = await pool(server.uri, { connections: 2 });
  const calls = spy(p, 'pread');
  await expect(p.pread(Buffer.alloc(512), 0)).rejects.toMatchObject({ code: 'EIO' });
  expect(calls[0] + calls[1]).toBe(1);
  expect(p.handles.every((h) => h instanceof Handle && h.aioIsReady())).toBe(true);
});

test('bad options throw before connecting; a failed connect rejects', async () => {
  const uri = 'nbd+unix:///?socket=/nonexistent';
  expect(() => Pool.connect(uri, { connections: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  expect(() => Pool.connect(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  expect(() => Pool.connect(uri, { metaContexts: [1 as unknown as string] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  expect(() => Pool.connect(uri, { reconnect: { delay: -1 } })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  expect(() => Pool.connect(uri, { configure: 'x' as unknown as () => void })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  await expect(Pool.connect(uri)).rejects.toBeInstanceOf(NbdError);
});
