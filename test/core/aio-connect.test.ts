// The aio connects (issue 11): C code that calls nbd_aio_connect_* and polls
// nbd_aio_is_connecting() ports line by line. Each transport against a real
// server, on the driver of this project (jest.config.js runs every file once
// per driver).
import { Handle, NbdError } from '../../lib';
import {
  handle,
  nbdkit,
  pattern,
  sparseFile,
  startNbdkit,
  startNbdkitTcp,
} from '../helpers/servers';
import { serverSocketFd, stopSocketFdServers } from '../helpers/socket-fd';

/** Polls as a C program would (here: one event-loop turn per poll); returns the polls made. */
async function whileConnecting(h: Handle): Promise<number> {
  const until = Date.now() + 20000;
  let polls = 0;
  while (h.aioIsConnecting()) {
    if (Date.now() > until) throw new Error(`still connecting: ${h.connectionState()}`);
    polls++;
    await new Promise((r) => setImmediate(r));
  }
  return polls;
}

/**
 * Right after a successful aio connect call: connecting. With the loop driver
 * nothing can move the handshake on before JS returns to the loop; the
 * thread driver's I/O thread may already have finished it.
 */
function expectConnectingNow(h: Handle): void {
  if (process.env.LIBNBD_DRIVER === 'thread') expect(h.aioIsConnecting() || h.aioIsReady()).toBe(true);
  else expect(h.aioIsConnecting()).toBe(true);
}

/** The 'connect' event of the handle's next aio connect. */
function connectEvent(h: Handle): Promise<NbdError | undefined> {
  return new Promise((resolve) => h.once('connect', resolve));
}

async function expectPatternRead(h: Handle, offset: number): Promise<void> {
  const buf = Buffer.alloc(4096);
  await h.pread(buf, offset);
  expect(buf.equals(pattern(offset, 4096))).toBe(true);
}

describe('aio connects: poll aioIsConnecting() until ready', () => {
  test('aioConnectUnix: connecting from the return, then ready; the data reads back', async () => {
    const srv = await startNbdkit('pattern', 'size=1M');
    const h = handle();
    const event = connectEvent(h);
    expect(h.aioConnectUnix(srv.socket)).toBeUndefined();
    expectConnectingNow(h);
    expect(h.aioIsCreated()).toBe(false);
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(true);
    expect(h.aioIsDead()).toBe(false);
    expect(await event).toBeUndefined();
    await expectPatternRead(h, 65536);
  });

  test('aioConnectUri', async () => {
    const srv = await startNbdkit('pattern', 'size=1M');
    const h = handle();
    h.aioConnectUri(srv.uri);
    expectConnectingNow(h);
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(true);
    await expectPatternRead(h, 8192);
  });

  test('aioConnectTcp on 127.0.0.1 (the name lookup runs off the JS thread)', async () => {
    const port = String(21000 + (process.pid % 20000));
    await startNbdkitTcp(port, 'pattern', 'size=1M');
    const h = handle();
    h.aioConnectTcp('127.0.0.1', port);
    expectConnectingNow(h);
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(true);
    expect(h.getSize()).toBe(1048576);
    await expectPatternRead(h, 4096);
  });

  test('aioConnectCommand with `nbdkit -s`', async () => {
    const h = handle();
    h.aioConnectCommand(nbdkit('pattern', 'size=1M'));
    expectConnectingNow(h);
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(true);
    await expectPatternRead(h, 0);
  });

  test('aioConnectSystemdSocketActivation with qemu-nbd', async () => {
    const file = sparseFile(12288, [[0, 4096]]);
    const h = handle();
    h.aioConnectSystemdSocketActivation(['qemu-nbd', '-f', 'raw', file]);
    expectConnectingNow(h);
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(true);
    expect(h.getSize()).toBe(12288);
    const buf = Buffer.alloc(4096);
    await h.pread(buf, 0);
    expect(buf.every((b) => b === 0xab)).toBe(true);
  });

  describe('aioConnectSocket', () => {
    afterAll(stopSocketFdServers);

    test('over a connected socket fd whose peer is `nbdkit -s`', async () => {
      const { fd } = await serverSocketFd('pattern', 'size=1M');
      const h = handle();
      h.aioConnectSocket(fd);
      expectConnectingNow(h);
      await whileConnecting(h);
      expect(h.aioIsReady()).toBe(true);
      await expectPatternRead(h, 12288);
    });
  });

  test('aioConnectVsock to a port nobody listens on fails: not connecting, dead, the error emitted', async () => {
    // With /dev/vsock: refused (or reset) once connect(2) ran; without: the socket cannot be made.
    const h = handle();
    const event = connectEvent(h);
    h.aioConnectVsock(2, 1);
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(false);
    const err = await event;
    expect(err).toBeInstanceOf(NbdError);
    expect(err!.message).toMatch(/^nbd_aio_connect_vsock: /);
    expect(h.aioIsDead() || h.aioIsCreated()).toBe(true);
  });
});

describe('aio connect failures (C returns -1 from the call)', () => {
  test('a refused connect: the state ends dead and the event carries libnbd\'s error', async () => {
    const h = handle();
    const event = connectEvent(h);
    h.aioConnectUnix('/nonexistent/socket');
    // The call may have failed already (it fails at once: C's -1), never created again.
    expect(h.aioIsConnecting() || h.aioIsDead()).toBe(true);
    expect(h.aioIsCreated()).toBe(false);
    await whileConnecting(h);
    const err = await event;
    expect(err).toBeInstanceOf(NbdError);
    expect(err!.code).toBe('ENOENT');
    expect(err!.message).toMatch(/^nbd_aio_connect_unix: /);
    expect(h.aioIsDead()).toBe(true);
  });

  test('arguments libnbd refuses (a bad URI): the handle is still newly created', async () => {
    const h = handle();
    const event = connectEvent(h);
    h.aioConnectUri('nbd://[bad');
    await whileConnecting(h);
    const err = await event;
    expect(err).toBeInstanceOf(NbdError);
    expect(err!.message).toMatch(/^nbd_aio_connect_uri: /);
    expect(h.aioIsCreated()).toBe(true);
  });

  test('a handle that is not newly created throws libnbd\'s EINVAL at once, as C\'s -1', async () => {
    const srv = await startNbdkit('memory', 'size=1M');
    const h = handle();
    h.aioConnectUnix(srv.socket);
    // A second connect while the first is queued or running.
    expect(() => h.aioConnectUnix(srv.socket)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    await whileConnecting(h);
    expect(h.aioIsReady()).toBe(true);
    let err: unknown;
    try {
      h.aioConnectUri(srv.uri);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NbdError);
    expect((err as NbdError).message).toMatch(/^nbd_aio_connect_uri: invalid state: READY: the handle must be newly created/);
    expect(h.aioIsReady()).toBe(true);
  });

  test('bad JS arguments throw before anything starts', () => {
    const h = handle();
    expect(() => h.aioConnectTcp('localhost', {} as unknown as string)).toThrow(TypeError);
    expect(() => h.aioConnectSocket(-1)).toThrow(RangeError);
    expect(h.aioIsCreated()).toBe(true);
  });

  test('close() while an aio connect runs: no event, no hang', async () => {
    const h = handle();
    let events = 0;
    h.on('connect', () => events++);
    h.aioConnectCommand(nbdkit('memory', 'size=1M'));
    h.close();
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toBe(0);
  });
});
