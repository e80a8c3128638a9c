// nbd_shutdown's and nbd_opt_abort's meaning, checked against libnbd's
// Python binding on the same servers: SHUTDOWN_ABANDON_PENDING (libnbd's
// tests/shutdown-flags.c), shutdown while negotiating (libnbd >= 1.16's rule,
// which the binding applies on every version), libnbd's flag check, an abort
// against a server that is not fixed newstyle, and close() during a
// shutdown that waits for a stopped server.
import { constants } from 'node:os';
import { Handle, SHUTDOWN_ABANDON_PENDING, getVersion } from '../../lib';
import { asJson, failure, outcome, python } from '../helpers/outcome';
import { connected, handle, nbdkit, startNbdkit } from '../helpers/servers';
import { waitFor } from '../helpers/wait';

const minor = Number(getVersion().split('.')[1]);
const SIGSTOP = 19;
const SIGCONT = 18;
const TWO_MIB = 2 * 1024 * 1024;
const { ENOTCONN } = constants.errno;

describe('SHUTDOWN_ABANDON_PENDING', () => {
  // Two 2 MiB writes to a stopped server: the first fills the socket, the
  // second stays on the client. Then the server resumes and shutdown runs.
  // Each side reports [shutdown's outcome, the second write's errors, in
  // flight after it, whether the first completed (its outcome is the
  // server's: nbdkit may answer ESHUTDOWN once it has NBD_CMD_DISC), closed].
  const py = (flags: number) =>
    python(
      `
h = nbd.NBD()
h.connect_command(sys.argv[2:])
h.kill_subprocess(${SIGSTOP})
buf = bytearray(${TWO_MIB})
first = h.aio_pwrite(buf, 0)
second = []
def done(err):
    second.append(err.value)
    return 1
h.aio_pwrite(buf, 0, completion=done)
h.kill_subprocess(${SIGCONT})
r = outcome(lambda: h.shutdown(int(sys.argv[1])))
first_done = outcome(lambda: h.aio_command_completed(first))
print(json.dumps([r, second, h.aio_in_flight(), first_done != ['ok', False], h.aio_is_closed()]))`,
      String(flags),
      ...nbdkit('memory', 'size=2m'),
    );

  async function js(flags: number): Promise<unknown> {
    const h = await connected(nbdkit('memory', 'size=2m'));
    h.killSubprocess(SIGSTOP);
    const buf = Buffer.alloc(TWO_MIB);
    const first = h.aioPwrite(buf, 0);
    const second: number[] = [];
    h.aioPwrite(buf, 0, (err) => {
      second.push(err.value);
      return 1;
    });
    h.killSubprocess(SIGCONT);
    const r = await outcome(() => h.shutdown(flags));
    const firstDone = await outcome(() => h.aioCommandCompleted(first));
    return asJson([r, second, h.aioInFlight(), firstDone[0] === 'err' || firstDone[1] === true, h.aioIsClosed()]);
  }

  test('fails the write still queued on the client with ENOTCONN and finishes the one being sent, as libnbd', async () => {
    const expected = await py(SHUTDOWN_ABANDON_PENDING);
    expect(expected).toEqual([['ok', null], [ENOTCONN], 0, true, true]);
    expect(await js(SHUTDOWN_ABANDON_PENDING)).toEqual(expected);
  });

  test('without it, the queued write is sent (the server answers it), as libnbd', async () => {
    // Sent: the server's answer, success or ESHUTDOWN, never the client's ENOTCONN.
    const sent = ([r, second, ...rest]: any[]) => [r, second.length === 1 && second[0] !== ENOTCONN, ...rest];
    const expected = sent(await py(0));
    expect(expected).toEqual([['ok', null], true, 0, true, true]);
    expect(sent((await js(0)) as any[])).toEqual(expected);
  });

  test('close() during a shutdown waiting for a stopped server returns at once and rejects it ENOTCONN', async () => {
    const server = await startNbdkit('memory', 'size=2m');
    const h = handle();
    await h.connectUri(server.uri);
    process.kill(server.process.pid!, 'SIGSTOP');
    try {
      const writes = [h.pwrite(Buffer.alloc(TWO_MIB), 0), h.pwrite(Buffer.alloc(TWO_MIB), 0)];
      const settled = writes.map((p) => outcome(() => p));
      const shutdown = outcome(() => h.shutdown(SHUTDOWN_ABANDON_PENDING));
      await new Promise((r) => setTimeout(r, 50)); // nbd_shutdown is waiting for the server
      const start = process.hrtime.bigint();
      h.close();
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      expect(ms).toBeLessThan(1000);
      const [s, ...w] = await Promise.all([shutdown, ...settled]);
      expect(s.slice(0, 2)).toEqual(['err', 'ENOTCONN']);
      // Each write settled once, with an error: none reached the stopped server whole.
      for (const o of w) expect(o[0]).toBe('err');
    } finally {
      process.kill(server.process.pid!, 'SIGCONT');
    }
  });
});

describe('shutdown while negotiating', () => {
  async function negotiating(): Promise<Handle> {
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(nbdkit('null'));
    expect(h.aioIsNegotiating()).toBe(true);
    return h;
  }

  test('aborts the option phase: it resolves and the connection is closed, as libnbd >= 1.16', async () => {
    const h = await negotiating();
    const r = asJson(await outcome(() => h.shutdown()));
    const js = [r, h.aioIsClosed(), h.aioIsDead()];
    expect(js).toEqual([['ok', null], true, false]);
    if (minor >= 16) {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(sys.argv[1:])
print(json.dumps([outcome(lambda: h.shutdown()), h.aio_is_closed(), h.aio_is_dead()]))`,
        ...nbdkit('null'),
      );
      expect(js).toEqual(py);
    }
  });

  test('an unknown flag fails EINVAL with libnbd\'s words, and the handle stays negotiating', async () => {
    const h = await negotiating();
    const e = await failure(() => h.shutdown(1));
    expect([e.code, e.message]).toEqual(['EINVAL', 'nbd_shutdown: flags: invalid value for flag: 0x1: Invalid argument']);
    expect(h.aioIsNegotiating()).toBe(true);
    if (minor >= 16) {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(sys.argv[1:])
print(json.dumps([outcome(lambda: h.shutdown(1)), h.aio_is_negotiating()]))`,
        ...nbdkit('null'),
      );
      expect(asJson(['err', e.code, e.message])).toEqual(py[0]);
      expect(py[1]).toBe(true);
    }
  });
});

test('an unknown flag on a connected handle fails as nbd_shutdown fails it', async () => {
  const argv = nbdkit('memory', 'size=1M');
  const py = await python(
    `
h = nbd.NBD(); h.connect_command(sys.argv[1:])
print(json.dumps([outcome(lambda: h.shutdown(2)), h.aio_is_ready()]))`,
    ...argv,
  );
  const h = await connected(argv);
  expect([asJson(await outcome(() => h.shutdown(2))), h.aioIsReady()]).toEqual(py);
});

describe('optAbort', () => {
  test('against a server that is not fixed newstyle resolves and leaves the handle dead, as nbd_opt_abort', async () => {
    const argv = nbdkit('--mask-handshake', '0', 'null');
    const py = await python(
      `
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(sys.argv[1:])
print(json.dumps([outcome(lambda: h.opt_abort()), h.aio_is_dead()]))`,
      ...argv,
    );
    expect(py).toEqual([['ok', null], true]);
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(argv);
    const events: unknown[] = [];
    h.on('disconnect', (e) => events.push(e));
    expect([asJson(await outcome(() => h.optAbort())), h.aioIsDead()]).toEqual(py);
    // The abort was asked for and did what libnbd says it did: a clean end.
    await waitFor(() => events.length === 1, "'disconnect'");
    expect(events).toEqual([undefined]);
  });
});
