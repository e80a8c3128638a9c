// The thread driver's reader: while at most one small command is in flight,
// the JS thread reads libnbd's socket itself; with more, or larger ones, the
// I/O thread reads (native/drivers/thread_driver.h). One of them reads at a
// time, whatever the load does, and what either reads is the server's data.
import { Handle, NbdError, SHUTDOWN_ABANDON_PENDING } from '../../lib';
import { outcome } from '../helpers/outcome';
import { connected, handle, nbdkit, pattern, startNbdkit } from '../helpers/servers';
import { sleep } from '../helpers/wait';

const KiB = 1024;

/** A small deterministic generator (mulberry32), so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('the thread driver reads where the load wants it', () => {
  const SIZE = 64 * 1024 * KiB;
  let h: Handle;
  beforeAll(async () => {
    h = await connected(nbdkit('pattern', `size=${SIZE}`), { driver: 'thread' });
  });

  async function readAndCheck(offset: number, length: number): Promise<void> {
    const buf = Buffer.alloc(length);
    await h.pread(buf, offset);
    if (!buf.equals(pattern(offset, length))) throw new Error(`read of ${length} at ${offset} returned other bytes`);
  }

  test('reads one at a time, each awaited, return the server\'s bytes', async () => {
    for (let i = 0; i < 200; i++) await readAndCheck(i * 4096, 4096);
  });

  test('a load moving between one read and many returns the server\'s bytes in every round', async () => {
    const next = rng(25);
    const depths = [1, 1, 2, 3, 8, 32];
    const sizes = [512, 4 * KiB, 64 * KiB, 65 * KiB, 200 * KiB];
    for (let round = 0; round < 60; round++) {
      const depth = depths[Math.floor(next() * depths.length)];
      const reads: Promise<void>[] = [];
      for (let i = 0; i < depth; i++) {
        const length = sizes[Math.floor(next() * sizes.length)];
        const offset = Math.floor(next() * ((SIZE - length) / 8)) * 8;
        reads.push(readAndCheck(offset, length));
      }
      await Promise.all(reads);
    }
  });

  test('a read issued from a completion callback, one in flight at a time, chains to the end', async () => {
    const total = 300;
    const seen = await new Promise<number>((resolve, reject) => {
      let done = 0;
      const buf = Buffer.alloc(4096);
      const issue = (i: number) =>
        h.aioPread(buf, i * 4096, (err) => {
          if (err.value !== 0) reject(new Error(`read ${i} failed: ${err.value}`));
          else if (!buf.equals(pattern(i * 4096, 4096))) reject(new Error(`read ${i} returned other bytes`));
          else if (++done === total) resolve(done);
          else issue(i + 1);
          return 1;
        });
      issue(0);
    });
    expect(seen).toBe(total);
  });

  test('poll() with one read in flight returns once its reply is read', async () => {
    const buf = Buffer.alloc(4096);
    const cookie = h.aioPread(buf, 8192);
    while (!h.aioCommandCompleted(cookie)) expect(await h.poll(-1)).toBeGreaterThanOrEqual(0);
    expect(buf.equals(pattern(8192, 4096))).toBe(true);
  });
});

/**
 * A thread-driver handle with one 4 KiB read in flight, `after` ms after it
 * was issued, on `nbdkit memory` whose delay filter holds each reply `rdelay` ms.
 */
async function oneReadInFlight(rdelay: number, after: number) {
  const server = await startNbdkit('--filter=delay', 'memory', 'size=1M', `rdelay=${rdelay}ms`);
  const h = handle({ driver: 'thread' });
  await h.connectUri(server.uri);
  const read = outcome(() => h.pread(Buffer.alloc(4096), 0));
  await sleep(after);
  return { server, h, read };
}

test('a server that dies with one small read in flight fails it, and the connection is over', async () => {
  const { server, h, read } = await oneReadInFlight(5000, 50);
  server.process.kill('SIGKILL');
  const [kind] = await read;
  expect(kind).toBe('err');
  await expect(h.pread(Buffer.alloc(512), 0)).rejects.toBeInstanceOf(NbdError);
  expect(h.aioIsDead() || h.aioIsClosed()).toBe(true);
});

test('a shutdown that abandons pending commands, made while one small read is in flight, settles both', async () => {
  const { h, read } = await oneReadInFlight(200, 20);
  const shutdown = outcome(() => h.shutdown(SHUTDOWN_ABANDON_PENDING));
  const [r, s] = await Promise.all([read, shutdown]);
  // The read was on the wire: libnbd waits for its reply (or the server's
  // end), so it settles once, either way; the shutdown itself succeeds.
  expect(['ok', 'err']).toContain(r[0]);
  expect(s[0]).toBe('ok');
  expect(h.aioIsClosed() || h.aioIsDead()).toBe(true);
});

test('close() with one small read in flight on a server that holds its reply rejects it ENOTCONN at once', async () => {
  // The delay filter holds the reply (a SIGSTOP takes effect some time after
  // kill() returns, and a loaded server could answer meanwhile).
  const { h, read } = await oneReadInFlight(120_000, 20);
  h.close();
  // Settled by close(): the reply would come after the test's timeout.
  const [kind, code] = await read;
  expect([kind, code]).toEqual(['err', 'ENOTCONN']);
});
