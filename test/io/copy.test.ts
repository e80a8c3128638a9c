// copy(): byte-identical to nbdcopy's output, no more allocated on a file
// destination, all-zero blocks kept sparse, server limits honoured, abort,
// progress and errors, and no unhandled rejection on any path.
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AbortError, Handle, NbdError, Pool, STATE_ZERO, copy, type CopyProgress, type CommandOptions } from '../../lib';
import { commandOutput, nbdinfoMap, pool } from '../helpers/io';
import { collectUnhandledRejections } from '../helpers/unhandled';
import { handle, sparseFile, startNbdkit, startQemuNbd, tempDir } from '../helpers/servers';

const KiB = 1024;
const MiB = 1024 * KiB;

collectUnhandledRejections();


/** Writes `data` at `offset` of an existing file (allocating it, zeroes included). */
function writeAt(path: string, data: Buffer, offset: number): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}

/** Bytes the file takes on disk. */
const allocated = (path: string) => statSync(path).blocks * 512;

/** nbdcopy SRC DST (DST a file path or URI). */
function nbdcopy(src: string, dst: string, ...args: string[]): void {
  commandOutput('nbdcopy', [...args, '--', src, dst]);
}

/** The whole export, through nbdcopy, as a Buffer. */
function contents(uri: string): Buffer {
  const file = join(tempDir(), 'dump.raw');
  nbdcopy(uri, file);
  return readFileSync(file);
}

/** Records the commands each handle of a pool is asked for. */
function spy(p: Pool): { method: string; count: number; offset: number }[] {
  const calls: { method: string; count: number; offset: number }[] = [];
  for (const h of p.handles) {
    for (const method of ['pread', 'pwrite'] as const) {
      const original = h[method].bind(h);
      h[method] = (buf: ArrayBufferView, offset: number | bigint, options?: number | CommandOptions) => {
        calls.push({ method, count: buf.byteLength, offset: Number(offset) });
        return original(buf, offset, options);
      };
    }
    for (const method of ['zero', 'trim'] as const) {
      const original = h[method].bind(h);
      h[method] = (count: number | bigint, offset: number | bigint, options?: number | CommandOptions) => {
        calls.push({ method, count: Number(count), offset: Number(offset) });
        return original(count, offset, options);
      };
    }
  }
  return calls;
}

describe('against nbdcopy', () => {
  test('nbdkit sparse-random to a file: identical bytes, no more blocks allocated than nbdcopy', async () => {
    const server = await startNbdkit('sparse-random', 'size=256M', 'seed=7');
    const dir = tempDir();
    const ours = join(dir, 'ours.raw');
    const theirs = join(dir, 'theirs.raw');
    nbdcopy(server.uri, theirs);
    const stats = await copy(server.uri, ours);
    commandOutput('cmp', [ours, theirs]);
    expect(statSync(ours).size).toBe(256 * MiB);
    expect(allocated(ours)).toBeLessThanOrEqual(allocated(theirs));
    expect(stats.bytes).toBe(256 * MiB);
    expect(stats.dataBytes + stats.zeroBytes).toBe(256 * MiB);
    expect(stats.dataBytes).toBeGreaterThan(0);
    expect(stats.zeroBytes).toBeGreaterThan(stats.dataBytes);
    expect(stats.seconds).toBeGreaterThan(0);
  });

  test('qemu-nbd over a sparse raw file (data, holes, written zeroes, an unaligned size) to a file', async () => {
    const size = 40 * MiB + 3 * 512;
    const file = sparseFile(size, [
      [0, 100 * KiB],
      [MiB + 512, 3 * MiB],
      [20 * MiB, 8 * MiB],
      [size - 1536, 1536],
    ]);
    // 1 MiB of written zeroes inside the data.
    writeAt(file, Buffer.alloc(MiB), 2 * MiB);
    const server = await startQemuNbd(file, '-e', '4');
    const dir = tempDir();
    const ours = join(dir, 'ours.raw');
    const theirs = join(dir, 'theirs.raw');
    nbdcopy(server.uri, theirs);
    await copy(server.uri, ours);
    commandOutput('cmp', [ours, theirs]);
    commandOutput('cmp', [ours, file]);
    expect(allocated(ours)).toBeLessThanOrEqual(allocated(theirs));
  });

  test('NBD to NBD: the destination (pre-filled with 0xff) ends identical to the source; holes are zeroed, never trimmed', async () => {
    const src = await startNbdkit('sparse-random', 'size=64M', 'seed=3');
    const dst = await startNbdkit('memory', 'size=64M');
    const fill = await pool(dst.uri, { connections: 1 });
    for (let off = 0; off < 64 * MiB; off += 8 * MiB) await fill.pwrite(Buffer.alloc(8 * MiB, 0xff), off);
    const dstPool = await pool(dst.uri, { connections: 2 });
    const calls = spy(dstPool);
    const stats = await copy(src.uri, dstPool);
    expect(contents(dst.uri).equals(contents(src.uri))).toBe(true);
    expect(calls.filter((c) => c.method === 'trim')).toEqual([]);
    const zeroed = calls.filter((c) => c.method === 'zero').reduce((n, c) => n + c.count, 0);
    expect(zeroed).toBe(stats.zeroBytes);
    expect(calls.filter((c) => c.method === 'pwrite').reduce((n, c) => n + c.count, 0)).toBe(stats.dataBytes);
    // The pool given is left open and usable.
    await dstPool.pread(Buffer.alloc(512), 0);
  });
});

describe('detectZeroes', () => {
  // 32 MiB: 4 MiB of data, then 8 MiB of written zeroes (allocated: qemu-nbd reports them as data), then a hole.
  let uri: string;
  beforeAll(async () => {
    const file = sparseFile(32 * MiB, [[0, 4 * MiB]], 0xcd);
    writeAt(file, Buffer.alloc(8 * MiB), 8 * MiB);
    uri = (await startQemuNbd(file, '-e', '4')).uri;
    // The source does report the written zeroes as data.
    const map = nbdinfoMap(uri);
    expect(map.some((e) => e.offset <= 8 * MiB && e.offset + e.length >= 16 * MiB && (e.flags & STATE_ZERO) === 0)).toBe(true);
  });

  test('8 MiB of written zeroes stay a hole in a file destination (and are allocated with detectZeroes: false)', async () => {
    const dir = tempDir();
    const on = join(dir, 'on.raw');
    const off = join(dir, 'off.raw');
    const withDetect = await copy(uri, on);
    const without = await copy(uri, off, { detectZeroes: false });
    commandOutput('cmp', [on, off]);
    expect(withDetect.dataBytes).toBe(4 * MiB);
    expect(without.dataBytes).toBe(12 * MiB);
    expect(allocated(on)).toBeLessThan(5 * MiB);
    expect(allocated(off)).toBeGreaterThanOrEqual(12 * MiB);
    // nbdcopy (-S 4096 by default) allocates no less.
    const theirs = join(dir, 'theirs.raw');
    nbdcopy(uri, theirs);
    expect(allocated(on)).toBeLessThanOrEqual(allocated(theirs));
  });

  test('to an NBD destination they become zero requests and read back as a hole', async () => {
    const dst = await startNbdkit('memory', 'size=32M');
    const stats = await copy(uri, dst.uri);
    expect(stats.dataBytes).toBe(4 * MiB);
    const map = nbdinfoMap(dst.uri);
    const at = (o: number) => map.find((e) => e.offset <= o && o < e.offset + e.length)!;
    expect(at(12 * MiB).flags & STATE_ZERO).toBe(STATE_ZERO);
    expect(at(12 * MiB).offset).toBeLessThanOrEqual(4 * MiB);
    expect(contents(dst.uri).equals(contents(uri))).toBe(true);
  });

  test('a block size of 64 KiB copies the same bytes', async () => {
    const out = join(tempDir(), 'out.raw');
    const stats = await copy(uri, out, { detectZeroes: 65536 });
    expect(stats.dataBytes).toBe(4 * MiB);
    expect(contents(uri).equals(readFileSync(out))).toBe(true);
  });
});

describe('server limits', () => {
  test('requestSize: 64 MiB with qemu-nbd (maximum 32 MiB) copies exactly, in requests of at most 32 MiB', async () => {
    const size = 96 * MiB;
    const file = sparseFile(size, [[0, size]], 0x3c);
    const src = await startQemuNbd(file, '-e', '4');
    const dstFile = sparseFile(size, []);
    const dst = await startQemuNbd(dstFile, '-e', '4');
    const srcPool = await pool(src.uri, { connections: 1 });
    expect(srcPool.getBlockSize(2)).toBe(32 * MiB);
    const dstPool = await pool(dst.uri, { connections: 1 });
    const reads = spy(srcPool);
    const writes = spy(dstPool);
    await copy(srcPool, dstPool, { requestSize: 64 << 20, detectZeroes: false });
    const sizes = [...reads, ...writes].filter((c) => c.method === 'pread' || c.method === 'pwrite').map((c) => c.count);
    expect(Math.max(...sizes)).toBe(32 * MiB);
    expect(reads.filter((c) => c.method === 'pread').reduce((n, c) => n + c.count, 0)).toBe(size);
    await dstPool.flush();
    commandOutput('cmp', [file, dstFile]);
  });

  test('a destination without write-zeroes gets written zeroes; a minimum block size of 4 KiB is respected', async () => {
    const src = await startNbdkit('sparse-random', 'size=16M', 'seed=11');
    const dst = await startNbdkit('--filter=nozero', '--filter=blocksize-policy', 'memory', 'size=16M', 'blocksize-minimum=4096', 'blocksize-error-policy=error');
    const dstPool = await pool(dst.uri, { connections: 1 });
    expect(dstPool.canZero()).toBe(false);
    expect(dstPool.getBlockSize(0)).toBe(4096);
    await dstPool.pwrite(Buffer.alloc(16 * MiB, 0x77), 0);
    const calls = spy(dstPool);
    await copy(src.uri, dstPool);
    expect(calls.every((c) => c.method === 'pwrite' && c.offset % 4096 === 0 && c.count % 4096 === 0)).toBe(true);
    expect(contents(dst.uri).equals(contents(src.uri))).toBe(true);
  });

  test('without write-zeroes, a small zero run first does not shrink the later ones', async () => {
    // A 4 KiB hole first, then data, then a 7.9 MiB hole, onto a destination of 0x77 bytes.
    const file = sparseFile(8 * MiB, [[4096, 60 * KiB]], 0x21);
    const src = await startQemuNbd(file, '-e', '4');
    const dst = await startNbdkit('--filter=nozero', 'memory', 'size=8M');
    const dstPool = await pool(dst.uri, { connections: 1 });
    await dstPool.pwrite(Buffer.alloc(8 * MiB, 0x77), 0);
    const calls = spy(dstPool);
    await copy(src.uri, dstPool, { connections: 1, queueDepth: 1 });
    expect(calls[0]).toEqual({ method: 'pwrite', count: 4096, offset: 0 });
    expect(contents(dst.uri).equals(readFileSync(file))).toBe(true);
  });
});

describe('endpoints', () => {
  test('Handles (a bigint one included) on both sides; they stay open and usable', async () => {
    const src = await startNbdkit('sparse-random', 'size=8M', 'seed=5');
    const dst = await startNbdkit('memory', 'size=8M');
    const a = handle({ bigint: true });
    a.addMetaContext('base:allocation');
    await a.connectUri(src.uri);
    const b = handle();
    await b.connectUri(dst.uri);
    const stats = await copy(a, b, { requestSize: 64 * KiB });
    expect(stats.bytes).toBe(8 * MiB);
    expect(contents(dst.uri).equals(contents(src.uri))).toBe(true);
    expect(a.aioInFlight()).toBe(0);
    await b.pread(Buffer.alloc(512), 0);
  });

  test('a local file to NBD and to a new file; a source without extents is read whole', async () => {
    const file = sparseFile(8 * MiB, [[2 * MiB, MiB]], 0x42);
    const dst = await startNbdkit('memory', 'size=10M');
    const stats = await copy(file, dst.uri);
    expect(stats.dataBytes).toBe(MiB);
    const back = contents(dst.uri);
    expect(back.subarray(0, 8 * MiB).equals(readFileSync(file))).toBe(true);
    const out = join(tempDir(), 'copy.raw');
    await copy(file, out);
    commandOutput('cmp', [file, out]);
    expect(allocated(out)).toBeLessThanOrEqual(MiB + 64 * KiB);
  });

  test('sparse: false allocates every block of a file destination', async () => {
    const src = await startNbdkit('sparse-random', 'size=8M', 'seed=9');
    const out = join(tempDir(), 'full.raw');
    const stats = await copy(src.uri, out, { sparse: false });
    expect(allocated(out)).toBeGreaterThanOrEqual(8 * MiB);
    expect(readFileSync(out).equals(contents(src.uri))).toBe(true);
    expect(stats.zeroBytes).toBeGreaterThan(0);
  });

  test('refused: a smaller or read-only destination, a missing file; bad endpoints and options throw', async () => {
    const src = await startNbdkit('memory', 'size=2M');
    const small = await startNbdkit('memory', 'size=1M');
    const ro = await startNbdkit('-r', 'memory', 'size=2M');
    await expect(copy(src.uri, small.uri)).rejects.toMatchObject({ code: 'ENOSPC' });
    await expect(copy(src.uri, ro.uri)).rejects.toMatchObject({ code: 'EROFS' });
    // Bad arguments throw at once, as the Promise forms'.
    const out = join(tempDir(), 'x');
    expect(() => copy(src.uri, 42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => copy(src.uri, out, { requestSize: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => copy(src.uri, out, { detectZeroes: 1000 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => copy(src.uri, out, { flush: 1 as unknown as boolean })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => copy(src.uri, out, { signal: {} as AbortSignal })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => copy(src.uri, out, { driver: 'x' as 'loop' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    await expect(copy(join(tempDir(), 'missing'), out)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('progress, abort, errors', () => {
  test('onProgress: at most every 100 ms, bytes never going back, then once with bytes === total', async () => {
    const src = await startNbdkit('--filter=delay', 'pattern', 'size=32M', 'delay-read=20ms');
    const reports: (CopyProgress & { at: number })[] = [];
    const started = Date.now();
    const stats = await copy(src.uri, join(tempDir(), 'p.raw'), {
      requestSize: 256 * KiB,
      connections: 1,
      queueDepth: 2,
      onProgress: (p) => reports.push({ ...p, at: Date.now() }),
    });
    const elapsed = Date.now() - started;
    const last = reports[reports.length - 1];
    expect(last).toMatchObject({ bytes: 32 * MiB, total: 32 * MiB, dataBytes: stats.dataBytes, zeroBytes: stats.zeroBytes });
    expect(last.rate).toBeGreaterThan(0);
    expect(reports.length).toBeGreaterThan(2);
    for (let i = 1; i < reports.length; i++) {
      expect(reports[i].bytes).toBeGreaterThanOrEqual(reports[i - 1].bytes);
      expect(reports[i].bytes).toBe(reports[i].dataBytes + reports[i].zeroBytes);
    }
    // Throttled, not per request: the intermediate reports are 100 ms apart.
    expect(reports.length).toBeLessThanOrEqual(Math.floor(elapsed / 100) + 2);
  });

  test('abort: stops issuing, waits for what is in flight, rejects with AbortError; the handles stay usable', async () => {
    const src = await startNbdkit('--filter=delay', 'pattern', 'size=64M', 'delay-read=150ms');
    const dst = await startNbdkit('memory', 'size=64M');
    const srcPool = await pool(src.uri, { connections: 2 });
    const dstPool = await pool(dst.uri, { connections: 2 });
    const ac = new AbortController();
    const reason = new Error('enough');
    let progressed = 0;
    let afterAbort = 0;
    // Aborted halfway through a round of reads (150 ms each): they complete after it.
    const e = await copy(srcPool, dstPool, {
      requestSize: 256 * KiB,
      onProgress: () => {
        if (ac.signal.aborted) afterAbort++;
        if (++progressed === 1) setTimeout(() => ac.abort(reason), 75);
      },
      signal: ac.signal,
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect((e as AbortError).code).toBe('ABORT_ERR');
    expect((e as AbortError).cause).toBe(reason);
    // No progress is reported once stopping, however long the requests in flight take.
    expect(progressed).toBeGreaterThanOrEqual(1);
    expect(afterAbort).toBe(0);
    for (const h of [...srcPool.handles, ...dstPool.handles]) expect(h.aioInFlight()).toBe(0);
    await srcPool.pread(Buffer.alloc(512), 0);
    await dstPool.pwrite(Buffer.alloc(512), 0);
  });

  test('an already aborted signal rejects at once, without connecting', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(copy('nbd+unix:///?socket=/nonexistent', join(tempDir(), 'x'), { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  });

  test('an abort while connecting stops the copy before any request', async () => {
    const src = await startNbdkit('pattern', 'size=8M');
    const out = join(tempDir(), 'x.raw');
    const ac = new AbortController();
    const copying = copy(src.uri, out, { signal: ac.signal });
    ac.abort();
    await expect(copying).rejects.toBeInstanceOf(AbortError);
    expect(allocated(out)).toBe(0);
  });

  test('a read error fails the copy with its NbdError once the requests in flight are done; no unhandled rejection', async () => {
    const src = await startNbdkit('--filter=error', 'pattern', 'size=32M', 'error-pread-rate=0.2', 'error=EIO');
    const srcHandle = handle();
    await srcHandle.connectUri(src.uri);
    const dst = await startNbdkit('memory', 'size=32M');
    const dstPool = await pool(dst.uri, { connections: 2 });
    const e = await copy(srcHandle, dstPool, { requestSize: 64 * KiB, queueDepth: 16 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdError);
    expect((e as NbdError).code).toBe('EIO');
    expect(srcHandle.aioInFlight()).toBe(0);
    for (const h of dstPool.handles) expect(h.aioInFlight()).toBe(0);
    await dstPool.pread(Buffer.alloc(512), 0);
  });

  test('a throwing onProgress fails the copy with what it threw, during the copy or at its end', async () => {
    const slow = await startNbdkit('--filter=delay', 'pattern', 'size=8M', 'delay-read=30ms');
    const fast = await startNbdkit('memory', 'size=8M');
    for (const uri of [slow.uri, fast.uri]) {
      const boom = new Error('progress bar broke');
      let calls = 0;
      await expect(
        copy(uri, join(tempDir(), 'x.raw'), {
          requestSize: 256 * KiB,
          onProgress: () => {
            calls++;
            throw boom;
          },
        }),
      ).rejects.toBe(boom);
      expect(calls).toBe(1);
    }
  });

  test('a destination that goes away fails the copy; the source Handle stays usable', async () => {
    const src = await startNbdkit('--filter=delay', 'pattern', 'size=64M', 'delay-read=20ms');
    const dst = await startNbdkit('memory', 'size=64M');
    const srcHandle = handle();
    await srcHandle.connectUri(src.uri);
    const dstHandle = new Handle();
    await dstHandle.connectUri(dst.uri);
    const copying = copy(srcHandle, dstHandle, { requestSize: 256 * KiB, onProgress: () => dst.process.kill('SIGKILL') });
    await expect(copying).rejects.toBeInstanceOf(NbdError);
    dstHandle.close();
    expect(srcHandle.aioInFlight()).toBe(0);
    await srcHandle.pread(Buffer.alloc(512), 0);
  });
});
