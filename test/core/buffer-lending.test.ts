// How a command's buffer reaches libnbd (lib/handle/buffers.ts): as it is
// where nothing can detach it, else through a copy of the binding's — which
// Node releases and buffers take which way differs, what the caller sees
// must not. What JS does to a buffer mid-command is
// test/faults/callbacks-and-buffers.test.ts's.
import { READ_DATA, READ_HOLE, allocBuffer } from '../../lib';
import { disown, lend, own } from '../../lib/handle/buffers';
import { connected, handle, nbdkit, pattern, sparseFile, startQemuNbd } from '../helpers/servers';

/** WebAssembly.Memory (the tests' TypeScript has no DOM types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly;

/** Two neighbouring slices of one ArrayBuffer (as Buffer.allocUnsafe's pool hands out), filled. */
function neighbours(length: number): { before: Buffer; view: Buffer; after: Buffer } {
  const all = Buffer.alloc(3 * length, 0xee);
  return { before: all.subarray(0, length), view: all.subarray(length, 2 * length), after: all.subarray(2 * length) };
}

describe('a read into part of a larger ArrayBuffer', () => {
  test('pread fills its view with the export\'s bytes and leaves the bytes around it alone', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const { before, view, after } = neighbours(8192);
    await h.pread(view, 4096);
    expect(view.equals(pattern(4096, 8192))).toBe(true);
    expect([before.every((b) => b === 0xee), after.every((b) => b === 0xee)]).toEqual([true, true]);
  });

  test('preadStructured: each chunk callback finds its bytes already in the caller\'s buffer, and nothing around it changes', async () => {
    // DATA, HOLE, DATA chunks (qemu-nbd sends a sparse file's holes as such).
    const server = await startQemuNbd(sparseFile(12288, [[0, 4096], [8192, 4096]], 1));
    const h = handle();
    await h.connectUnix(server.socket);
    const { before, view, after } = neighbours(12288);
    const chunks: [number, number, boolean][] = [];
    await h.preadStructured(view, 0, (subbuf, offset, status) => {
      chunks.push([offset as number, status, subbuf.buffer === view.buffer && subbuf.every((b) => b === (status === READ_DATA ? 1 : 0))]);
      return 0;
    });
    expect(chunks).toEqual([
      [0, READ_DATA, true],
      [4096, READ_HOLE, true],
      [8192, READ_DATA, true],
    ]);
    expect([before.every((b) => b === 0xee), after.every((b) => b === 0xee)]).toEqual([true, true]);
  });
});

describe('a read the server fails', () => {
  const failing = () => nbdkit('--filter=error', 'pattern', 'size=1M', 'error-pread=EIO', 'error-pread-rate=1');

  test('leaves zeroes in the caller\'s buffer, which libnbd zeroed first (pread_initialize)', async () => {
    const h = await connected(failing());
    const buf = Buffer.alloc(65536, 0xff);
    await expect(h.pread(buf, 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(buf.every((b) => b === 0)).toBe(true);
  });

  test('with pread_initialize off, leaves the caller\'s buffer as it was — never another read\'s bytes', async () => {
    // Another read of the same length first, whose bytes a copy may still hold.
    const other = await connected(nbdkit('pattern', 'size=1M'));
    await other.pread(Buffer.alloc(65536), 0);
    const h = await connected(failing());
    h.setPreadInitialize(false);
    const buf = Buffer.alloc(65536, 0xff);
    await expect(h.pread(buf, 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(h.preadStructured(buf, 0, () => 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(buf.every((b) => b === 0xff)).toBe(true);
  });
});

describe('buffers that nothing can detach', () => {
  test('a read into a WebAssembly memory gets the export\'s bytes, and the memory can still grow afterwards', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const memory = new Memory({ initial: 2, maximum: 4 });
    const view = new Uint8Array(memory.buffer, 1000, 65536);
    await h.pread(view, 0);
    expect(Buffer.from(view).equals(pattern(0, 65536))).toBe(true);
    // Node 24 aborts the process when a grown memory's buffer cannot be detached.
    expect(memory.grow(1)).toBe(2);
    expect(new Uint8Array(memory.buffer, 1000, 8)).toEqual(new Uint8Array(pattern(0, 8)));
  });

  test('a read into a SharedArrayBuffer is made in place: its chunk callback sees the bytes through the same memory', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const view = new Uint8Array(new SharedArrayBuffer(65536));
    const statuses: number[] = [];
    await h.preadStructured(view, 0, (subbuf, _offset, status) => {
      statuses.push(status);
      expect(subbuf.buffer).toBe(view.buffer);
      return 0;
    });
    expect(statuses).toEqual([READ_DATA]);
    expect(Buffer.from(view).equals(pattern(0, 65536))).toBe(true);
  });
});

describe('allocBuffer, the binding\'s buffers (Python\'s nbd.Buffer)', () => {
  test('gives a zero-filled Buffer that a read fills in place: its chunk callback sees the bytes through the same memory', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const buf = allocBuffer(65536);
    expect(Buffer.isBuffer(buf)).toBe(true);
    expect(buf.length).toBe(65536);
    expect(buf.every((b) => b === 0)).toBe(true);
    await h.preadStructured(buf, 4096, (subbuf) => {
      expect(subbuf.buffer).toBe(buf.buffer);
      return 0;
    });
    expect(buf.equals(pattern(4096, 65536))).toBe(true);
  });

  test('its buffers go to libnbd as they are, for reads and writes, on every Node release', () => {
    const buf = allocBuffer(4096);
    expect(lend(buf, true, true)).toBe(buf);
    expect(lend(buf, false, false)).toBe(buf);
  });

  test('refuses a size that is not an integer from 0 to 2 ** 32 - 1, with Node\'s codes', () => {
    expect(() => allocBuffer('4096' as unknown as number)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
    for (const size of [-1, 1.5, 2 ** 32]) {
      expect(() => allocBuffer(size)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    }
    expect(allocBuffer(0).length).toBe(0);
  });
});

describe("lib/io's own buffers", () => {
  test('a view lib/io owns is lent as it is; once disowned it is lent as any caller\'s buffer is', () => {
    const mine = Buffer.allocUnsafeSlow(4096);
    own(mine);
    expect(lend(mine, true, true)).toBe(mine);
    disown(mine);
    const callers = Buffer.allocUnsafeSlow(4096);
    // The same way as a caller's buffer of the same kind, whichever that is on this Node.
    expect(lend(mine, true, true) === mine).toBe(lend(callers, true, true) === callers);
  });
});
