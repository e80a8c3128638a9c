// LIBNBD_DRIVER picks the driver of handles made without `driver` (and of
// the connections copy() opens). jest's projects set it per run
// (test/helpers/driver-*.js); these tests change it and put it back.
import { Handle, copy, defaultDriver } from '../lib';

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
});
