// libnbd's parallel-load tests ported to this binding, each handle standing
// for one of the C tests' threads: tests/aio-parallel.c (8 connections, 64
// commands in flight on each, retired by C's aio_command_completed loop,
// every read checked against a model of the disk), aio-parallel-load.c (the
// same load over the whole export, unchecked), synch-parallel.c (8
// connections each issuing one Promise-form read or write at a time,
// checked). Shorter than C's 10 s runs: 2 s each.
import { randomBytes } from 'node:crypto';
import { Handle } from '../../lib';
import { startNbdkit } from '../helpers/servers';
import { waitFor } from '../helpers/wait';

const RUN_MS = 2000;
const CONNECTIONS = 8;
const MAX_IN_FLIGHT = 64;
const BUFFER_SIZE = 16384;

/** The pattern plugin's bytes: the big-endian offset of each 8-byte word. */
function patternDisk(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 8) b.writeBigUInt64BE(BigInt(i), i);
  return b;
}

const turn = () => new Promise<void>((r) => setImmediate(r));

interface Slot {
  buf: Buffer;
  /** -1: free. */
  offset: number;
  cookie: number;
  read: boolean;
}

/**
 * One connection of aio-parallel: keeps MAX_IN_FLIGHT reads and writes of
 * BUFFER_SIZE in flight, each slot in its own area of the connection's share
 * of the disk, retiring them by polling aioCommandCompleted as C does.
 */
async function aioConnection(socket: string, index: number, disk: Buffer | undefined, exportSize: number, end: number) {
  const h = new Handle();
  const stats = { requests: 0, mostInFlight: 0, integrityErrors: 0 };
  try {
    await h.connectUnix(socket);
    expect([h.getSize(), h.canMultiConn(), h.isReadOnly(), h.aioInFlight()]).toEqual([exportSize, true, false, 0]);
    const area = exportSize / CONNECTIONS / MAX_IN_FLIGHT;
    const slots: Slot[] = Array.from({ length: MAX_IN_FLIGHT }, () => ({ buf: Buffer.alloc(BUFFER_SIZE), offset: -1, cookie: 0, read: false }));
    for (;;) {
      const expired = Date.now() > end;
      if (expired && h.aioInFlight() === 0) break;
      expect(h.aioIsDead() || h.aioIsClosed()).toBe(false);
      while (!expired && h.aioInFlight() < MAX_IN_FLIGHT) {
        const i = slots.findIndex((s) => s.offset === -1);
        const s = slots[i];
        s.offset =
          disk === undefined
            ? Math.floor(Math.random() * (exportSize - BUFFER_SIZE))
            : (index * MAX_IN_FLIGHT + i) * area + Math.floor(Math.random() * (area - BUFFER_SIZE));
        s.read = Math.random() < 0.5;
        if (s.read) {
          s.cookie = h.aioPread(s.buf, s.offset);
        } else {
          s.cookie = h.aioPwrite(s.buf, s.offset);
          disk?.set(s.buf, s.offset);
        }
        stats.mostInFlight = Math.max(stats.mostInFlight, h.aioInFlight());
      }
      await turn();
      for (const s of slots) {
        if (s.offset === -1 || !h.aioCommandCompleted(s.cookie)) continue;
        if (disk !== undefined && s.read && !disk.subarray(s.offset, s.offset + BUFFER_SIZE).equals(s.buf)) stats.integrityErrors++;
        s.offset = -1;
        stats.requests++;
      }
    }
    await h.shutdown();
  } finally {
    h.close();
  }
  return stats;
}

test('8 connections with 64 reads and writes in flight each: every read gives what the model holds, none fails (aio-parallel)', async () => {
  const size = 64 * 1024 * 1024;
  const srv = await startNbdkit('--filter=cow', 'pattern', `size=${size}`);
  const disk = patternDisk(size);
  const end = Date.now() + RUN_MS;
  const all = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => aioConnection(srv.socket, i, disk, size, end)));
  expect(all.map((s) => s.integrityErrors)).toEqual(new Array(CONNECTIONS).fill(0));
  for (const s of all) {
    expect(s.requests).toBeGreaterThan(MAX_IN_FLIGHT);
    expect(s.mostInFlight).toBe(MAX_IN_FLIGHT);
  }
}, 60000);

test('8 connections with 64 random reads and writes in flight each over the whole export: all complete (aio-parallel-load)', async () => {
  const size = 64 * 1024 * 1024;
  const srv = await startNbdkit('memory', `size=${size}`);
  const end = Date.now() + RUN_MS;
  const all = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => aioConnection(srv.socket, i, undefined, size, end)));
  for (const s of all) {
    expect(s.requests).toBeGreaterThan(MAX_IN_FLIGHT);
    expect(s.mostInFlight).toBe(MAX_IN_FLIGHT);
  }
}, 60000);

test('8 connections each reading or writing one 16K block at a time with the Promise forms: every read gives what the model holds (synch-parallel)', async () => {
  const size = 8 * 1024 * 1024;
  const srv = await startNbdkit('--filter=cow', 'pattern', `size=${size}`);
  const disk = patternDisk(size);
  const end = Date.now() + RUN_MS;
  const share = size / CONNECTIONS;
  const run = async (index: number) => {
    const h = new Handle();
    const stats = { requests: 0, integrityErrors: 0 };
    try {
      await h.connectUnix(srv.socket);
      expect([h.getSize(), h.canMultiConn(), h.isReadOnly()]).toEqual([size, true, false]);
      const buf = Buffer.alloc(BUFFER_SIZE);
      while (Date.now() < end) {
        const offset = index * share + Math.floor(Math.random() * (share - BUFFER_SIZE));
        if (Math.random() < 0.5) {
          await h.pread(buf, offset);
          if (!disk.subarray(offset, offset + BUFFER_SIZE).equals(buf)) stats.integrityErrors++;
        } else {
          randomBytes(BUFFER_SIZE).copy(buf);
          await h.pwrite(buf, offset);
          disk.set(buf, offset);
        }
        stats.requests++;
      }
      await h.shutdown();
      await waitFor(() => h.aioIsClosed(), 'the connection to close');
    } finally {
      h.close();
    }
    return stats;
  };
  const all = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => run(i)));
  expect(all.map((s) => s.integrityErrors)).toEqual(new Array(CONNECTIONS).fill(0));
  for (const s of all) expect(s.requests).toBeGreaterThan(10);
}, 60000);
