// Connection loss is visible: Handle emits 'disconnect' once per connection,
// with undefined after a clean shutdown and an NbdError otherwise, even
// while idle, and never emits 'error'.
import { Handle, NbdError } from '../../lib';
import { connected, handle, nbdkit, startNbdkit } from '../helpers/servers';
import { waitFor } from '../helpers/wait';

/** Records the 'disconnect' (and any 'error') events of a handle. */
function watch(h: Handle): { disconnects: unknown[]; errors: unknown[] } {
  const seen = { disconnects: [] as unknown[], errors: [] as unknown[] };
  h.on('disconnect', (e) => seen.disconnects.push(e));
  h.on('error', (e) => seen.errors.push(e));
  return seen;
}

test("a clean shutdown emits 'disconnect' with undefined, once", async () => {
  const h = await connected(nbdkit('memory', 'size=1M'));
  const seen = watch(h);
  await h.shutdown();
  await new Promise((r) => setImmediate(r));
  expect(seen.disconnects).toEqual([undefined]);
  expect(seen.errors).toEqual([]);
});

test("a server that goes away while the handle is idle emits 'disconnect' with an NbdError", async () => {
  const server = await startNbdkit('memory', 'size=1M');
  const h = handle();
  await h.connectUnix(server.socket);
  const seen = watch(h);
  server.process.kill('SIGKILL');
  await waitFor(() => seen.disconnects.length > 0, "'disconnect'", 5000);
  await new Promise((r) => setTimeout(r, 50));
  expect(seen.disconnects).toHaveLength(1);
  expect(seen.disconnects[0]).toBeInstanceOf(NbdError);
  expect(seen.errors).toEqual([]);
  // libnbd agrees the connection is over.
  expect(h.aioIsReady()).toBe(false);
});

test("a server that dies with commands in flight emits 'disconnect' once, after their completions", async () => {
  const server = await startNbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=2');
  const h = handle();
  await h.connectUnix(server.socket);
  const order: string[] = [];
  h.on('disconnect', () => order.push('disconnect'));
  // Completion callbacks: they run in event order (a Promise's handlers would run later, as microtasks).
  for (let i = 0; i < 3; i++) {
    h.aioPread(Buffer.alloc(512), i * 512, (error) => {
      order.push(error.value === 0 ? 'ok' : 'failed');
      return 1;
    });
  }
  setTimeout(() => server.process.kill('SIGKILL'), 100);
  await waitFor(() => order.includes('disconnect'), "'disconnect'", 5000);
  expect(order).toEqual(['failed', 'failed', 'failed', 'disconnect']);
});

test("close() emits nothing and a handle never connected emits nothing", async () => {
  const h = await connected(nbdkit('memory', 'size=1M'));
  const seen = watch(h);
  h.close();
  const fresh = new Handle();
  const freshSeen = watch(fresh);
  fresh.close();
  await new Promise((r) => setTimeout(r, 50));
  expect(seen.disconnects).toEqual([]);
  expect(freshSeen.disconnects).toEqual([]);
});
