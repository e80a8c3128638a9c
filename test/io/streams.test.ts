// Handle#createReadStream and #createWriteStream against real servers:
// bytes equal to the export, server block-size limits obeyed, bounded
// requests in flight and backpressure, abort, errors, EPERM, ENOSPC.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Handle } from '../../lib';
import { connected, nbdkit, pattern, startNbdkit, tempDir } from '../helpers/servers';
import { waitFor } from '../helpers/wait';
import { collectUnhandledRejections } from '../helpers/unhandled';
import { commandOutput } from '../helpers/io';

collectUnhandledRejections();

const KiB = 1024;
const MiB = 1024 * KiB;

/** Everything a Readable delivers, concatenated. */
async function drain(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Nothing in flight (a handle never connected, or closed, has nothing in flight). */
function idle(h: Handle<boolean>): boolean {
  return h.closed || h.aioIsCreated() || h.aioInFlight() === 0;
}

/** The error a stream is destroyed with, and whether the handle was idle by its 'close'. */
function streamError(s: Readable | Writable, h: Handle<boolean>): Promise<{ error: Error & { code?: string; errno?: number }; idleAtClose: boolean }> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    s.on('error', (e) => (error = e));
    s.on('close', () => resolve({ error: error as Error & { code?: string }, idleAtClose: idle(h) }));
  });
}

/** Records every call of a Handle method with its arguments, and aioInFlight() just before it. */
function spyCalls<K extends 'pread' | 'pwrite' | 'flush'>(h: Handle<boolean>, name: K): { calls: unknown[][]; inFlightBefore: number[] } {
  const calls: unknown[][] = [];
  const inFlightBefore: number[] = [];
  const original = (h[name] as (...a: unknown[]) => Promise<void>).bind(h);
  (h as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
    calls.push(args);
    inFlightBefore.push(h.aioInFlight());
    return original(...args);
  };
  return { calls, inFlightBefore };
}

/** A Readable of the given chunks. */
function chunksOf(data: Buffer, sizes: number[]): Readable {
  const parts: Buffer[] = [];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - off);
    parts.push(data.subarray(off, off + n));
    off += n;
  }
  return Readable.from(parts);
}

describe('createReadStream', () => {
  test('a read stream of a whole export of odd size is byte-equal to it', async () => {
    const size = 5 * MiB + 3;
    const h = await connected(nbdkit('pattern', `size=${size}`));
    const got = await drain(h.createReadStream());
    expect(got.length).toBe(size);
    expect(got.equals(pattern(0, size + 5).subarray(0, size))).toBe(true);
  });

  test('an inclusive range start 1, end 1048577 delivers exactly those 1048577 bytes', async () => {
    const h = await connected(nbdkit('pattern', 'size=4M'));
    const got = await drain(h.createReadStream({ start: 1, end: 1048577 }));
    expect(got.length).toBe(1048577);
    expect(got.equals(pattern(0, 1048584).subarray(1, 1048578))).toBe(true);
  });

  test("a range crossing the server's maximum block size is split into aligned reads the server accepts", async () => {
    // blocksize-error-policy=error: the server fails any read over 64 KiB or not aligned to 512.
    const h = await connected(
      nbdkit('--filter=blocksize-policy', 'pattern', 'size=1M', 'blocksize-minimum=512', 'blocksize-maximum=65536', 'blocksize-error-policy=error'),
    );
    const spy = spyCalls(h, 'pread');
    const got = await drain(h.createReadStream({ start: 1000, end: 300000, requestSize: 1 * MiB }));
    expect(got.equals(pattern(0, 300008).subarray(1000, 300001))).toBe(true);
    for (const [buf, offset] of spy.calls as [Buffer, number][]) {
      expect(buf.length).toBeLessThanOrEqual(65536);
      expect(offset % 512).toBe(0);
      expect(buf.length % 512).toBe(0);
    }
    // The aligned range [512, 300544) in 64 KiB requests.
    expect(spy.calls.length).toBe(Math.ceil((300544 - 512) / 65536));
  });

  test('end past the export is clamped, start at the end gives no bytes, start > end throws', async () => {
    const h = await connected(nbdkit('pattern', 'size=64K'));
    const tail = await drain(h.createReadStream({ start: 65536 - 10, end: 10 * MiB }));
    expect(tail.equals(pattern(65536 - 16, 16).subarray(6))).toBe(true);
    expect((await drain(h.createReadStream({ start: 65536 }))).length).toBe(0);
    expect((await drain(h.createReadStream({ start: 5, end: 5 }))).equals(pattern(0, 8).subarray(5, 6))).toBe(true);
    expect(() => h.createReadStream({ start: 10, end: 9 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => h.createReadStream({ queueDepth: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => h.createReadStream({ start: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => h.createReadStream({ signal: {} as AbortSignal })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => h.createReadStream('x' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  test('a read stream on a bigint handle takes bigint offsets', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'), { bigint: true });
    const got = await drain(h.createReadStream({ start: 8n, end: 23n }));
    expect(got.equals(pattern(8, 16))).toBe(true);
  });

  test("a read stream's reads skip libnbd's zeroing of their buffers, and the handle's setting is as it was after each issue", async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const seen: boolean[] = [];
    const original = h.pread.bind(h);
    h.pread = (buf, offset, options) => {
      seen.push(h.getPreadInitialize());
      return original(buf, offset, options);
    };
    const got = await drain(h.createReadStream({ requestSize: 256 * KiB }));
    expect(got.equals(pattern(0, MiB))).toBe(true);
    expect(seen).toEqual([false, false, false, false]);
    expect(h.getPreadInitialize()).toBe(true);
  });

  test('no more than queueDepth reads are ever in flight', async () => {
    const h = await connected(nbdkit('--filter=delay', 'null', 'size=4M', 'delay-read=5ms'));
    const spy = spyCalls(h, 'pread');
    const got = await drain(h.createReadStream({ queueDepth: 3, requestSize: 64 * KiB }));
    expect(got.length).toBe(4 * MiB);
    expect(spy.calls.length).toBe(64);
    expect(Math.max(...spy.inFlightBefore)).toBeLessThanOrEqual(2);
  });

  test('a paused reader on a 1 GiB export holds a bounded number of reads: memory does not grow with the export', async () => {
    const h = await connected(nbdkit('null', 'size=1G'));
    const spy = spyCalls(h, 'pread');
    const requestSize = 256 * KiB;
    const queueDepth = 8;
    const highWaterMark = 1 * MiB;
    const s = h.createReadStream({ requestSize, queueDepth, highWaterMark });
    let delivered = 0;
    await new Promise<void>((resolve) => {
      s.on('data', (c: Buffer) => {
        delivered += c.length;
        if (delivered >= 4 * MiB) {
          s.pause();
          resolve();
        }
      });
    });
    // Let everything issued complete, then give the stream every chance to issue more.
    await waitFor(() => h.aioInFlight() === 0, 'the reads in flight');
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 50));
    const issued = spy.calls.length;
    const held = issued - delivered / requestSize;
    // What the stream holds: its buffer (highWaterMark, + one read over it) and queueDepth reads.
    expect(held).toBeLessThanOrEqual(queueDepth + highWaterMark / requestSize + 1);
    expect(issued * requestSize).toBeLessThan(32 * MiB);
    expect(s.readableLength).toBeLessThanOrEqual(highWaterMark + requestSize);
    // Resumed, it goes on in order from where it was.
    const more = await new Promise<Buffer>((resolve) => {
      s.once('data', (c: Buffer) => resolve(c));
      s.resume();
    });
    expect(more.length).toBe(requestSize);
    s.destroy();
    await new Promise((r) => s.once('close', r));
    expect(h.aioInFlight()).toBe(0);
  });

  test('aborting a read stream destroys it with an AbortError once its reads in flight completed; the handle stays usable', async () => {
    const h = await connected(nbdkit('--filter=delay', 'pattern', 'size=64M', 'delay-read=20ms'));
    const ac = new AbortController();
    const s = h.createReadStream({ signal: ac.signal, queueDepth: 4 });
    const ended = streamError(s, h);
    const spy = spyCalls(h, 'pread');
    const first = await new Promise<Buffer>((resolve) => s.once('data', resolve));
    expect(first.equals(pattern(0, first.length))).toBe(true);
    const reason = new Error('stop reading');
    ac.abort(reason);
    const { error, idleAtClose } = await ended;
    expect(error.name).toBe('AbortError');
    expect(error.code).toBe('ABORT_ERR');
    expect(error.cause).toBe(reason);
    expect(idleAtClose).toBe(true);
    // It stopped issuing.
    const issued = spy.calls.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(spy.calls.length).toBe(issued);
    const buf = Buffer.alloc(4096);
    await h.pread(buf, 4096);
    expect(buf.equals(pattern(4096, 4096))).toBe(true);
  });

  test('an already-aborted signal destroys the read stream without reading', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const spy = spyCalls(h, 'pread');
    const s = h.createReadStream({ signal: AbortSignal.abort('early') });
    const { error } = await streamError(s, h);
    expect(error.name).toBe('AbortError');
    expect(error.cause).toBe('early');
    expect(spy.calls.length).toBe(0);
  });

  test('a failed read destroys the stream with its NbdError, after the reads in flight', async () => {
    const dir = tempDir();
    const trigger = join(dir, 'fail-now');
    const h = await connected(
      nbdkit('--filter=error', 'pattern', 'size=64M', 'error-pread=EIO', 'error-pread-rate=100%', `error-pread-file=${trigger}`),
    );
    const s = h.createReadStream({ queueDepth: 4 });
    const ended = streamError(s, h);
    await new Promise<void>((resolve) =>
      s.once('data', () => {
        writeFileSync(trigger, '');
        resolve();
      }),
    );
    const { error, idleAtClose } = await ended;
    expect(error.name).toBe('NbdError');
    expect(error.code).toBe('EIO');
    expect(error.message).toMatch(/^nbd_pread: /);
    expect(idleAtClose).toBe(true);
  });

  test('a read stream of a closed or unconnected handle errors with its NbdError', async () => {
    const h = new Handle();
    const { error } = await streamError(h.createReadStream(), h);
    expect(error.name).toBe('NbdError');
    h.close();
    const { error: closed } = await streamError(h.createReadStream(), h as Handle<boolean>);
    expect(closed.name).toBe('NbdError');
    expect(closed.code).toBe('EINVAL');
  });
});

describe('createWriteStream', () => {
  test('a write stream round trip is byte-equal: small writes are coalesced up to highWaterMark', async () => {
    const h = await connected(nbdkit('memory', 'size=8M'));
    const data = randomBytes(5 * MiB + 123);
    const spy = spyCalls(h, 'pwrite');
    const w = h.createWriteStream({ highWaterMark: 256 * KiB });
    let finishedIdle: boolean | undefined;
    w.on('finish', () => (finishedIdle = h.aioInFlight() === 0));
    await pipeline(chunksOf(data, [1000, 4096, 65537, 7, 30000]), w);
    expect(finishedIdle).toBe(true);
    // 5 MiB in 256 KiB requests (the last one short), not one per chunk.
    expect(spy.calls.length).toBe(Math.ceil(data.length / (256 * KiB)));
    for (const [buf] of spy.calls as [Buffer][]) expect(buf.length).toBeLessThanOrEqual(256 * KiB);
    const back = Buffer.alloc(data.length);
    await h.pread(back, 0);
    expect(back.equals(data)).toBe(true);
  });

  test('nbdcopy reads back what a write stream wrote from start', async () => {
    const server = await startNbdkit('memory', 'size=4M');
    const w = new Handle();
    await w.connectUnix(server.socket);
    const data = randomBytes(3 * MiB + 17);
    await pipeline(chunksOf(data, [65536]), w.createWriteStream({ start: 4096, flush: true }));
    await w.shutdown();
    w.close();
    const file = join(tempDir(), 'copy.raw');
    commandOutput('nbdcopy', [server.uri, file]);
    const copy = readFileSync(file);
    expect(copy.length).toBe(4 * MiB);
    expect(copy.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(copy.subarray(4096, 4096 + data.length).equals(data)).toBe(true);
    expect(copy.subarray(4096 + data.length).equals(Buffer.alloc(4 * MiB - 4096 - data.length))).toBe(true);
  });

  test("writes are split to the server's maximum and aligned to its minimum; an unaligned start and end keep the bytes around them", async () => {
    const h = await connected(
      nbdkit('--filter=blocksize-policy', 'memory', 'size=1M', 'blocksize-minimum=512', 'blocksize-maximum=65536', 'blocksize-error-policy=error'),
    );
    const before = randomBytes(1 * MiB);
    for (let off = 0; off < before.length; off += 65536) await h.pwrite(before.subarray(off, off + 65536), off);
    const spy = spyCalls(h, 'pwrite');
    const data = randomBytes(200001);
    await pipeline(chunksOf(data, [777, 65536 * 3]), h.createWriteStream({ start: 1000, highWaterMark: 1 * MiB }));
    for (const [buf, offset] of spy.calls as [Buffer, number][]) {
      expect(buf.length).toBeLessThanOrEqual(65536);
      expect(offset % 512).toBe(0);
      expect(buf.length % 512).toBe(0);
    }
    const back = Buffer.alloc(1 * MiB);
    for (let off = 0; off < back.length; off += 65536) await h.pread(back.subarray(off, off + 65536), off);
    const expected = Buffer.from(before);
    data.copy(expected, 1000);
    expect(back.equals(expected)).toBe(true);
    // A stream given nothing writes nothing, not even its unaligned start's block.
    const calls = spy.calls.length;
    await pipeline(Readable.from([]), h.createWriteStream({ start: 1000 }));
    expect(spy.calls.length).toBe(calls);
  });

  test('no more than queueDepth writes are ever in flight', async () => {
    const h = await connected(nbdkit('--filter=delay', 'memory', 'size=8M', 'delay-write=5ms'));
    const spy = spyCalls(h, 'pwrite');
    await pipeline(chunksOf(randomBytes(4 * MiB), [65536]), h.createWriteStream({ highWaterMark: 64 * KiB, queueDepth: 3 }));
    expect(spy.calls.length).toBe(64);
    expect(Math.max(...spy.inFlightBefore)).toBeLessThanOrEqual(2);
  });

  test("writing past the export's end errors with ENOSPC, naming the end", async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const w = h.createWriteStream({ start: 1 * MiB - 10 });
    const ended = streamError(w, h);
    w.write(Buffer.alloc(5, 1));
    w.end(Buffer.alloc(20, 2));
    const { error } = await ended;
    expect(error.name).toBe('NbdError');
    expect(error.code).toBe('ENOSPC');
    expect(error.message).toMatch(/past the end of the export \(1048576 bytes\)/);
  });

  test('a read-only export makes the write stream error with EPERM', async () => {
    const h = await connected(nbdkit('-r', 'memory', 'size=1M'));
    const w = h.createWriteStream();
    const ended = streamError(w, h);
    w.end(Buffer.alloc(4096, 1));
    const { error, idleAtClose } = await ended;
    expect(error.name).toBe('NbdError');
    expect(error.code).toBe('EPERM');
    expect(idleAtClose).toBe(true);
  });

  test('a write the server fails destroys the stream with its NbdError', async () => {
    const h = await connected(nbdkit('--filter=error', 'memory', 'size=8M', 'error-pwrite=EIO', 'error-pwrite-rate=100%'));
    const w = h.createWriteStream({ highWaterMark: 64 * KiB });
    const ended = streamError(w, h);
    const source = chunksOf(randomBytes(2 * MiB), [65536]);
    const done = pipeline(source, w).catch((e: unknown) => e);
    const { error, idleAtClose } = await ended;
    expect(error.code).toBe('EIO');
    expect(error.message).toMatch(/^nbd_pwrite: /);
    expect(idleAtClose).toBe(true);
    expect(await done).toBe(error);
  });

  test("'finish' comes after every write completed and, with flush: true, after a flush", async () => {
    const h = await connected(nbdkit('--filter=delay', 'memory', 'size=4M', 'delay-write=20ms'));
    const order: string[] = [];
    const flush = h.flush.bind(h);
    h.flush = (...args: Parameters<Handle['flush']>) => {
      order.push(`flush with ${h.aioInFlight()} in flight`);
      return flush(...args);
    };
    const w = h.createWriteStream({ flush: true, highWaterMark: 64 * KiB });
    w.on('finish', () => order.push(`finish with ${h.aioInFlight()} in flight`));
    await pipeline(chunksOf(randomBytes(1 * MiB), [65536]), w);
    expect(order).toEqual(['flush with 0 in flight', 'finish with 0 in flight']);
    // Without flush: true, no flush.
    order.length = 0;
    await pipeline(chunksOf(randomBytes(1 * MiB), [65536]), h.createWriteStream());
    expect(order).toEqual([]);
  });

  test('aborting a write stream destroys it with an AbortError once its writes in flight completed; the handle stays usable', async () => {
    const h = await connected(nbdkit('--filter=delay', 'memory', 'size=64M', 'delay-write=20ms'));
    const ac = new AbortController();
    const w = h.createWriteStream({ signal: ac.signal, highWaterMark: 64 * KiB, queueDepth: 4 });
    const ended = streamError(w, h);
    const spy = spyCalls(h, 'pwrite');
    const source = chunksOf(Buffer.alloc(32 * MiB, 7), [65536]);
    const done = pipeline(source, w).catch((e: unknown) => e);
    await waitFor(() => spy.calls.length >= 4, 'some writes');
    const reason = new Error('stop writing');
    ac.abort(reason);
    const { error, idleAtClose } = await ended;
    expect(error.name).toBe('AbortError');
    expect(error.cause).toBe(reason);
    expect(idleAtClose).toBe(true);
    expect(((await done) as Error).name).toBe('AbortError');
    const issued = spy.calls.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(spy.calls.length).toBe(issued);
    await h.pwrite(Buffer.alloc(512, 9), 0);
    const back = Buffer.alloc(512);
    await h.pread(back, 0);
    expect(back.equals(Buffer.alloc(512, 9))).toBe(true);
  });

  test('an already-aborted signal destroys the write stream without writing', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const spy = spyCalls(h, 'pwrite');
    const w = h.createWriteStream({ signal: AbortSignal.abort('early') });
    const { error } = await streamError(w, h);
    expect(error.name).toBe('AbortError');
    expect(error.cause).toBe('early');
    expect(spy.calls.length).toBe(0);
  });
});
