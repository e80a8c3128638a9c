// Cookies, command tracking and libnbd's synchronous argument errors
// (errors-bad-cookie, client-zerosize, client-oversize, client-unknown-flags,
// python/t/500-aio-pread), and the binding's own argument checks.
import {
  CMD_FLAG_DF,
  CMD_FLAG_FUA,
  CMD_FLAG_MASK,
  Handle,
  NbdError,
  STRICT_BOUNDS,
  STRICT_FLAGS,
  STRICT_ZERO_SIZE,
} from '../../lib';
import { connected, nbdkit, pattern } from '../helpers/servers';

/** Resolves once `cookie` has been seen completing (completion callback ran). */
function issueAndWait(h: Handle, issue: (done: () => void) => number): Promise<number> {
  return new Promise((resolve) => {
    const cookie = issue(() => setImmediate(() => resolve(cookie)));
  });
}

describe('cookies and command tracking', () => {
  let h: Handle;
  beforeAll(async () => {
    h = await connected(nbdkit('pattern', 'size=1024'));
  });

  test('aioPread into a Buffer, retired with aioCommandCompleted (python/t/500)', async () => {
    const buf = Buffer.alloc(512);
    const cookie = h.aioPread(buf, 0);
    expect(cookie).toBeGreaterThanOrEqual(1);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    while (!h.aioCommandCompleted(cookie)) await new Promise((r) => setImmediate(r));
    expect(buf.equals(pattern(0, 512))).toBe(true);
    // Reusing the buffer at another offset.
    const c2 = h.aioPread(buf, 512);
    while (!h.aioCommandCompleted(c2)) await new Promise((r) => setImmediate(r));
    expect(buf.equals(pattern(512, 512))).toBe(true);
  });

  test('any ArrayBufferView works, at its own byteOffset', async () => {
    const backing = new ArrayBuffer(1024);
    const view = new Uint32Array(backing, 256, 64); // 256 bytes at 256
    await h.pread(view, 64);
    expect(Buffer.from(backing, 256, 256).equals(pattern(64, 256))).toBe(true);
    expect(Buffer.from(backing, 0, 256).every((b) => b === 0)).toBe(true);
    const dv = new DataView(backing, 512, 8);
    await h.pread(dv, 8);
    expect(dv.getBigUint64(0)).toBe(8n);
  });

  test('cookies increase and are never reused', async () => {
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      seen.push(await issueAndWait(h, (done) => h.aioPread(Buffer.alloc(8), 0, () => (done(), 1))));
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
  });

  test('cookie 0 is libnbd\'s EINVAL (errors-bad-cookie); unknown cookies are false', () => {
    let err: unknown;
    try {
      h.aioCommandCompleted(0);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NbdError);
    expect(err).toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/^nbd_aio_command_completed: /) });
    expect(h.aioCommandCompleted(123456)).toBe(false);
  });

  test('auto-retired commands never show in peek or aioCommandCompleted', async () => {
    const cookie = await issueAndWait(h, (done) => h.aioPread(Buffer.alloc(8), 0, () => (done(), 1)));
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    expect(() => h.aioPeekCommandCompleted()).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  test('peek returns the oldest completed command and 0 while only in flight', async () => {
    const a = await issueAndWait(h, (done) => h.aioPread(Buffer.alloc(8), 0, () => (done(), 0)));
    const b = await issueAndWait(h, (done) => h.aioPread(Buffer.alloc(8), 8, () => (done(), 0)));
    expect(h.aioPeekCommandCompleted()).toBe(a);
    expect(h.aioCommandCompleted(a)).toBe(true);
    expect(h.aioCommandCompleted(a)).toBe(false);
    expect(h.aioPeekCommandCompleted()).toBe(b);
    expect(h.aioCommandCompleted(b)).toBe(true);
    const c = h.aioPread(Buffer.alloc(8), 0);
    expect(h.aioInFlight()).toBe(1);
    expect(h.aioPeekCommandCompleted()).toBe(0);
    while (!h.aioCommandCompleted(c)) await new Promise((r) => setImmediate(r));
    expect(h.aioInFlight()).toBe(0);
  });

  test('aioInFlight counts commands until JS has seen their completion', async () => {
    const cookies = [0, 1, 2].map((i) => h.aioPread(Buffer.alloc(64), i * 64));
    expect(h.aioInFlight()).toBe(3);
    for (const c of cookies) while (!h.aioCommandCompleted(c)) await new Promise((r) => setImmediate(r));
    expect(h.aioInFlight()).toBe(0);
  });

  test('a completion callback can issue the next command on the same handle', async () => {
    const offsets: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const next = (off: number) =>
        h.aioPread(Buffer.alloc(8), off, (err) => {
          if (err.value !== 0) reject(new Error(`errno ${err.value}`));
          offsets.push(off);
          if (off < 1016) next(off + 8);
          else resolve();
          return 1;
        });
      next(0);
    });
    expect(offsets.length).toBe(128);
  });
});

describe('libnbd\'s synchronous argument errors, in libnbd\'s order', () => {
  test('count 0 is EINVAL with STRICT_ZERO_SIZE, the server\'s EINVAL without (client/server-zerosize)', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    expect(h.getStrictMode() & STRICT_ZERO_SIZE).toBeTruthy();
    expect(() => h.aioPread(Buffer.alloc(0), 0)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('count cannot be 0') }),
    );
    h.setStrictMode(h.getStrictMode() & ~STRICT_ZERO_SIZE);
    const cookie = h.aioPread(Buffer.alloc(0), 0);
    let err: unknown;
    for (;;) {
      try {
        if (h.aioCommandCompleted(cookie)) break;
      } catch (e) {
        err = e;
        break;
      }
      await new Promise((r) => setImmediate(r));
    }
    expect(err).toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/^nbd_aio_command_completed: /) });
  });

  test('reads over 64 MiB: ERANGE on a large export, EINVAL (bounds first) on a small one (client-oversize)', async () => {
    const big = await connected(nbdkit('memory', 'size=1G'));
    const buf = Buffer.alloc(64 * 1024 * 1024 + 1);
    expect(() => big.aioPread(buf, 0)).toThrow(expect.objectContaining({ code: 'ERANGE' }));
    await expect(big.pread(buf, 0)).rejects.toMatchObject({ code: 'ERANGE' });
    const small = await connected(nbdkit('memory', 'size=1M'));
    expect(() => small.aioPread(buf, 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  test('out-of-bounds reads: EINVAL with STRICT_BOUNDS, the server\'s error without', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    expect(() => h.aioPreadStructured(Buffer.alloc(512), 2n ** 64n - 1n, () => 0)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('request out of bounds') }),
    );
    h.setStrictMode(h.getStrictMode() & ~STRICT_BOUNDS);
    await expect(h.pread(Buffer.alloc(512), 1024 * 1024)).rejects.toMatchObject({ code: 'EINVAL' });
  });

  test('unknown flags: EINVAL with STRICT_FLAGS; sent to the server without (client/server-unknown-flags)', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    expect(() => h.aioPread(Buffer.alloc(512), 0, null, CMD_FLAG_MASK + 1)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => h.aioPread(Buffer.alloc(512), 0, null, 0x10000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    // pread takes no flags at all: FUA is "unknown" to it.
    expect(() => h.aioPread(Buffer.alloc(512), 0, null, CMD_FLAG_FUA)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    h.setStrictMode(h.getStrictMode() & ~STRICT_FLAGS);
    await expect(h.pread(Buffer.alloc(512), 0, CMD_FLAG_MASK + 1)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(() => h.aioPread(Buffer.alloc(512), 0, null, 0x10000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  test('DF without structured replies is EINVAL', async () => {
    const h = await connected(nbdkit('--no-sr', 'memory', 'size=1M'));
    expect(h.canDf()).toBe(false);
    expect(() => h.aioPreadStructured(Buffer.alloc(512), 0, () => 0, null, CMD_FLAG_DF)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
  });

  test('setStrictMode rejects bits outside libnbd\'s mask', () => {
    const h = new Handle();
    const before = h.getStrictMode();
    expect(() => h.setStrictMode(0x10000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(h.getStrictMode()).toBe(before);
    h.close();
  });
});

describe('JS arguments are checked before anything reaches C', () => {
  const h = new Handle();
  afterAll(() => h.close());

  test.each([
    ['a string buffer', () => h.aioPread('abc' as never, 0), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['an ArrayBuffer', () => h.aioPread(new ArrayBuffer(8) as never, 0), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['a negative offset', () => h.aioPread(Buffer.alloc(8), -1), 'ERR_OUT_OF_RANGE', RangeError],
    ['a fractional offset', () => h.aioPread(Buffer.alloc(8), 1.5), 'ERR_OUT_OF_RANGE', RangeError],
    ['an unsafe number offset', () => h.aioPread(Buffer.alloc(8), 2 ** 53), 'ERR_OUT_OF_RANGE', RangeError],
    ['a bigint offset over 2^64-1', () => h.aioPread(Buffer.alloc(8), 2n ** 64n), 'ERR_OUT_OF_RANGE', RangeError],
    ['a string offset', () => h.aioPread(Buffer.alloc(8), '0' as never), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['a missing chunk callback', () => h.aioPreadStructured(Buffer.alloc(8), 0, undefined as never), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['a non-function completion', () => h.aioPread(Buffer.alloc(8), 0, 5 as never), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['flags over 32 bits', () => h.aioPread(Buffer.alloc(8), 0, null, 2 ** 32), 'ERR_OUT_OF_RANGE', RangeError],
    ['a cookie of -1', () => h.aioCommandCompleted(-1), 'ERR_OUT_OF_RANGE', RangeError],
    ['a non-boolean setting', () => h.setPreadInitialize(1 as never), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['a string with NUL', () => h.setExportName('a\0b'), 'ERR_INVALID_ARG_VALUE', TypeError],
    ['an argv that is not an array', () => h.connectCommand('nbdkit' as never), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['an unknown driver', () => new Handle({ driver: 'fibers' as never }), 'ERR_INVALID_ARG_VALUE', TypeError],
  ])('%s', (_what, call, code, cls) => {
    let err: unknown;
    try {
      call();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(cls);
    expect(err).toMatchObject({ code });
  });

  test('a bigint offset is accepted and bigint handles report bigints', async () => {
    const b = await connected(nbdkit('pattern', 'size=1M'), { bigint: true });
    const offsets: bigint[] = [];
    await b.preadStructured(Buffer.alloc(16), 1024n, (_s, off) => {
      offsets.push(off);
      return 0;
    });
    expect(offsets).toEqual([1024n]);
    expect(typeof b.getSize()).toBe('bigint');
  });
});
