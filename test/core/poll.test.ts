// poll(): nbd_poll for an event loop, so that C's waiting loops port line by
// line (`while (!nbd_aio_command_completed (h, c)) nbd_poll (h, -1);`), and
// aioGetDirection(), the pure query C code uses beside it. Where libnbd
// refuses, the same scenario runs through libnbd's Python binding and the
// errors are compared.
import { join } from 'node:path';
import { AIO_DIRECTION_READ, Handle } from '../../lib';
import { runNode } from '../helpers/node-child';
import { connected, handle, nbdkit, pattern } from '../helpers/servers';
import { outcome, python as pythonOutcome, type Outcome } from '../helpers/outcome';
import { within } from '../helpers/wait';

/** Runs `script` with libnbd's Python binding after outcome.ts's prelude and NBDKIT (the argv of a private nbdkit). */
const python = <T>(script: string, ...args: string[]): Promise<T> =>
  pythonOutcome<T>(`NBDKIT = ['nbdkit', '-s', '--exit-with-parent']\n${script}`, ...args);

describe('poll(): C\'s waiting loops, line by line', () => {
  test('a pread: while (!aioCommandCompleted(c)) await poll(-1) ends with the data read, each poll resolving 1', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const buf = Buffer.alloc(65536);
    const c = h.aioPread(buf, 131072);
    const results: number[] = [];
    while (!h.aioCommandCompleted(c)) results.push(await h.poll(-1));
    expect(buf.equals(pattern(131072, 65536))).toBe(true);
    expect(results.every((r) => r === 1)).toBe(true);
    expect(h.aioInFlight()).toBe(0);
  });

  test('a failed pread: the loop ends with aioCommandCompleted throwing the command\'s error', async () => {
    const h = await connected(nbdkit('--filter=error', 'memory', 'size=1M', 'error=EIO', 'error-pread-rate=1'));
    const c = h.aioPread(Buffer.alloc(512), 0);
    const e = await outcome(async () => {
      while (!h.aioCommandCompleted(c)) await h.poll(-1);
    });
    expect(e[0]).toBe('err');
    expect(e[1]).toBe('EIO');
  });

  test('an option request: aioOptList, then while (aioIsConnecting()) await poll(-1), lists the exports and negotiates again', async () => {
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(nbdkit('--filter=exportname', 'memory', 'size=1M', 'exportname=a', 'exportname=b', 'exportname-list=explicit'));
    const names: string[] = [];
    let error = -1;
    h.aioOptList(
      (name) => {
        names.push(name);
        return 0;
      },
      (err) => {
        error = err.value;
        return 1;
      },
    );
    const results: number[] = [];
    while (h.aioIsConnecting()) results.push(await h.poll(-1));
    expect(names).toEqual(['a', 'b']);
    expect(error).toBe(0);
    expect(h.aioIsNegotiating()).toBe(true);
    expect(results.every((r) => r === 1)).toBe(true);
  });

  test('an aio connect: while (aioIsConnecting()) await poll(-1) ends connected', async () => {
    const h = handle();
    h.aioConnectCommand(nbdkit('pattern', 'size=1M'));
    while (h.aioIsConnecting()) expect(await h.poll(-1)).toBe(1);
    expect(h.aioIsReady()).toBe(true);
    expect(h.getSize()).toBe(1024 * 1024);
  });
});

describe('poll(): timeouts', () => {
  test('poll(0) with nothing to do resolves 0 promptly', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const started = Date.now();
    expect(await h.poll(0)).toBe(0);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('poll(300) with nothing to do resolves 0 after about 300 ms', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const started = Date.now();
    expect(await h.poll(300)).toBe(0);
    const ms = Date.now() - started;
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(5000);
  });

  test('a poll with a timeout resolves 1 before it when the driver runs libnbd', async () => {
    const h = await connected(nbdkit('--filter=delay', 'memory', 'size=1M', 'rdelay=200ms'));
    const c = h.aioPread(Buffer.alloc(512), 0);
    const started = Date.now();
    let result = 0;
    while (result === 0) result = await h.poll(20000);
    expect(Date.now() - started).toBeLessThan(10000);
    while (!h.aioCommandCompleted(c)) await h.poll(-1);
  });

  test('bad timeouts throw Node\'s TypeError and RangeError before anything reaches libnbd', () => {
    const h = handle();
    for (const [value, code] of [
      ['1', 'ERR_INVALID_ARG_TYPE'],
      [undefined, 'ERR_INVALID_ARG_TYPE'],
      [1.5, 'ERR_OUT_OF_RANGE'],
      [2 ** 31, 'ERR_OUT_OF_RANGE'],
      [NaN, 'ERR_OUT_OF_RANGE'],
    ] as const) {
      let thrown: unknown;
      try {
        void h.poll(value as number);
      } catch (e) {
        thrown = e;
      }
      expect([value, (thrown as { code?: string } | undefined)?.code]).toEqual([value, code]);
    }
  });

  test('without a timeout, a poll on an idle handle does not keep the process alive', async () => {
    const common = join(__dirname, '..', 'fixtures', 'common');
    const script = `
      const { Handle, nbdkit, report } = require(${JSON.stringify(common)});
      const h = new Handle();
      globalThis.keep = h;
      h.connectCommand(nbdkit('memory', 'size=1M')).then(() => {
        h.poll(-1).then((r) => report({ resolved: r }), (e) => report({ rejected: e.code }));
        report({ polling: true });
      });`;
    const r = await runNode(['-e', script], { timeoutMs: 10000 });
    expect({ code: r.code, timedOut: r.timedOut, lines: r.lines }).toEqual({ code: 0, timedOut: false, lines: [{ polling: true }] });
  });
});

describe('poll(): failures', () => {
  test('on a created handle: nbd_poll\'s EINVAL and message, as in Python', async () => {
    const js = await outcome(() => handle().poll(-1));
    const py = await python<Outcome>(`
h = nbd.NBD()
print(json.dumps(outcome(lambda: h.poll(-1))))`);
    expect(js[0]).toBe('err');
    expect(js[1]).toBe('EINVAL');
    expect(js).toEqual(py);
  });

  test('while negotiating with nothing in flight: nbd_poll\'s EINVAL and message, as in Python', async () => {
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(nbdkit('memory', 'size=1M'));
    const js = await outcome(() => h.poll(0));
    const py = await python<Outcome>(`
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(NBDKIT + ['memory', 'size=1M'])
print(json.dumps(outcome(lambda: h.poll(0))))`);
    expect(js[0]).toBe('err');
    expect(js).toEqual(py);
  });

  test('the server killed under an idle handle: poll(-1) resolves 1, the next one fails as in Python', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    h.killSubprocess(9);
    const first = await outcome(() => within(h.poll(-1), 10000));
    const second = await outcome(() => h.poll(0));
    const state = h.connectionState().split(':')[0];
    const py = await python<[Outcome, string, Outcome]>(`
h = nbd.NBD(); h.connect_command(NBDKIT + ['memory', 'size=1M'])
h.kill_subprocess(9)
first = outcome(lambda: h.poll(-1))
print(json.dumps([first, h.connection_state().split(':')[0], outcome(lambda: h.poll(0))]))`);
    expect(first).toEqual(['ok', 1]);
    expect([first, state, second]).toEqual(py);
  });

  test('the handle closed while a poll waits: it rejects with ENOTCONN', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const p = h.poll(-1);
    h.close();
    const e = await outcome(() => within(p, 5000));
    expect(e[0]).toBe('err');
    expect(e[1]).toBe('ENOTCONN');
    expect(e[2]).toMatch(/^nbd_poll: handle closed/);
  });

  test('after close(): rejects with EINVAL "handle is closed", as every call does', async () => {
    const h = handle();
    h.close();
    expect(await outcome(() => h.poll(0))).toEqual(['err', 'EINVAL', 'handle is closed']);
  });
});

describe('poll(): many at once', () => {
  test('concurrent polls all settle: without a timeout with 1 once the driver ran, with one with 0 or 1', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const polls: Promise<number>[] = [];
    for (let i = 0; i < 100; i++) polls.push(h.poll(-1));
    const timed: Promise<number>[] = [];
    for (let i = 0; i < 100; i++) timed.push(h.poll(i % 2 === 0 ? 0 : 50));
    const cookies: number[] = [];
    for (let i = 0; i < 32; i++) cookies.push(h.aioPread(Buffer.alloc(4096), i * 4096));
    expect(await within(Promise.all(polls), 10000)).toEqual(polls.map(() => 1));
    const settled = await within(Promise.all(timed), 10000);
    expect(settled).not.toBe('pending');
    expect((settled as number[]).every((r) => r === 0 || r === 1)).toBe(true);
    for (const c of cookies) while (!h.aioCommandCompleted(c)) await h.poll(-1);
    expect(h.aioInFlight()).toBe(0);
  });

  test('polls begun in a completion callback wait for the next run, not the one being delivered', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    let inner: Promise<number> | undefined;
    const c = h.aioPread(Buffer.alloc(512), 0, () => {
      inner = h.poll(-1);
      return 0;
    });
    while (!h.aioCommandCompleted(c)) await h.poll(-1);
    expect(await within(inner!, 200)).toBe('pending');
    const next = h.aioPread(Buffer.alloc(512), 512);
    expect(await within(inner!, 10000)).toBe(1);
    while (!h.aioCommandCompleted(next)) await h.poll(-1);
  });
});

describe('aioGetDirection()', () => {
  test('libnbd\'s answer as in Python: created, connected and idle, negotiating', async () => {
    const created = handle();
    const ready = await connected(nbdkit('memory', 'size=1M'));
    const negotiating = handle();
    negotiating.setOptMode(true);
    await negotiating.connectCommand(nbdkit('memory', 'size=1M'));
    const js = [created.aioGetDirection(), ready.aioGetDirection(), negotiating.aioGetDirection()];
    const py = await python<number[]>(`
created = nbd.NBD()
ready = nbd.NBD(); ready.connect_command(NBDKIT + ['memory', 'size=1M'])
negotiating = nbd.NBD(); negotiating.set_opt_mode(True); negotiating.connect_command(NBDKIT + ['memory', 'size=1M'])
print(json.dumps([created.aio_get_direction(), ready.aio_get_direction(), negotiating.aio_get_direction()]))`);
    expect(js).toEqual(py);
    expect(js[1] & AIO_DIRECTION_READ).toBe(AIO_DIRECTION_READ);
  });

  test('on a closed handle: EINVAL "handle is closed"', () => {
    const h: Handle = handle();
    h.close();
    expect(() => h.aioGetDirection()).toThrow(expect.objectContaining({ code: 'EINVAL', message: 'handle is closed' }));
  });
});
