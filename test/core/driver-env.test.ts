// LIBNBD_DRIVER picks the driver of handles made without `driver` (and of
// the connections copy() and Pool open). jest's projects set it per run
// (test/helpers/driver-*.js); these tests change it and put it back.
import { readdirSync } from 'node:fs';
import { Handle, Pool, copy, defaultDriver } from '../../lib';
import { startNbdkit } from '../helpers/servers';

const original = process.env.LIBNBD_DRIVER;
afterEach(() => {
  if (original === undefined) delete process.env.LIBNBD_DRIVER;
  else process.env.LIBNBD_DRIVER = original;
});

const badDriver = {
  name: 'TypeError',
  code: 'ERR_INVALID_ARG_VALUE',
  message: `The environment variable LIBNBD_DRIVER must be 'loop' or 'thread' (or unset). Received "bogus"`,
};

describe('LIBNBD_DRIVER', () => {
  test("names the default driver: 'loop' or 'thread'", () => {
    process.env.LIBNBD_DRIVER = 'thread';
    expect(defaultDriver()).toBe('thread');
    process.env.LIBNBD_DRIVER = 'loop';
    expect(defaultDriver()).toBe('loop');
  });

  test("unset or empty, leaves the default driver 'loop'", () => {
    delete process.env.LIBNBD_DRIVER;
    expect(defaultDriver()).toBe('loop');
    process.env.LIBNBD_DRIVER = '';
    expect(defaultDriver()).toBe('loop');
  });

  test('with any other value, makes taking the default driver throw ERR_INVALID_ARG_VALUE naming the accepted values', () => {
    process.env.LIBNBD_DRIVER = 'bogus';
    expect(() => defaultDriver()).toThrow(expect.objectContaining(badDriver));
  });

  test('with a bad value, makes new Handle() without a driver throw, and is not read when the driver is given', () => {
    process.env.LIBNBD_DRIVER = 'bogus';
    expect(() => new Handle()).toThrow(expect.objectContaining(badDriver));
    const h = new Handle({ driver: 'thread' });
    h.close();
  });

  test('with a bad value, makes copy() without options.driver throw at once, before it opens anything', () => {
    process.env.LIBNBD_DRIVER = 'bogus';
    expect(() => copy('nbd+unix:///?socket=/nonexistent/nbd.sock', '/nonexistent/out.img')).toThrow(
      expect.objectContaining(badDriver),
    );
  });

  test('with a bad value, makes Pool.connect() without options.driver throw at once, before it opens anything', () => {
    process.env.LIBNBD_DRIVER = 'bogus';
    expect(() => Pool.connect('nbd+unix:///?socket=/nonexistent/nbd.sock')).toThrow(expect.objectContaining(badDriver));
  });
});

/** Threads of this process: the thread driver starts one per connected handle. */
const threads = (): number => readdirSync('/proc/self/task').length;

describe('Pool without options.driver', () => {
  // A loop-driver connect first: libuv's thread pool (where the loop driver
  // connects) starts its threads once, before the count below.
  beforeAll(async () => {
    const server = await startNbdkit('memory', 'size=1M');
    const h = new Handle({ driver: 'loop' });
    await h.connectUri(server.uri);
    h.close();
  });

  test("puts its connections on the 'thread' driver when LIBNBD_DRIVER is unset: one I/O thread each", async () => {
    delete process.env.LIBNBD_DRIVER;
    const server = await startNbdkit('memory', 'size=1M');
    const before = threads();
    const p = await Pool.connect(server.uri, { connections: 2 });
    expect(threads() - before).toBe(2);
    await p.close();
  });

  test("follows LIBNBD_DRIVER when it is set: 'loop' starts no thread", async () => {
    process.env.LIBNBD_DRIVER = 'loop';
    const server = await startNbdkit('memory', 'size=1M');
    const before = threads();
    const p = await Pool.connect(server.uri, { connections: 2 });
    expect(threads() - before).toBe(0);
    await p.close();
  });
});
