// isZero: every byte 0, for any view, any length and alignment.
import { isZero } from '../../lib';

test('empty, short and long all-zero views are zero', () => {
  expect(isZero(Buffer.alloc(0))).toBe(true);
  for (const n of [1, 7, 15, 16, 17, 63, 64, 65, 4096, 1 << 20]) expect(isZero(Buffer.alloc(n))).toBe(true);
});

test('one non-zero byte anywhere, at any offset and alignment of the view, is seen', () => {
  const backing = Buffer.alloc(8192 + 64);
  for (const start of [0, 1, 3, 8, 13]) {
    for (const n of [1, 2, 16, 17, 63, 64, 65, 100, 4096, 8192]) {
      const view = backing.subarray(start, start + n);
      expect(isZero(view)).toBe(true);
      for (const i of new Set([0, 1, 15, 16, 17, n >> 1, n - 17, n - 16, n - 2, n - 1])) {
        if (i < 0 || i >= n) continue;
        view[i] = 0x80;
        expect(isZero(view)).toBe(false);
        view[i] = 0;
      }
      // Bytes just outside the view do not count.
      if (start > 0) backing[start - 1] = 1;
      backing[start + n] = 1;
      expect(isZero(view)).toBe(true);
      backing.fill(0);
    }
  }
});

test('any ArrayBufferView: Uint8Array, Float64Array (-0 is not zero), DataView, shared memory', () => {
  expect(isZero(new Uint8Array(100))).toBe(true);
  const f = new Float64Array(64);
  expect(isZero(f)).toBe(true);
  f[40] = -0;
  expect(isZero(f)).toBe(false);
  const dv = new DataView(new ArrayBuffer(256), 10, 200);
  expect(isZero(dv)).toBe(true);
  dv.setUint8(199, 1);
  expect(isZero(dv)).toBe(false);
  const shared = new Uint32Array(new SharedArrayBuffer(4096));
  expect(isZero(shared)).toBe(true);
  shared[1023] = 1;
  expect(isZero(shared)).toBe(false);
});

test('anything else is a TypeError', () => {
  expect(() => isZero([0, 0] as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  expect(() => isZero(new ArrayBuffer(4) as unknown as Uint8Array)).toThrow(TypeError);
});
