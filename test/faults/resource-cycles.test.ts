// Create/connect/read/close cycles: after each close() the process has the
// file descriptors and child processes it had before, at once (fds; the
// closed handles are still referenced, no GC needed) or within a short
// bounded time (children to be reaped).
import { Handle } from '../../lib';
import { nbdkit, startNbdkit, type Server } from '../helpers/servers';
import { childPids, collectStrayErrors, describeFds, describePid, until } from './helpers/faults';
import { settled } from '../helpers/outcome';
import { sleep, within } from '../helpers/wait';

const stray = collectStrayErrors();

// Closed handles stay referenced till the end of the file: nothing they
// hold may wait for GC to be released.
const closed: Handle[] = [];
afterAll(() => closed.forEach((h) => h.close()));

let server: Server;
beforeAll(async () => {
  server = await startNbdkit('memory', 'size=1M');
});

interface Baseline {
  fds: string[];
  children: number[];
}

function baseline(): Baseline {
  return { fds: describeFds(), children: childPids() };
}

/** What differs from the baseline now (empty if nothing): extra fds by target, extra or missing children. */
function leaks(base: Baseline): string[] {
  const out: string[] = [];
  const now = describeFds();
  if (now.length !== base.fds.length) {
    const targets = (l: string[]) => l.map((d) => d.replace(/^\d+ -> /, ''));
    const extra = [...targets(now)];
    for (const t of targets(base.fds)) {
      const i = extra.indexOf(t);
      if (i >= 0) extra.splice(i, 1);
    }
    out.push(`${now.length - base.fds.length} more fds than at the start (${extra.join(', ') || 'same targets'})`);
  }
  const children = childPids().filter((p) => !base.children.includes(p));
  if (children.length > 0) out.push(`children left: ${children.map(describePid).join(', ')}`);
  return out;
}

/**
 * Runs `cycle` n times; after each, no fd may be left (checked at once) and
 * no child (checked for up to `reapMs`). Stops at the first leaky cycle,
 * with everything that leaked.
 */
async function cycles(n: number, reapMs: number, cycle: (i: number) => Promise<void>): Promise<string[]> {
  await cycle(-1); // warm-up: lazily opened fds of Node and libnbd belong to the baseline
  const base = baseline();
  const childLeaks = () => leaks(base).filter((l) => l.startsWith('children'));
  for (let i = 0; i < n; i++) {
    await cycle(i);
    const fdLeaks = leaks(base).filter((l) => !l.startsWith('children'));
    await until(() => childLeaks().length === 0, reapMs);
    const found = [...fdLeaks.map((l) => `right after close(): ${l}`), ...childLeaks().map((l) => `${reapMs} ms after close(): ${l}`)];
    if (found.length > 0) return found.map((l) => `cycle ${i}: ${l}`);
  }
  return [];
}

/** Connects with `connect`, reads 4 KiB, closes, keeps the closed handle referenced. */
async function connectReadClose(connect: (h: Handle) => Promise<void>): Promise<void> {
  const h = new Handle();
  closed.push(h);
  const c = await within(settled(connect(h)), 5000);
  if (c === 'pending') throw new Error('connect did not settle within 5 s');
  if (c.error) throw c.error;
  const r = await within(settled(h.pread(Buffer.alloc(4096), 4096)), 5000);
  if (r === 'pending' || r.error) throw new Error(`pread ${r === 'pending' ? 'did not settle within 5 s' : String(r.error)}`);
  h.close();
}

describe('create/connect/close cycles leave no file descriptor or child process behind', () => {
  test('a new Handle closed without connecting, 300 times', async () => {
    expect(
      await cycles(300, 0, async () => {
        const h = new Handle();
        closed.push(h);
        h.close();
      }),
    ).toEqual([]);
  });

  test('new Handle, connectUnix, a read, close: 200 times, the fd count is back right after each close()', async () => {
    expect(await cycles(200, 0, () => connectReadClose((h) => h.connectUnix(server.socket)))).toEqual([]);
  });

  test('new Handle, connectCommand(nbdkit), a read, close: 60 times, no fd right after close() and no child 1 s after', async () => {
    expect(await cycles(60, 1000, () => connectReadClose((h) => h.connectCommand(nbdkit('memory', 'size=1M'))))).toEqual([]);
  });

  test('failed connects (no socket, refused TCP, a command that exits at once), then close: 100 times, nothing left 1 s after', async () => {
    const failing: ((h: Handle) => Promise<void>)[] = [
      (h) => h.connectUnix('/nonexistent/libnbd-fault.sock'),
      (h) => h.connectTcp('127.0.0.1', '1'),
      (h) => h.connectUri('nbd://127.0.0.1:1/'),
      (h) => h.connectCommand(['true']),
      (h) => h.connectCommand(['sh', '-c', 'exec 0<&-; exit 0']),
    ];
    expect(
      await cycles(100, 1000, async (i) => {
        const h = new Handle();
        closed.push(h);
        const c = await within(settled(failing[(i + failing.length) % failing.length](h)), 5000);
        if (c === 'pending') throw new Error(`cycle ${i}: connect did not settle within 5 s`);
        if (!c.error) throw new Error(`cycle ${i}: connect succeeded`);
        h.close();
      }),
    ).toEqual([]);
  });

  test('close() while connectCommand waits for a server that lingers 2 s returns within 500 ms; the child is reaped within 4 s, no fd is left', async () => {
    const before = baseline();
    const h = new Handle();
    closed.push(h);
    // Never answers, and does not notice the hang-up: it exits after 2 s.
    const connect = within(settled(h.connectCommand(['sh', '-c', 'exec sleep 2'])), 5000);
    await sleep(100);
    const t = Date.now();
    h.close();
    const closeMs = Date.now() - t;
    const c = await connect;
    const childrenLeft = () => leaks(before).filter((l) => l.startsWith('children'));
    await until(() => childrenLeft().length === 0, 4000);
    expect({
      close: closeMs < 500 ? 'within 500 ms' : `${closeMs} ms`,
      connect: c === 'pending' ? 'unsettled' : (c.error as Error)?.constructor.name,
      leaks: leaks(before),
    }).toEqual({ close: 'within 500 ms', connect: 'NbdError', leaks: [] });
  });
});

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
