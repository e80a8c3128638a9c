// Handle#extents: contiguous, merged extents covering [start, end), equal to
// what nbdinfo --map --json prints for the same URI, for base:allocation
// (qemu-nbd over a sparse file; a 10 GiB nbdkit export, which takes several
// block-status calls under 4 GiB), a qcow2 dirty bitmap and
// qemu:allocation-depth.
import { join } from 'node:path';
import { Handle, NbdError, STATE_HOLE, STATE_ZERO } from '../../lib';
import { MAX_BLOCK_STATUS, type Extent } from '../../lib/io/extents';
import { clip, collect, commandOutput, nbdinfoMap } from '../helpers/io';
import { collectUnhandledRejections } from '../helpers/unhandled';
import { handle, sparseFile, startNbdkit, startQemuNbd, tempDir } from '../helpers/servers';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

collectUnhandledRejections();

async function open(uri: string, ...contexts: string[]): Promise<Handle> {
  const h = handle();
  for (const c of contexts) h.addMetaContext(c);
  await h.connectUri(uri);
  return h;
}

/** Records every block-status call a handle makes. */
function spyBlockStatus(h: Handle): { count: number; offset: number }[] {
  const calls: { count: number; offset: number }[] = [];
  const original = h.blockStatus.bind(h);
  h.blockStatus = (count, offset, extent, options) => {
    calls.push({ count: Number(count), offset: Number(offset) });
    return original(count, offset, extent, options);
  };
  return calls;
}

function expectContiguous(list: Extent[], start: number, end: number): void {
  let pos = start;
  for (let i = 0; i < list.length; i++) {
    expect(list[i].offset).toBe(pos);
    expect(list[i].length).toBeGreaterThan(0);
    if (i > 0) expect(list[i].flags).not.toBe(list[i - 1].flags);
    pos += list[i].length;
  }
  expect(pos).toBe(end);
}

describe('base:allocation over a sparse raw file (qemu-nbd)', () => {
  const size = 64 * MiB;
  let uri: string;
  let h: Handle;
  beforeAll(async () => {
    const file = sparseFile(size, [
      [0, 64 * KiB],
      [1 * MiB, 3 * MiB],
      [10 * MiB + 512 * KiB, 4 * KiB],
      [40 * MiB, 8 * MiB],
      [size - 4 * KiB, 4 * KiB],
    ]);
    uri = (await startQemuNbd(file, '-e', '4')).uri;
    h = await open(uri, 'base:allocation');
  });

  test('the whole export equals nbdinfo --map', async () => {
    const list = await collect(h.extents());
    expect(list).toEqual(nbdinfoMap(uri));
    expectContiguous(list, 0, size);
    expect(list.some((e) => e.flags === (STATE_HOLE | STATE_ZERO))).toBe(true);
    expect(list.some((e) => e.flags === 0)).toBe(true);
  });

  test('sub-ranges, unaligned ones included, are the map clipped to [start, end)', async () => {
    const map = nbdinfoMap(uri);
    for (const [start, end] of [
      [0, 1],
      [1 * MiB + 100, 10 * MiB + 512 * KiB + 7],
      [10 * MiB + 512 * KiB + 1, 10 * MiB + 512 * KiB + 2],
      [33 * MiB, 33 * MiB],
      [45 * MiB + 3, size],
    ]) {
      const list = await collect(h.extents({ start, end }));
      expect(list).toEqual(clip(map, start, end));
      if (end > start) expectContiguous(list, start, end);
      else expect(list).toEqual([]);
    }
  });

  test('bigint bounds are accepted; bad ranges and an unknown context are refused', async () => {
    const list = await collect(h.extents({ start: 0n, end: BigInt(2 * MiB) }));
    expect(list).toEqual(clip(nbdinfoMap(uri), 0, 2 * MiB));
    // Bad options throw at once; what needs the export's size fails the first next().
    expect(() => h.extents({ start: 5, end: 4 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => h.extents({ start: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => h.extents({ context: 42 as unknown as string })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => h.extents(null as unknown as {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    await expect(collect(h.extents({ end: size + 1 }))).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(collect(h.extents({ start: size + 1 }))).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    const e = await collect(h.extents({ context: 'qemu:dirty-bitmap:nope' })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdError);
    expect((e as NbdError).code).toBe('ENOTSUP');
    expect((e as NbdError).message).toMatch(/'qemu:dirty-bitmap:nope' was not negotiated.*addMetaContext/);
  });

  test('a handle connected without the context gets a clear error', async () => {
    const bare = await open(uri);
    await expect(collect(bare.extents())).rejects.toThrow(/meta context 'base:allocation' was not negotiated/);
  });

  test('breaking out of the loop leaves the handle usable', async () => {
    for await (const e of h.extents()) {
      expect(e.offset).toBe(0);
      break;
    }
    await h.pread(Buffer.alloc(512), 0);
    expect(h.aioInFlight()).toBe(0);
  });
});

describe('a 10 GiB export: block-status calls split under 4 GiB', () => {
  test('nbdkit memory size=10G with data written across the 2 GiB call boundaries equals nbdinfo --map', async () => {
    const server = await startNbdkit('memory', 'size=10G');
    const h = await open(server.uri, 'base:allocation');
    const data = Buffer.alloc(MiB, 0x5a);
    for (const offset of [0, MAX_BLOCK_STATUS - 512 * KiB, 3 * GiB, 4 * GiB - 256 * KiB, 8 * GiB + 123 * 4096, 10 * GiB - MiB]) {
      await h.pwrite(data, offset);
    }
    const calls = spyBlockStatus(h);
    const list = await collect(h.extents());
    expect(list).toEqual(nbdinfoMap(server.uri));
    expectContiguous(list, 0, 10 * GiB);
    expect(calls.length).toBeGreaterThanOrEqual(5);
    for (const c of calls) expect(c.count).toBeLessThanOrEqual(MAX_BLOCK_STATUS);
    expect(Math.max(...calls.map((c) => c.offset))).toBeGreaterThan(8 * GiB);
  });

  test('nbdkit sparse-random size=10G equals nbdinfo --map', async () => {
    const server = await startNbdkit('sparse-random', 'size=10G', 'seed=42');
    const h = await open(server.uri, 'base:allocation');
    const calls = spyBlockStatus(h);
    const list = await collect(h.extents());
    expect(list).toEqual(nbdinfoMap(server.uri));
    expectContiguous(list, 0, 10 * GiB);
    expect(list.length).toBeGreaterThan(10);
    for (const c of calls) expect(c.count).toBeLessThan(4 * GiB);
  });
});

describe('qemu meta contexts (qcow2 through qemu-nbd)', () => {
  let uri: string;
  const size = 64 * MiB;
  beforeAll(async () => {
    const file = join(tempDir(), 'disk.qcow2');
    commandOutput('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(size)]);
    // Data written before the bitmap exists is allocated but clean.
    commandOutput('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', file]);
    commandOutput('qemu-img', ['bitmap', '--add', file, 'b0']);
    commandOutput('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x55 2M 64k', '-c', 'write -z 8M 1M', '-c', 'write -P 0x66 63M 1M', file]);
    uri = (await startQemuNbd(file, '-e', '4', '-f', 'qcow2', '-B', 'b0', '-A')).uri;
  });

  test('qemu:dirty-bitmap:b0 equals nbdinfo --map=qemu:dirty-bitmap:b0', async () => {
    const h = await open(uri, 'qemu:dirty-bitmap:b0');
    const list = await collect(h.extents({ context: 'qemu:dirty-bitmap:b0' }));
    const map = nbdinfoMap(uri, 'qemu:dirty-bitmap:b0');
    expect(list).toEqual(map);
    expectContiguous(list, 0, size);
    // Dirty (flag 1) exactly where the writes after --add went, at the bitmap's granularity.
    const dirty = list.filter((e) => e.flags === 1);
    expect(dirty.length).toBeGreaterThanOrEqual(2);
    expect(dirty.some((e) => e.offset <= 2 * MiB && e.offset + e.length >= 2 * MiB + 64 * KiB)).toBe(true);
    expect(dirty.some((e) => e.offset <= 0 && e.length >= MiB)).toBe(false);
  });

  test('qemu:allocation-depth and base:allocation on one handle', async () => {
    const h = await open(uri, 'base:allocation', 'qemu:allocation-depth');
    expect(await collect(h.extents({ context: 'qemu:allocation-depth' }))).toEqual(nbdinfoMap(uri, 'qemu:allocation-depth'));
    expect(await collect(h.extents())).toEqual(nbdinfoMap(uri));
  });
});

describe('stitching replies (a scripted ExtentSource)', () => {
  /** A source of `size` bytes whose block-status replies `reply(count, offset)` scripts: [context, offset, pairs][]. */
  function source(size: number, reply: (count: number, offset: number) => [string, number, number[]][], minimum = 512) {
    const calls: { count: number; offset: number }[] = [];
    return {
      calls,
      getSize: () => size,
      getBlockSize: (t: number) => (t === 0 ? minimum : 0),
      canMetaContext: (c: string) => c === 'base:allocation' || c === 'other',
      blockStatus: async (count: number, offset: number, cb: (c: string, o: number, e: Uint32Array, err: { value: number }) => unknown) => {
        calls.push({ count, offset });
        for (const [ctx, at, pairs] of reply(count, offset)) cb(ctx, at, Uint32Array.from(pairs), { value: 0 });
      },
    };
  }
  const { extents } = require('../../lib/io/extents') as typeof import('../../lib/io/extents');

  test('replies covering less than asked are continued; more than asked is clipped; zero lengths skipped; other contexts ignored', async () => {
    // The truth: 4 KiB blocks, data (0) / hole,zero (3) / zero (2) by position, some neighbours equal.
    const flagsOf = (block: number) => [0, 3, 3, 2, 0, 0, 2, 3][block % 8];
    // Each reply: another context first; then only the extent at the request's offset,
    // a zero-length entry, and when that extent reaches the request's end, 1 MiB more.
    const src = source(64 * KiB, (count, offset) => {
      const blockEnd = (Math.floor(offset / 4096) + 1) * 4096;
      const first = Math.min(blockEnd, offset + count) - offset;
      const past = offset + first >= offset + count ? 1024 * KiB : 0;
      return [
        ['other', offset, [count, 7]],
        ['base:allocation', offset, [first + past, flagsOf(offset / 4096), 0, 1]],
      ];
    });
    const [start, end] = [1000, 30000];
    const expected: Extent[] = [];
    for (let pos = start; pos < end; ) {
      const to = Math.min(end, (Math.floor(pos / 4096) + 1) * 4096);
      const flags = flagsOf(Math.floor(pos / 4096));
      const last = expected[expected.length - 1];
      if (last !== undefined && last.flags === flags) last.length += to - pos;
      else expected.push({ offset: pos, length: to - pos, flags });
      pos = to;
    }
    const list = await collect(extents(src, { start, end }));
    expect(list).toEqual(expected);
    expectContiguous(list, start, end);
    // Requests start at the aligned-down cursor and never pass the range's aligned end.
    expect(src.calls[0]).toEqual({ offset: 512, count: 30208 - 512 });
    for (const c of src.calls) {
      expect(c.offset % 512).toBe(0);
      expect(c.count % 512).toBe(0);
      expect(c.offset + c.count).toBe(30208);
    }
  });

  test('adjacent extents of equal flags from separate replies are merged', async () => {
    const src = source(16 * KiB, (_count, offset) => [['base:allocation', offset, [4096, 0]]]);
    expect(await collect(extents(src))).toEqual([{ offset: 0, length: 16 * KiB, flags: 0 }]);
    expect(src.calls.map((c) => c.offset)).toEqual([0, 4096, 8192, 12288]);
  });

  test('a server making no progress is an error naming the offset', async () => {
    const empty = source(16 * KiB, () => [['base:allocation', 0, []]]);
    await expect(collect(extents(empty))).rejects.toThrow(/no extent of context 'base:allocation' at offset 0.*not making progress/);
    const zeroLength = source(16 * KiB, (_c, offset) => [['base:allocation', offset, offset === 0 ? [4096, 0] : [0, 0]]]);
    const seen: Extent[] = [];
    const e = await (async () => {
      for await (const x of extents(zeroLength)) seen.push(x);
    })().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdError);
    expect((e as NbdError).code).toBe('EPROTO');
    expect((e as Error).message).toMatch(/at offset 4096/);
    const silent = source(16 * KiB, () => [['other', 0, [16 * KiB, 0]]]);
    await expect(collect(extents(silent))).rejects.toThrow(/not making progress/);
  });

  test('a huge range is asked for in calls of at most MAX_BLOCK_STATUS, aligned', async () => {
    const size = 9 * GiB + 4096;
    const src = source(size, (count, offset) => [['base:allocation', offset, [count, 0]]], 65536);
    expect(await collect(extents(src))).toEqual([{ offset: 0, length: size, flags: 0 }]);
    expect(src.calls.length).toBe(5);
    for (const c of src.calls) {
      expect(c.count).toBeLessThanOrEqual(MAX_BLOCK_STATUS);
      expect(c.offset % 65536).toBe(0);
    }
  });
});
