// `signal` on every Promise form: an aborted signal rejects at once with an
// AbortError (the signal's reason as cause) while the command completes in
// libnbd; an already-aborted signal issues nothing; one abort listener per
// signal; connects are closed when aborted. Symbol.asyncDispose / dispose.
import { getEventListeners } from 'node:events';
import { CMD_FLAG_FUA, Handle, NbdError, READ_DATA } from '../../lib';
import { connected, handle, nbdkit, pattern, startNbdkit, silentServer } from '../helpers/servers';
import { waitFor } from '../helpers/wait';
import { rejected, settled } from '../helpers/outcome';
import { collectUnhandledRejections } from '../helpers/unhandled';

collectUnhandledRejections();

// Node >= 20.4 defines Symbol.asyncDispose / Symbol.dispose as the registered
// symbols below in its main realm, but not in the vm context jest runs each
// test file in: TypeScript's `using` helpers look them up there.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');
(Symbol as { dispose?: symbol }).dispose ??= Symbol.for('nodejs.dispose');

function expectAbortError(e: unknown, reason: unknown): void {
  const err = e as { name: string; code: string; cause: unknown; message: string };
  expect(err.name).toBe('AbortError');
  expect(err.code).toBe('ABORT_ERR');
  expect(err.cause).toBe(reason);
  expect(err).toBeInstanceOf(Error);
}

const slowReads = () => nbdkit('--filter=delay', 'pattern', 'size=1M', 'delay-read=300ms');

describe('data commands', () => {
  test('aborting a pending pread rejects it at once with an AbortError; the read completes in libnbd and fills the pinned buffer', async () => {
    const h = await connected(slowReads());
    const ac = new AbortController();
    const buf = Buffer.alloc(4096);
    const p = settled(h.pread(buf, 8192, { signal: ac.signal }));
    expect(h.aioInFlight()).toBe(1);
    const reason = new Error('changed my mind');
    ac.abort(reason);
    const r = await p;
    expect(rejected(r)).toBe(true);
    expectAbortError(r.error, reason);
    // Rejected while the read is still in flight: "at once", not when it completes.
    expect(h.aioInFlight()).toBe(1);
    await waitFor(() => h.aioInFlight() === 0, 'the aborted read to complete');
    // libnbd still read into the buffer it was given.
    expect(buf.equals(pattern(8192, 4096))).toBe(true);
    // The handle stays usable.
    const again = Buffer.alloc(512);
    await h.pread(again, 0);
    expect(again.equals(pattern(0, 512))).toBe(true);
  });

  test('an already-aborted signal rejects without issuing the command', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const reason = 'stop';
    const signal = AbortSignal.abort(reason);
    const r = await settled(h.pwrite(Buffer.alloc(512, 0xee), 0, { signal }));
    expect(rejected(r)).toBe(true);
    expectAbortError(r.error, reason);
    expect(h.aioInFlight()).toBe(0);
    const back = Buffer.alloc(512, 1);
    await h.pread(back, 0);
    expect(back.equals(Buffer.alloc(512))).toBe(true); // nothing was written
  });

  test('every data Promise form takes { signal } (and { flags, signal } where it has flags)', async () => {
    const h2 = handle();
    h2.addMetaContext('base:allocation');
    await h2.connectCommand(nbdkit('memory', 'size=1M'));
    const forms: [string, (o: { signal: AbortSignal; flags?: number }) => Promise<unknown>][] = [
      ['pread', (o) => h2.pread(Buffer.alloc(512), 0, o)],
      ['preadStructured', (o) => h2.preadStructured(Buffer.alloc(512), 0, () => 0, o)],
      ['pwrite', (o) => h2.pwrite(Buffer.alloc(512), 0, { ...o, flags: CMD_FLAG_FUA })],
      ['flush', (o) => h2.flush(o)],
      ['trim', (o) => h2.trim(512, 0, o)],
      ['zero', (o) => h2.zero(512, 0, o)],
      ['cache', (o) => h2.cache(512, 0, o)],
      ['blockStatus', (o) => h2.blockStatus(512, 0, () => 0, o)],
    ];
    for (const [name, run] of forms) {
      const live = await settled(run({ signal: new AbortController().signal }));
      expect([name, rejected(live)]).toEqual([name, false]);
      const reason = Symbol(name);
      const aborted = await settled(run({ signal: AbortSignal.abort(reason) }));
      expect([name, rejected(aborted)]).toEqual([name, true]);
      expectAbortError(aborted.error, reason);
    }
    expect(h2.aioInFlight()).toBe(0);
  });

  test('a plain number is still the flags; { flags } works without a signal', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    await h.pwrite(Buffer.alloc(512, 1), 0, CMD_FLAG_FUA);
    await h.pwrite(Buffer.alloc(512, 2), 512, { flags: CMD_FLAG_FUA });
    await h.flush({});
    // libnbd still checks the flags: pread takes none.
    const r = await settled(h.pread(Buffer.alloc(512), 0, { flags: CMD_FLAG_FUA }));
    expect((r.error as NbdError).code).toBe('EINVAL');
  });

  test('a signal that is not an AbortSignal, or options of the wrong type, throw synchronously', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const buf = Buffer.alloc(512);
    for (const signal of [{}, 'x', 1, null, { aborted: false }]) {
      expect(() => h.pread(buf, 0, { signal: signal as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    }
    expect(() => h.pread(buf, 0, 'x' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => h.pread(buf, 0, null as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => h.pread(buf, 0, { flags: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => h.pread(buf, 0, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => h.optGo({ signal: {} as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => h.connectUri('nbd://x', 5 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(h.aioInFlight()).toBe(0);
  });

  test('many commands on one signal add one abort listener, removed once they settle', async () => {
    const h = await connected(nbdkit('memory', 'size=4M'));
    const ac = new AbortController();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const ps = [];
      for (let i = 0; i < 200; i++) ps.push(h.pread(Buffer.alloc(4096), i * 4096, { signal: ac.signal }));
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
      await Promise.all(ps);
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
      // And again, aborted half-way: every pending Promise rejects, no listener is left.
      const more = [];
      for (let i = 0; i < 200; i++) more.push(settled(h.pread(Buffer.alloc(4096), i * 4096, { signal: ac.signal })));
      const reason = new Error('enough');
      ac.abort(reason);
      const results = await Promise.all(more);
      for (const r of results) if (rejected(r)) expectAbortError(r.error, reason);
      expect(results.some((r) => rejected(r))).toBe(true);
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
      await waitFor(() => h.aioInFlight() === 0, 'the reads to complete');
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).toEqual([]);
  });

  test('callbacks of an aborted preadStructured or blockStatus are not called after the abort', async () => {
    const h = handle();
    h.addMetaContext('base:allocation');
    await h.connectCommand(nbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=300ms', 'delay-extents=300ms'));
    const ac = new AbortController();
    let chunks = 0;
    let extents = 0;
    const p1 = settled(h.preadStructured(Buffer.alloc(4096), 0, () => void chunks++, { signal: ac.signal }));
    const p2 = settled(h.blockStatus(4096, 0, () => void extents++, { signal: ac.signal }));
    ac.abort();
    expect(rejected(await p1)).toBe(true);
    expect(rejected(await p2)).toBe(true);
    await waitFor(() => h.aioInFlight() === 0, 'the commands to complete');
    expect([chunks, extents]).toEqual([0, 0]);
    // Without an abort, the same calls deliver their callbacks.
    const statuses: number[] = [];
    await h.preadStructured(Buffer.alloc(4096), 0, (_b, _o, status) => void statuses.push(status), { signal: new AbortController().signal });
    expect(statuses).toEqual([READ_DATA]);
  });

  test('closing the handle after an abort settles nothing twice and leaves no listener', async () => {
    const h = await connected(slowReads());
    const ac = new AbortController();
    const p = settled(h.pread(Buffer.alloc(512), 0, { signal: ac.signal }));
    ac.abort();
    h.close();
    expect(rejected(await p)).toBe(true);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });
});

describe('option negotiation, shutdown and connects', () => {
  test('opt Promise forms take { signal }', async () => {
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(nbdkit('memory', 'size=1M'));
    const reason = new Error('no list');
    const aborted = await settled(h.optList(() => 0, { signal: AbortSignal.abort(reason) }));
    expectAbortError(aborted.error, reason);
    let names = 0;
    expect(await h.optList(() => void names++, { signal: new AbortController().signal })).toBe(names);
    await h.optGo({ signal: new AbortController().signal });
    expect(h.aioIsReady()).toBe(true);
  });

  test('aborting a connect rejects it with an AbortError and closes the handle', async () => {
    const silent = await silentServer();
    const h = new Handle();
    const ac = new AbortController();
    const p = settled(h.connectUnix(silent.socket, { signal: ac.signal }));
    await waitFor(() => silent.accepted() === 1, 'the connection');
    const reason = new Error('too slow');
    ac.abort(reason);
    const r = await p;
    expect(rejected(r)).toBe(true);
    expectAbortError(r.error, reason);
    expect(h.closed).toBe(true);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  test('an already-aborted signal rejects a connect without starting it; the handle is left as it was', async () => {
    const h = handle();
    const r = await settled(h.connectCommand(nbdkit('memory', 'size=1M'), { signal: AbortSignal.abort() }));
    expect((r.error as Error).name).toBe('AbortError');
    expect(h.closed).toBe(false);
    expect(h.aioIsCreated()).toBe(true);
    await h.connectCommand(nbdkit('memory', 'size=1M'), { signal: new AbortController().signal });
    expect(h.getSize()).toBe(1048576);
  });

  test('aborting shutdown rejects it while the disconnect goes on', async () => {
    const server = await startNbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=300ms');
    const h = handle();
    await h.connectUnix(server.socket);
    const disconnects: unknown[] = [];
    h.on('disconnect', (e) => disconnects.push(e));
    // Sent before the disconnect (nbdkit may fail it ESHUTDOWN when the disconnect arrives).
    const read = settled(h.pread(Buffer.alloc(512), 0));
    const ac = new AbortController();
    const p = settled(h.shutdown({ signal: ac.signal }));
    ac.abort();
    expect(rejected(await p)).toBe(true);
    await read;
    await waitFor(() => disconnects.length === 1, "'disconnect'");
    expect(disconnects).toEqual([undefined]);
  });
});

describe('explicit resource management', () => {
  test('await using a connected handle shuts it down cleanly, then closes it', async () => {
    let outer: Handle | undefined;
    const disconnects: unknown[] = [];
    {
      await using h = new Handle();
      outer = h;
      await h.connectCommand(nbdkit('memory', 'size=1M'));
      h.on('disconnect', (e) => disconnects.push(e));
    }
    expect(outer.closed).toBe(true);
    expect(disconnects).toEqual([undefined]); // a clean shutdown, not just a close
  });

  test('Symbol.asyncDispose never throws: a closed handle, a dead connection, a handle never connected, one in negotiation', async () => {
    const closed = new Handle();
    closed.close();
    await closed[Symbol.asyncDispose]();

    const server = await startNbdkit('memory', 'size=1M');
    const dead = new Handle();
    await dead.connectUnix(server.socket);
    const gone = new Promise((r) => dead.once('disconnect', r));
    server.process.kill('SIGKILL');
    await gone;
    await dead[Symbol.asyncDispose]();
    expect(dead.closed).toBe(true);

    const fresh = new Handle();
    await fresh[Symbol.asyncDispose]();
    expect(fresh.closed).toBe(true);

    const negotiating = new Handle();
    negotiating.setOptMode(true);
    await negotiating.connectCommand(nbdkit('memory', 'size=1M'));
    expect(negotiating.aioIsNegotiating()).toBe(true);
    await negotiating[Symbol.asyncDispose]();
    expect(negotiating.closed).toBe(true);
  });

  test('using closes the handle (Symbol.dispose)', async () => {
    let outer: Handle | undefined;
    {
      using h = new Handle();
      outer = h;
      await h.connectCommand(nbdkit('memory', 'size=1M'));
    }
    expect(outer.closed).toBe(true);
    expect(() => outer!.getSize()).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});
