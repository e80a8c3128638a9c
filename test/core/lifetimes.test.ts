// Lifetimes: close() with commands in flight, servers that die, GC of
// buffers and handles, process liveness, worker_threads teardown, many
// commands at once, and a port of libnbd's tests/closure-lifetimes.c.
// docs/architecture.md, "Connecting and closing" (close, env teardown).
import { join } from 'node:path';
import { Handle, NbdError, defaultDriver } from '../../lib';
import { connected, handle, nbdkit, pattern, startNbdkit } from '../helpers/servers';
import { blockThread, sleep, waitFor } from '../helpers/wait';
import { settled } from '../helpers/outcome';
import { runNode, type ChildResult } from '../helpers/node-child';

const ENOTCONN = 107;
const EINVAL = 22;


function expectClosedError(e: unknown): void {
  expect(e).toBeInstanceOf(NbdError);
  expect(e).toMatchObject({ name: 'NbdError', code: 'EINVAL', errno: EINVAL, message: 'handle is closed' });
}

function expectThrowsClosed(fn: () => unknown): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeDefined();
  expectClosedError(thrown);
}

function expectNotConnected(e: unknown): void {
  expect(e).toBeInstanceOf(NbdError);
  expect(e).toMatchObject({ code: 'ENOTCONN', errno: ENOTCONN });
}

/** Per-command record of callback invocations. */
class Recorder {
  readonly completions: number[][] = [];
  readonly chunks: number[] = [];
  readonly log: string[] = [];

  completion(i: number, ret: number = 0) {
    this.completions[i] ??= [];
    this.chunks[i] ??= 0;
    return (err: { value: number }) => {
      this.completions[i].push(err.value);
      this.log.push(`completion ${i}`);
      return ret;
    };
  }

  chunk(i: number) {
    this.completions[i] ??= [];
    this.chunks[i] ??= 0;
    return () => {
      this.chunks[i]++;
      this.log.push(`chunk ${i}`);
      return 0;
    };
  }

  get completed(): number {
    return this.completions.filter((c) => c.length > 0).length;
  }
}

// ---------------------------------------------------------------- child processes

const FIXTURES = join(__dirname, '..', 'fixtures');

/** Signs of a crash of Node or of the addon (nbdkit's own chatter is allowed). */
const CRASH = /FATAL ERROR|Segmentation fault|Aborted|core dumped|uv loop|open handles|libnbd: unexpected|FIXTURE FAILURE|node::|Assertion failed: .*(uv|node|napi)/;

/** The fixture ran to its end and exited 0 of itself: no crash, no timeout, no signal. */
function expectCleanExit(r: ChildResult): void {
  expect(r.stderr).not.toMatch(CRASH);
  expect(r.timedOut).toBe(false);
  expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
}

// ================================================================ 1. close()

describe('close() with commands in flight', () => {
  const delayed = () => nbdkit('--filter=delay', 'null', 'size=512', 'delay-read=10');

  test('every pending command completes once with ENOTCONN, Promises reject, close() is idempotent', async () => {
    const h = await connected(delayed());
    const rec = new Recorder();
    const cookies: number[] = [];
    for (let i = 0; i < 3; i++) cookies.push(h.aioPread(Buffer.alloc(512), 0, rec.completion(i, i === 0 ? 1 : 0)));
    for (let i = 3; i < 6; i++) {
      cookies.push(h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(i), rec.completion(i, i === 3 ? 1 : 0)));
    }
    const noCompletion = h.aioPread(Buffer.alloc(512), 0);
    const promises = [
      settled(h.pread(Buffer.alloc(512), 0)),
      settled(h.preadStructured(Buffer.alloc(512), 0, rec.chunk(6))),
    ];
    expect(new Set([...cookies, noCompletion]).size).toBe(7);
    await sleep(50); // the requests are on the wire, the server sits on them
    expect(h.aioInFlight()).toBe(9);
    expect(rec.completed).toBe(0);

    h.close();
    expect(h.closed).toBe(true);
    h.close(); // idempotent: no throw, no second round of callbacks
    const results = await Promise.all(promises);
    await sleep(50);
    h.close();

    for (let i = 0; i < 6; i++) expect(rec.completions[i]).toEqual([ENOTCONN]);
    expect(rec.chunks).toEqual([0, 0, 0, 0, 0, 0, 0]);
    for (const r of results) {
      expect(r.value).toBeUndefined();
      expectNotConnected(r.error);
    }
  });

  test('any later call throws (or rejects with) NbdError EINVAL "handle is closed"', async () => {
    const h = await connected(delayed());
    const rec = new Recorder();
    const cookie = h.aioPread(Buffer.alloc(512), 0, rec.completion(0));
    h.close();
    expect(rec.completions[0]).toEqual([ENOTCONN]);

    const buf = Buffer.alloc(512, 0xaa);
    const late = new Recorder();
    expectThrowsClosed(() => h.getSize());
    expectThrowsClosed(() => h.aioPread(buf, 0, late.completion(0)));
    expectThrowsClosed(() => h.aioPreadStructured(buf, 0, late.chunk(1), late.completion(1)));
    expectThrowsClosed(() => h.aioInFlight());
    expectThrowsClosed(() => h.aioCommandCompleted(cookie));
    expectThrowsClosed(() => h.aioCommandCompleted(0));
    expectThrowsClosed(() => h.aioPeekCommandCompleted());
    expectThrowsClosed(() => h.aioIsDead());
    expectThrowsClosed(() => h.aioIsReady());
    expectThrowsClosed(() => h.killSubprocess(0));
    expectThrowsClosed(() => h.aioDisconnect());
    expectThrowsClosed(() => h.setHandleName('x'));
    expectThrowsClosed(() => h.getHandleName());

    // Promise forms reject, they do not throw synchronously.
    let pread!: Promise<void>, preadStructured!: Promise<void>, connect!: Promise<void>, shutdown!: Promise<void>;
    expect(() => {
      pread = h.pread(buf, 0);
      preadStructured = h.preadStructured(buf, 0, late.chunk(2));
      connect = h.connectCommand(nbdkit('null', 'size=512'));
      shutdown = h.shutdown();
    }).not.toThrow();
    for (const p of [pread, preadStructured, connect, shutdown]) {
      const r = await settled(p);
      expectClosedError(r.error);
    }
    await sleep(20);
    expect(late.completions.every((c) => c.length === 0)).toBe(true);
    expect(late.chunks.every((c) => c === 0)).toBe(true);
    expect(buf.equals(Buffer.alloc(512, 0xaa))).toBe(true); // nothing reached libnbd
    expect(rec.completions[0]).toEqual([ENOTCONN]);
  });

  test('close() of a handle that never connected, then later calls', async () => {
    const h = new Handle();
    h.close();
    h.close();
    expectThrowsClosed(() => h.getSize());
    expectThrowsClosed(() => h.aioPread(Buffer.alloc(512), 0));
    expectClosedError((await settled(h.connectUri('nbd+unix:///?socket=/nonexistent'))).error);
  });

  test('close() while connecting rejects the connect and later calls still fail cleanly', async () => {
    const h = new Handle();
    const connect = settled(h.connectCommand(nbdkit('--filter=delay', 'null', 'size=512', 'delay-open=5')));
    await sleep(50);
    const t = Date.now();
    h.close();
    const r = await connect;
    expect(Date.now() - t).toBeLessThan(3000);
    expect(r.error).toBeInstanceOf(NbdError);
    expect(r.error.code).toBe('ENOTCONN');
    expectThrowsClosed(() => h.aioInFlight());
  });

  // A server whose reads at offset 0 return at once and elsewhere sleep.
  const splitServer = () =>
    startNbdkit(
      'eval',
      'thread_model=echo parallel',
      'get_size=echo 1M',
      'pread=if [ $4 -ge 4096 ]; then sleep 3; fi; head -c $3 /dev/zero',
    );

  test('close() from inside a completion callback while other commands are in flight', async () => {
    const srv = await splitServer();
    const h = handle();
    await h.connectUnix(srv.socket);
    const rec = new Recorder();
    const insideClose: { error: unknown; closedAfter: boolean }[] = [];
    const slow: number[] = [];
    for (let i = 1; i <= 4; i++) slow.push(h.aioPread(Buffer.alloc(512), 4096 * i, rec.completion(i)));
    slow.push(h.aioPreadStructured(Buffer.alloc(512), 4096 * 5, rec.chunk(5), rec.completion(5)));
    const slowPromises = [settled(h.pread(Buffer.alloc(512), 4096 * 6)), settled(h.preadStructured(Buffer.alloc(512), 4096 * 7, () => 0))];

    rec.completions[0] = [];
    const fastCookie = h.aioPread(Buffer.alloc(512), 0, (err) => {
      rec.completions[0].push(err.value);
      h.close();
      let error: unknown;
      try {
        h.aioInFlight();
      } catch (e) {
        error = e;
      }
      insideClose.push({ error, closedAfter: h.closed });
      return 0;
    });
    await waitFor(() => rec.completions[0].length > 0, 'the fast read', 5000);
    const outcomes = await Promise.all(slowPromises);
    await sleep(50);

    expect(rec.completions[0]).toEqual([0]); // its own, successful, completion
    expect(insideClose).toHaveLength(1);
    expect(insideClose[0].closedAfter).toBe(true);
    expectClosedError(insideClose[0].error);
    for (let i = 1; i <= 5; i++) expect(rec.completions[i]).toEqual([ENOTCONN]);
    expect(rec.chunks[5]).toBe(0);
    for (const r of outcomes) expectNotConnected(r.error);
    expectThrowsClosed(() => h.aioCommandCompleted(fastCookie));
    expect(slow).toHaveLength(5);
  });

  test('close() from inside a chunk callback while other commands are in flight', async () => {
    const srv = await splitServer();
    const h = handle();
    await h.connectUnix(srv.socket);
    const rec = new Recorder();
    for (let i = 1; i <= 3; i++) h.aioPreadStructured(Buffer.alloc(512), 4096 * i, rec.chunk(i), rec.completion(i));
    const slowPromise = settled(h.pread(Buffer.alloc(512), 4096 * 4));
    rec.completions[0] = [];
    rec.chunks[0] = 0;
    let chunkSaw: { offset: number; data: boolean } | undefined;
    h.aioPreadStructured(
      Buffer.alloc(512, 0xff),
      0,
      (subbuf, offset) => {
        rec.chunks[0]++;
        chunkSaw = { offset, data: Buffer.from(subbuf).equals(Buffer.alloc(512)) };
        h.close();
        return 0;
      },
      (err) => {
        rec.completions[0].push(err.value);
        return 0;
      },
    );
    await waitFor(() => rec.chunks[0] > 0, 'the fast chunk', 5000);
    const slow = await slowPromise;
    await sleep(50);

    expect(chunkSaw).toEqual({ offset: 0, data: true });
    expect(rec.chunks[0]).toBe(1);
    // Its completion had not been seen by JS: it is pending, so close()
    // completes it once with ENOTCONN, and it is not delivered again.
    expect(rec.completions[0]).toEqual([ENOTCONN]);
    for (let i = 1; i <= 3; i++) {
      expect(rec.completions[i]).toEqual([ENOTCONN]);
      expect(rec.chunks[i]).toBe(0);
    }
    expectNotConnected(slow.error);
  });
});

// ================================================================ 2. dead servers

describe('a server that dies with commands in flight', () => {
  async function issueMix(h: Handle, rec: Recorder) {
    const cookies: number[] = [];
    for (let i = 0; i < 3; i++) cookies.push(h.aioPread(Buffer.alloc(512), 512 * i, rec.completion(i, i === 2 ? 1 : 0)));
    for (let i = 3; i < 5; i++) {
      cookies.push(h.aioPreadStructured(Buffer.alloc(512), 512 * i, rec.chunk(i), rec.completion(i, i === 4 ? 1 : 0)));
    }
    const promises = [
      settled(h.pread(Buffer.alloc(512), 0)),
      settled(h.preadStructured(Buffer.alloc(512), 0, () => 0)),
    ];
    await sleep(100); // on the wire, held by the delay filter
    expect(h.aioInFlight()).toBe(7);
    return { cookies, promises };
  }

  async function expectAllFailed(h: Handle, rec: Recorder, cookies: number[], promises: Promise<{ error?: any }>[]) {
    const t = Date.now();
    await waitFor(() => rec.completed === 5, 'every completion after the server died', 5000);
    const outcomes = await Promise.all(promises);
    expect(Date.now() - t).toBeLessThan(5000);
    for (let i = 0; i < 5; i++) expect(rec.completions[i]).toEqual([ENOTCONN]);
    expect(rec.chunks).toEqual([0, 0, 0, 0, 0]);
    for (const r of outcomes) expectNotConnected(r.error);
    // libnbd 1.14 (checked with the Python binding): EOF while replies are
    // awaited moves the handle to CLOSED; ECONNRESET or EPIPE to DEAD.
    // Either way it is not usable any more.
    expect(h.connectionState()).toMatch(/^(CLOSED|DEAD):/);
    expect(h.aioIsDead() || h.aioIsClosed()).toBe(true);
    expect(h.aioIsReady()).toBe(false);
    expect(h.aioInFlight()).toBe(0);
    // Completions that returned 0 are retired here with their error;
    // auto-retired ones (returned 1) are unknown: false.
    for (const i of [0, 1, 3]) {
      let thrown: unknown;
      try {
        h.aioCommandCompleted(cookies[i]);
      } catch (e) {
        thrown = e;
      }
      expectNotConnected(thrown);
      expect(h.aioCommandCompleted(cookies[i])).toBe(false);
    }
    for (const i of [2, 4]) expect(h.aioCommandCompleted(cookies[i])).toBe(false);
    await sleep(50);
    for (let i = 0; i < 5; i++) expect(rec.completions[i]).toEqual([ENOTCONN]); // still once
  }

  test('nbdkit on a Unix socket is SIGKILLed while reads are delayed', async () => {
    const srv = await startNbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=10');
    const h = handle();
    await h.connectUnix(srv.socket);
    const rec = new Recorder();
    const { cookies, promises } = await issueMix(h, rec);
    srv.process.kill('SIGKILL');
    await expectAllFailed(h, rec, cookies, promises);
  });

  test('a connectCommand server killed with killSubprocess(9)', async () => {
    const h = await connected(nbdkit('--filter=delay', 'null', 'size=4K', 'delay-read=10'));
    const rec = new Recorder();
    const { cookies, promises } = await issueMix(h, rec);
    h.killSubprocess(9);
    await expectAllFailed(h, rec, cookies, promises);
    h.close(); // after death: no second completion
    await sleep(20);
    for (let i = 0; i < 5; i++) expect(rec.completions[i]).toEqual([ENOTCONN]);
  });

  // libnbd (checked with the Python binding): the issue kicks the state
  // machine, the send fails (EPIPE), the handle goes DEAD and this very
  // command is completed with ENOTCONN before aio_pread_structured returns
  // its cookie. A later command on the DEAD handle fails with EINVAL.
  async function issueOnUnnoticedDeath(h: Handle) {
    h.killSubprocess(9);
    blockThread(300); // the server is gone, and no loop turn lets libnbd notice
    if (defaultDriver() === 'thread') {
      // ...but the thread driver's I/O thread is not blocked: libnbd has
      // noticed, and the command is refused as on a CLOSED handle.
      expect(h.aioIsClosed() || h.aioIsDead()).toBe(true);
      expect(() => h.aioPreadStructured(Buffer.alloc(512), 0, () => 0)).toThrow(
        expect.objectContaining({ code: 'EINVAL', message: expect.stringMatching(/invalid state: (CLOSED|DEAD)/) }),
      );
      return;
    }
    const calls: [number, boolean][] = [];
    let chunks = 0;
    let returned = false;
    const cookie = h.aioPreadStructured(
      Buffer.alloc(512),
      0,
      () => {
        chunks++;
        return 0;
      },
      (err) => {
        calls.push([err.value, returned]);
        return 0;
      },
    );
    returned = true;
    expect(cookie).toBeGreaterThanOrEqual(1);
    expect(calls).toEqual([[ENOTCONN, false]]);
    expect(h.aioIsDead()).toBe(true);
    expect(h.aioInFlight()).toBe(0);
    let thrown: unknown;
    try {
      h.aioCommandCompleted(cookie);
    } catch (e) {
      thrown = e;
    }
    expectNotConnected(thrown);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    await sleep(50);
    expect(calls).toHaveLength(1);
    expect(chunks).toBe(0);

    // Now DEAD: the next command fails at once, no callback.
    const rec = new Recorder();
    let again: any;
    try {
      h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(0), rec.completion(0));
    } catch (e) {
      again = e;
    }
    expect(again).toBeInstanceOf(NbdError);
    expect(again.code).toBe('EINVAL');
    expect(again.message).toMatch(/^nbd_aio_pread_structured: invalid state: DEAD/);
    expect((await settled(h.pread(Buffer.alloc(512), 0))).error).toMatchObject({ code: 'EINVAL' });
    await sleep(20);
    expect(rec.completions[0]).toEqual([]);
    expect(rec.chunks[0]).toBe(0);
  }

  test('issuing on a connection whose server died unnoticed: completion (ENOTCONN) runs before the call returns', async () => {
    const h = await connected(nbdkit('null', 'size=512'));
    await sleep(10); // issue from a timer, outside any event dispatch
    await issueOnUnnoticedDeath(h);
  });

  test('the same, issued straight from the continuation of `await connect*()`', async () => {
    // This code runs in a microtask of the connect's event dispatch.
    // What JS observes must not depend on that.
    const h = await connected(nbdkit('null', 'size=512'));
    await issueOnUnnoticedDeath(h);
  });

  test('a command issued on a handle that libnbd saw CLOSED fails at once with EINVAL, no callback', async () => {
    const h = await connected(nbdkit('null', 'size=512'));
    h.killSubprocess(9);
    await waitFor(() => h.aioIsClosed() || h.aioIsDead(), 'libnbd to notice the dead server', 5000);
    const rec = new Recorder();
    let thrown: any;
    try {
      h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(0), rec.completion(0));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(NbdError);
    expect(thrown.code).toBe('EINVAL');
    expect(thrown.message).toMatch(/^nbd_aio_pread_structured: invalid state: (CLOSED|DEAD)/);
    await sleep(20);
    expect(rec.completions[0]).toEqual([]);
    expect(rec.chunks[0]).toBe(0);
    expect(h.aioInFlight()).toBe(0);
  });
});

// ================================================================ 3. GC

describe('garbage collection', () => {
  test('buffers held only by pending commands, and a dropped Handle, survive gc() until completion', async () => {
    const r = await runNode(['--expose-gc', join(FIXTURES, 'gc.js')], { timeoutMs: 15000 });
    expectCleanExit(r);
    expect(r.lines).toHaveLength(1);
    const s = r.lines[0];
    // gc() really ran while every command was still in flight.
    expect(s.completionsDuringGc).toEqual([0, 0, 0, 0, 0, 0]);
    expect(s.handleCollectedWhileInFlight).toBe(false);
    expect(s.completions).toBe(32);
    expect(s.errors).toEqual([]);
    expect(s.bufGone).toBe(0);
    expect(s.dataOk).toBe(32);
    expect(s.chunkOk).toBe(16);
    expect(s.handleGoneAtCompletion).toBe(false);
    // Once everything completed the handle is collectable (no leak).
    expect(s.handleCollectedAfter).toBe(true);
  });
});

test('a read the facade never recorded (JS stopped right after issuing it) keeps its buffer through gc() while libnbd writes into it, and lets it go with the next command', async () => {
  const r = await runNode(['--expose-gc', join(FIXTURES, 'gc-unrecorded.js')], { timeoutMs: 60000 });
  expectCleanExit(r);
  const held = { inFlight: true, data: true, released: true };
  expect(r.lines).toEqual([{ pread: held, preadStructured: held }]);
});

test('an idle handle whose event sink went through gc() still delivers every command', async () => {
  const r = await runNode(['--expose-gc', join(FIXTURES, 'idle-gc.js')], { timeoutMs: 15000 });
  expect(r.stderr).not.toMatch(CRASH);
  expect({ code: r.code, timedOut: r.timedOut }).toEqual({ code: 0, timedOut: false });
  expect(r.lines).toEqual([{ ok: 10 }]);
});

// ================================================================ 4. liveness

describe('process liveness', () => {
  test('an idle connected handle does not keep the process alive', async () => {
    const r = await runNode([join(FIXTURES, 'idle.js')], { timeoutMs: 10000 });
    expectCleanExit(r);
    expect(r.lines).toEqual([{ connected: true, size: 1048576, ready: true, inFlight: 0 }]);
    expect(r.ms).toBeLessThan(5000);
  });

  test('a handle that has finished its commands does not keep the process alive', async () => {
    const r = await runNode([join(FIXTURES, 'idle.js'), 'read'], { timeoutMs: 10000 });
    expectCleanExit(r);
    expect(r.lines).toEqual([{ connected: true, size: 1048576, ready: true, inFlight: 0 }]);
    expect(r.ms).toBeLessThan(5000);
  });

  test('a command in flight keeps the process alive until it completes', async () => {
    const r = await runNode([join(FIXTURES, 'inflight.js'), '1000'], { timeoutMs: 10000 });
    expectCleanExit(r);
    const byKind = Object.fromEntries(r.lines.map((l) => [l.kind, l]));
    expect(byKind.aio).toMatchObject({ error: 0, ok: true });
    expect(byKind.promise).toMatchObject({ ok: true });
    expect(byKind.aio.elapsed).toBeGreaterThanOrEqual(950);
    expect(byKind.promise.elapsed).toBeGreaterThanOrEqual(950);
    expect(byKind.exit).toEqual({ kind: 'exit', inFlight: 0 });
    expect(r.lines[r.lines.length - 1].kind).toBe('exit');
    expect(r.ms).toBeGreaterThanOrEqual(1000);
  });

  test('process.exit() with commands in flight exits cleanly', async () => {
    const r = await runNode([join(FIXTURES, 'inflight.js'), '10000', 'exit'], { timeoutMs: 10000 });
    expectCleanExit(r);
    expect(r.lines).toEqual([
      { kind: 'exiting', inFlight: 66 },
      { kind: 'exit', inFlight: 66 },
    ]);
    expect(r.ms).toBeLessThan(5000);
  });
});

// ================================================================ 5. worker_threads

describe('worker_threads', () => {
  test('terminating workers mid-I/O and mid-connect does not crash; a worker that reads exits normally', async () => {
    const r = await runNode([join(FIXTURES, 'workers.js')], { timeoutMs: 20000 });
    expectCleanExit(r);
    const terminated = r.lines.filter((l) => l.mode === 'terminate' || l.mode === 'terminate-unix');
    expect(terminated).toHaveLength(6);
    for (const t of terminated) {
      expect(t.errored).toBeNull();
      expect(t.messages).toEqual([{ state: 'inflight', inFlight: 256 }]);
      expect(t.code).toBe(1); // what worker.terminate() reports
    }
    const connecting = r.lines.find((l) => l.mode === 'connecting');
    expect(connecting).toMatchObject({ code: 1, errored: null, messages: [{ state: 'connecting' }] });
    const read = r.lines.find((l) => l.mode === 'read');
    expect(read).toMatchObject({ code: 0, errored: null, messages: [{ state: 'done', ok: true, size: 1048576 }] });
  });

  test('connectCommand from 16 workers at the same time: every server starts and answers', async () => {
    // connectCommand forks the server while fd 2's close-on-exec flag is
    // cleared (docs/architecture.md, "Connecting and closing"); the flag is
    // process-wide, so workers must not race on it.
    const r = await runNode([join(FIXTURES, 'workers.js'), 'concurrent'], { timeoutMs: 20000 });
    expectCleanExit(r);
    expect(r.lines).toHaveLength(16);
    const failures = r.lines.filter((l) => l.code !== 0 || l.errored !== null || l.messages[0]?.state !== 'done');
    expect(failures.map((l) => l.messages[0]?.error ?? l.errored)).toEqual([]);
    for (const l of r.lines) expect(l.messages).toEqual([{ state: 'done', ok: true }]);
  });
});

// ================================================================ 6. many commands

describe('many commands at once', () => {
  test('10,000 reads in flight all complete, each exactly once, with the right data', async () => {
    const N = 10000;
    const h = await connected(nbdkit('pattern', 'size=8M'));
    const big = Buffer.alloc(N * 512);
    const expected = pattern(0, N * 512);
    const completions = new Uint32Array(N);
    const chunks = new Uint32Array(N);
    const errors: [number, number][] = [];
    let badChunks = 0;
    let done = 0;
    const cookies = new Set<number>();
    for (let i = 0; i < N; i++) {
      const buf = big.subarray(i * 512, (i + 1) * 512);
      const completion = (err: { value: number }) => {
        completions[i]++;
        done++;
        if (err.value !== 0) errors.push([i, err.value]);
        return 0;
      };
      const cookie =
        i % 2 === 0
          ? h.aioPreadStructured(
              buf,
              i * 512,
              (subbuf, offset, status) => {
                chunks[i]++;
                const want = expected.subarray(offset as number, (offset as number) + subbuf.byteLength);
                if (offset !== i * 512 || subbuf.byteLength !== 512 || !Buffer.from(subbuf).equals(want) || status !== 1) {
                  badChunks++;
                }
                return 0;
              },
              completion,
            )
          : h.aioPread(buf, i * 512, completion);
      cookies.add(cookie);
    }
    expect(cookies.size).toBe(N);
    expect(h.aioInFlight() + done).toBe(N);
    await waitFor(() => done >= N, '10,000 completions', 20000);
    await sleep(20);

    expect(done).toBe(N);
    expect(completions.every((c) => c === 1)).toBe(true);
    expect(errors).toEqual([]);
    expect(badChunks).toBe(0);
    for (let i = 0; i < N; i++) {
      if (chunks[i] !== (i % 2 === 0 ? 1 : 0)) throw new Error(`command ${i}: ${chunks[i]} chunk callbacks`);
    }
    expect(big.equals(expected)).toBe(true);
    expect(h.aioInFlight()).toBe(0);
    // Completions returned 0: each one is retired exactly once, successfully.
    let retired = 0;
    for (const c of cookies) if (h.aioCommandCompleted(c)) retired++;
    expect(retired).toBe(N);
    for (const c of cookies) expect(h.aioCommandCompleted(c)).toBe(false);
  });
});

// ================================================================ 7. closure-lifetimes.c

describe('closure lifetimes (libnbd tests/closure-lifetimes.c)', () => {
  test('item 2: chunk once, then completion once; nothing before the read completes', async () => {
    const h = await connected(nbdkit('null', 'size=512'));
    const rec = new Recorder();
    const cookie = h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(0), rec.completion(0));
    expect(rec.log).toEqual([]); // nothing called before completion
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    await waitFor(() => rec.completed === 1, 'the completion', 5000);
    expect(rec.log).toEqual(['chunk 0', 'completion 0']);
    expect(h.aioCommandCompleted(cookie)).toBe(true);
    await sleep(20);
    expect(rec.chunks[0]).toBe(1);
    expect(rec.completions[0]).toEqual([0]);
  });

  test('item 3: delayed server, killSubprocess, close: completion exactly once (ENOTCONN)', async () => {
    const h = await connected(nbdkit('--filter=delay', 'null', 'size=512', 'delay-read=10'));
    const rec = new Recorder();
    h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(0), rec.completion(0));
    h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(1), rec.completion(1, 1));
    const t = Date.now();
    h.killSubprocess(0);
    h.close();
    expect(Date.now() - t).toBeLessThan(3000);
    await sleep(100);
    expect(rec.completions).toEqual([[ENOTCONN], [ENOTCONN]]);
    expect(rec.chunks).toEqual([0, 0]);
  });

  test('item 3, death noticed before close: close() does not call the completions again', async () => {
    const h = await connected(nbdkit('--filter=delay', 'null', 'size=512', 'delay-read=10'));
    const rec = new Recorder();
    // Completion returning 0 leaves it done-but-unretired at close time
    // (libnbd 1.18+ would call it a second time; the binding must not).
    h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(0), rec.completion(0, 0));
    h.aioPreadStructured(Buffer.alloc(512), 0, rec.chunk(1), rec.completion(1, 1));
    await sleep(50);
    h.killSubprocess(9); // (SIGTERM would make nbdkit reply ESHUTDOWN instead)
    await waitFor(() => rec.completed === 2, 'completions after the server died', 5000);
    h.close();
    await sleep(50);
    expect(rec.completions).toEqual([[ENOTCONN], [ENOTCONN]]);
    expect(rec.chunks).toEqual([0, 0]);
  });
});
