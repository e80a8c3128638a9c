// connect(uri, options): a new Handle, its meta contexts and connectUri in
// one call; timeout and signal abort it; refused connections are retried
// with a fresh handle; the handle of a failed connect is always closed.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Handle, connect } from '../../lib';
import { runPython } from '../helpers/python';
import { silentServer, spawnServer, startNbdkit, tempDir } from '../helpers/servers';
import { waitFor } from '../helpers/wait';
import { collectUnhandledRejections } from '../helpers/unhandled';

collectUnhandledRejections();

// Node >= 20.4 defines Symbol.asyncDispose as this registered symbol in its
// main realm, not in the vm context jest runs each test file in.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

const stops: (() => void)[] = [];
afterAll(() => {
  for (const stop of stops) stop();
});

async function failure(p: Promise<unknown>): Promise<Error & { code?: string; errno?: number }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

/** Records every Handle connect() makes (through connectUri), calling `before` first when given. */
function recordHandles(before?: (attempt: number) => Promise<void>): { handles: Handle<boolean>[]; restore: () => void } {
  const handles: Handle<boolean>[] = [];
  const original = Handle.prototype.connectUri;
  const spy = jest.spyOn(Handle.prototype, 'connectUri').mockImplementation(async function (this: Handle<boolean>, ...args) {
    handles.push(this);
    if (before !== undefined) await before(handles.length);
    return original.apply(this, args);
  });
  return { handles, restore: () => spy.mockRestore() };
}

/** `nbdkit memory` on a Unix socket path chosen in advance. */
async function nbdkitAt(socket: string): Promise<void> {
  const pidfile = `${socket}.pid`;
  const { stop } = spawnServer('nbdkit', ['-f', '--exit-with-parent', '-U', socket, '-P', pidfile, 'memory', 'size=1M']);
  stops.push(stop);
  await waitFor(() => existsSync(pidfile), 'nbdkit');
}

/** A TCP port on loopback nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

test('connect() returns a connected handle with the meta contexts requested', async () => {
  const server = await startNbdkit('memory', 'size=1M');
  const h = await connect(server.uri, { metaContexts: ['base:allocation'] });
  try {
    expect(h).toBeInstanceOf(Handle);
    expect(h.getSize()).toBe(1048576);
    expect(h.canMetaContext('base:allocation')).toBe(true);
    const seen: string[] = [];
    await h.blockStatus(4096, 0, (context) => void seen.push(context));
    expect(seen).toEqual(['base:allocation']);
  } finally {
    h.close();
  }
});

test('connect() passes driver and bigint to the Handle', async () => {
  const server = await startNbdkit('memory', 'size=1M');
  const h = await connect(server.uri, { bigint: true, driver: 'thread' });
  try {
    expect(h.getSize()).toBe(1048576n);
  } finally {
    h.close();
  }
});

test('await using h = await connect(uri) shuts the connection down and closes the handle', async () => {
  const server = await startNbdkit('memory', 'size=1M');
  let outer: Handle | undefined;
  const disconnects: unknown[] = [];
  {
    await using h = await connect(server.uri);
    outer = h;
    h.on('disconnect', (e) => disconnects.push(e));
    await h.pwrite(Buffer.alloc(512, 1), 0);
  }
  expect(outer.closed).toBe(true);
  expect(disconnects).toEqual([undefined]);
});

test('a timeout against a server that accepts and never speaks fails ETIMEDOUT and closes the handle', async () => {
  const silent = await silentServer();
  const rec = recordHandles();
  try {
    const e = await failure(connect(silent.uri, { timeout: 200 }));
    expect(e.code).toBe('ETIMEDOUT');
    expect(e.message).toMatch(/^nbd_connect_uri: timed out after 200 ms: /);
    expect(silent.accepted()).toBe(1);
    expect(rec.handles).toHaveLength(1);
    expect(rec.handles[0].closed).toBe(true);
  } finally {
    rec.restore();
  }
});

test('aborting the signal rejects with an AbortError (the reason as cause) and closes the handle', async () => {
  const silent = await silentServer();
  const rec = recordHandles();
  try {
    const ac = new AbortController();
    const p = failure(connect(silent.uri, { signal: ac.signal, timeout: 60000 }));
    await waitFor(() => silent.accepted() === 1, 'the connection');
    const reason = new Error('user pressed ^C');
    ac.abort(reason);
    const e = await p;
    expect(e.name).toBe('AbortError');
    expect(e.code).toBe('ABORT_ERR');
    expect(e.cause).toBe(reason);
    expect(rec.handles[0].closed).toBe(true);
  } finally {
    rec.restore();
  }
});

test('an already-aborted signal rejects without making a handle', async () => {
  const rec = recordHandles();
  try {
    const e = await failure(connect('nbd+unix:///?socket=/nonexistent', { signal: AbortSignal.abort('no') }));
    expect(e.name).toBe('AbortError');
    expect(e.cause).toBe('no');
    expect(rec.handles).toHaveLength(0);
  } finally {
    rec.restore();
  }
});

test('a Unix socket path with no server yet (ENOENT) is retried with a fresh handle until the server is up', async () => {
  const socket = join(tempDir(), 'later.sock');
  // The server comes up right before the third try: no timing involved.
  const rec = recordHandles(async (attempt) => {
    if (attempt === 3) await nbdkitAt(socket);
  });
  try {
    const h = await connect(`nbd+unix:///?socket=${socket}`, { retries: 5, retryDelay: 10 });
    try {
      expect(h.getSize()).toBe(1048576);
      expect(rec.handles).toHaveLength(3);
      expect(new Set(rec.handles).size).toBe(3);
      expect(rec.handles.map((x) => x.closed)).toEqual([true, true, false]);
      expect(rec.handles[2]).toBe(h);
    } finally {
      h.close();
    }
  } finally {
    rec.restore();
  }
});

test('a refused TCP connection is tried retries + 1 times, then rejects with ECONNREFUSED; every handle is closed', async () => {
  const port = await closedPort();
  const rec = recordHandles();
  try {
    const e = await failure(connect(`nbd://127.0.0.1:${port}`, { retries: 2, retryDelay: 0 }));
    expect(e.code).toBe('ECONNREFUSED');
    expect(rec.handles).toHaveLength(3);
    expect(rec.handles.every((x) => x.closed)).toBe(true);
  } finally {
    rec.restore();
  }
});

test('other failures are not retried', async () => {
  const rec = recordHandles();
  try {
    // A server that is up but has no such export: libnbd says ENOENT, as for a missing socket, but from the handshake.
    const server = await startNbdkit('--filter=exportname', 'memory', 'size=1M', 'exportname-strict=true', 'exportname=only');
    const uri = `nbd+unix:///other?socket=${server.socket}`;
    const e = await failure(connect(uri, { retries: 3, retryDelay: 0 }));
    expect(e).toBeInstanceOf(Error);
    // libnbd's own words for it, which changed between versions.
    const libnbdSays = await runPython<string>(
      'import nbd, json, sys\nh = nbd.NBD()\ntry:\n    h.connect_uri(sys.argv[1])\nexcept nbd.Error as e:\n    print(json.dumps(e.string))',
      { args: [uri] },
    );
    expect(libnbdSays).toMatch(/no export named 'other'/);
    expect(e.message).toBe(libnbdSays);
    expect(rec.handles).toHaveLength(1);
    expect(rec.handles[0].closed).toBe(true);
  } finally {
    rec.restore();
  }
});

test('the timeout covers the waits between retries', async () => {
  const rec = recordHandles();
  try {
    const e = await failure(connect(`nbd+unix:///?socket=${join(tempDir(), 'never.sock')}`, { retries: 10, retryDelay: 60000, timeout: 100 }));
    expect(e.code).toBe('ETIMEDOUT');
    expect(rec.handles).toHaveLength(1);
    expect(rec.handles[0].closed).toBe(true);
  } finally {
    rec.restore();
  }
});

test('bad arguments throw synchronously with Node codes', () => {
  const bad: [unknown, unknown, string][] = [
    [1, undefined, 'ERR_INVALID_ARG_TYPE'],
    ['nbd://x', 'opts', 'ERR_INVALID_ARG_TYPE'],
    ['nbd://x', { metaContexts: 'base:allocation' }, 'ERR_INVALID_ARG_TYPE'],
    ['nbd://x', { metaContexts: [1] }, 'ERR_INVALID_ARG_TYPE'],
    ['nbd://x', { timeout: 0 }, 'ERR_OUT_OF_RANGE'],
    ['nbd://x', { timeout: '1' }, 'ERR_INVALID_ARG_TYPE'],
    ['nbd://x', { retries: -1 }, 'ERR_OUT_OF_RANGE'],
    ['nbd://x', { retryDelay: 1.5 }, 'ERR_OUT_OF_RANGE'],
    ['nbd://x', { signal: {} }, 'ERR_INVALID_ARG_TYPE'],
    ['nbd://x', { driver: 'fast' }, 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [uri, options, code] of bad) {
    expect(() => connect(uri as string, options as never)).toThrow(expect.objectContaining({ code }));
  }
});
