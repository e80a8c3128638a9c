// Connecting by every transport, what the handle reports afterwards, and the
// errors of a handle that is not connected (python/t/610, errors-not-connected).
import { Handle, NbdError, getVersion } from '../../lib';
import { connected, handle, nbdkit, pattern, startNbdkit, startNbdkitTcp, sparseFile } from '../helpers/servers';

describe('connecting', () => {
  test('connectCommand to a plain `nbdkit -s` (fd 2 must reach the server)', async () => {
    const h = handle();
    await h.connectCommand(['nbdkit', '-s', 'memory', 'size=1M']);
    expect(h.getSize()).toBe(1048576);
    expect(h.aioIsReady()).toBe(true);
  });

  test('connectUnix and connectUri reach the same export', async () => {
    const srv = await startNbdkit('pattern', 'size=64K');
    const a = handle();
    await a.connectUnix(srv.socket);
    const b = handle();
    await b.connectUri(srv.uri);
    expect(a.getSize()).toBe(65536);
    expect(b.getSize()).toBe(65536);
    const buf = Buffer.alloc(4096);
    await b.pread(buf, 8192);
    expect(buf.equals(pattern(8192, 4096))).toBe(true);
  });

  test('connectTcp to nbdkit on a loopback port', async () => {
    const port = String(20000 + (process.pid % 20000));
    await startNbdkitTcp(port, 'memory', 'size=2M');
    const h = handle();
    await h.connectTcp('127.0.0.1', port);
    expect(h.getSize()).toBe(2 * 1024 * 1024);
  });

  test('connectSystemdSocketActivation with qemu-nbd', async () => {
    const file = sparseFile(12288, [[0, 4096]]);
    const h = handle();
    await h.connectSystemdSocketActivation(['qemu-nbd', '-f', 'raw', file]);
    expect(h.getSize()).toBe(12288);
  });

  test('a failed connect rejects with libnbd\'s error', async () => {
    const h = handle();
    const err = await h.connectUnix('/nonexistent/socket').catch((e) => e);
    expect(err).toBeInstanceOf(NbdError);
    expect(err.code).toBe('ENOENT');
    expect(err.message).toMatch(/^nbd_connect_unix: /);
  });

  test('a server that exits during the handshake fails the connect', async () => {
    const h = handle();
    const err = await h.connectCommand(['sh', '-c', 'exit 0']).catch((e) => e);
    expect(err).toBeInstanceOf(NbdError);
    expect(h.aioIsDead()).toBe(true);
  });

  test('connecting twice is libnbd\'s EINVAL (errors-connect-twice)', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const err = await h.connectCommand(nbdkit('memory', 'size=1M')).catch((e) => e);
    expect(err).toMatchObject({ code: 'EINVAL' });
  });

  test('the handle reports the negotiated export', async () => {
    const h = await connected(nbdkit('memory', 'size=3M'), { bigint: true });
    expect(h.getSize()).toBe(3n * 1024n * 1024n);
    expect(h.getProtocol()).toBe('newstyle-fixed');
    expect(h.getStructuredRepliesNegotiated()).toBe(true);
    expect(h.canDf()).toBe(true);
    expect(h.isReadOnly()).toBe(false);
    expect(getVersion()).toMatch(/^1\.\d+\.\d+/);
  });
});

describe('a handle that is not connected (python/t/610, errors-not-connected)', () => {
  test('pread fails with ENOTCONN and libnbd has zeroed the buffer', async () => {
    const h = new Handle();
    const buf = Buffer.alloc(512, 0xff);
    const err = await h.pread(buf, 0).catch((e) => e);
    expect(err).toBeInstanceOf(NbdError);
    expect(err.errno).toBe(107);
    expect(err.code).toBe('ENOTCONN');
    expect(err.message).toMatch(/^nbd_pread: invalid state: /); // the sync call's name, as in C
    expect(buf[0]).toBe(0);
    h.close();
  });

  test('getSize before connecting is an NbdError, not a crash', () => {
    const h = new Handle();
    expect(() => h.getSize()).toThrow(NbdError);
    h.close();
  });

  test('settings round-trip before connecting', () => {
    const h = new Handle();
    h.setExportName('disk');
    expect(h.getExportName()).toBe('disk');
    h.setRequestStructuredReplies(false);
    expect(h.getRequestStructuredReplies()).toBe(false);
    h.setPreadInitialize(false);
    expect(h.getPreadInitialize()).toBe(false);
    h.setHandleName('mine');
    expect(h.getHandleName()).toBe('mine');
    expect(h.aioIsCreated()).toBe(true);
    h.close();
  });
});


