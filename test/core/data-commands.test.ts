// The data commands other than reads: pwrite, flush, trim, cache, zero and
// block status, in their aio and Promise forms, against real servers
// (nbdkit memory/data/eval/sparse-random and filters, qemu-nbd over a sparse
// file). Every error case, and the block-status traces, are also run
// through libnbd's Python binding (Debian's python3-libnbd) and compared:
// libnbd is the reference (docs/architecture.md, "Where libnbd's rules live").
import { constants as os } from 'node:os';
import {
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLAG_REQ_ONE,
  Handle,
  NbdError,
  errnoName,
  STATE_HOLE,
  STATE_ZERO,
  STRICT_BOUNDS,
  STRICT_COMMANDS,
  STRICT_ZERO_SIZE,
  type ErrorRef,
} from '../../lib';
import { connected, handle, nbdkit, pattern, sparseFile, startQemuNbd } from '../helpers/servers';
import { runPython } from '../helpers/python';
import { waitFor } from '../helpers/wait';

const { EIO, EINVAL, ENOMEM, EPROTO, EPERM, ENOSPC } = os.errno;
const MiB = 1024 * 1024;

/** Polls aioCommandCompleted until it is no longer false (true, or it throws). */
async function retire(h: Handle<boolean>, cookie: number): Promise<true> {
  for (;;) {
    if (h.aioCommandCompleted(cookie)) return true;
    await new Promise((r) => setImmediate(r));
  }
}

/** Issues an aio command whose completion callback returns `ret`; resolves with the error.value it saw. */
function withCompletion(issue: (completion: (err: ErrorRef) => number) => number, ret = 1): Promise<{ cookie: number; error: number }> {
  return new Promise((resolve) => {
    let cookie = 0;
    let seen: number | undefined;
    cookie = issue((err) => {
      seen = err.value;
      setImmediate(() => resolve({ cookie, error: seen! }));
      return ret;
    });
  });
}

function fill(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

async function readBack(h: Handle<boolean>, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length, 0xee);
  await h.pread(b, offset);
  return b;
}

type Extent = [metacontext: string, offset: number | bigint, entries: number[], errorOnEntry: number];

// ====================================================================== writes and reads

describe('write/read round trips (nbdkit memory)', () => {
  let h: Handle;
  beforeAll(async () => {
    h = await connected(nbdkit('memory', 'size=1M'));
  });

  test('nbdkit memory advertises every write command', () => {
    expect({
      readOnly: h.isReadOnly(),
      flush: h.canFlush(),
      fua: h.canFua(),
      trim: h.canTrim(),
      zero: h.canZero(),
      fastZero: h.canFastZero(),
      cache: h.canCache(),
    }).toEqual({ readOnly: false, flush: true, fua: true, trim: true, zero: true, fastZero: true, cache: true });
  });

  test('a Buffer written with pwrite reads back the same, its neighbours untouched', async () => {
    const data = fill(4096, 1);
    await expect(h.pwrite(data, 8192)).resolves.toBeUndefined();
    const back = await readBack(h, 8192 - 512, 4096 + 1024);
    expect(back.subarray(512, 512 + 4096).equals(data)).toBe(true);
    expect(back.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(back.subarray(512 + 4096).every((b) => b === 0)).toBe(true);
  });

  test('pwrite a Uint8Array at a non-zero byteOffset writes only its own bytes', async () => {
    const backing = new ArrayBuffer(2048);
    new Uint8Array(backing).fill(0x55);
    const view = new Uint8Array(backing, 512, 1024);
    view.set(fill(1024, 2));
    await h.pwrite(view, 16384);
    const back = await readBack(h, 16384 - 16, 1024 + 32);
    expect(back.subarray(16, 16 + 1024).equals(fill(1024, 2))).toBe(true);
    expect(back.subarray(0, 16).every((b) => b === 0)).toBe(true);
    expect(back.subarray(16 + 1024).every((b) => b === 0)).toBe(true);
    // pread into a view at a byteOffset too.
    const into = new ArrayBuffer(4096);
    const dst = new Uint8Array(into, 1000, 1024);
    await h.pread(dst, 16384);
    expect(Buffer.from(dst).equals(fill(1024, 2))).toBe(true);
    expect(new Uint8Array(into, 0, 1000).every((b) => b === 0)).toBe(true);
  });

  test('pwrite writes a DataView and other typed arrays', async () => {
    const backing = new ArrayBuffer(64);
    const dv = new DataView(backing, 8, 16);
    dv.setBigUint64(0, 0x0102030405060708n);
    dv.setBigUint64(8, 0x1112131415161718n);
    await h.pwrite(dv, 24576);
    const back = await readBack(h, 24576, 16);
    expect(back.readBigUInt64BE(0)).toBe(0x0102030405060708n);
    expect(back.readBigUInt64BE(8)).toBe(0x1112131415161718n);
    const u32 = new Uint32Array([0xdeadbeef, 0xcafef00d]);
    await h.pwrite(u32, 24576 + 16);
    const r = new Uint32Array(2);
    await h.pread(r, 24576 + 16);
    expect(Array.from(r)).toEqual([0xdeadbeef, 0xcafef00d]);
  });

  test('aioPwrite with a completion callback (auto-retired) and without (retired by aioCommandCompleted)', async () => {
    const data = fill(8192, 3);
    const { cookie, error } = await withCompletion((done) => h.aioPwrite(data, 32768, done));
    expect(cookie).toBeGreaterThanOrEqual(1);
    expect(error).toBe(0);
    expect(h.aioCommandCompleted(cookie)).toBe(false); // auto-retired by returning 1
    expect((await readBack(h, 32768, 8192)).equals(data)).toBe(true);

    const data2 = fill(512, 4);
    const c2 = h.aioPwrite(data2, 65536);
    expect(c2).toBeGreaterThan(cookie);
    expect(h.aioInFlight()).toBe(1);
    await expect(retire(h, c2)).resolves.toBe(true);
    expect(h.aioCommandCompleted(c2)).toBe(false);
    expect(h.aioInFlight()).toBe(0);
    expect((await readBack(h, 65536, 512)).equals(data2)).toBe(true);
  });

  test('32 aioPwrites in flight at once all land where they were aimed', async () => {
    const cookies = [];
    for (let i = 0; i < 32; i++) cookies.push(h.aioPwrite(fill(4096, 100 + i), 131072 + i * 4096));
    expect(h.aioInFlight()).toBe(32);
    for (const c of cookies) await retire(h, c);
    const back = await readBack(h, 131072, 32 * 4096);
    for (let i = 0; i < 32; i++) expect(back.subarray(i * 4096, (i + 1) * 4096).equals(fill(4096, 100 + i))).toBe(true);
  });

  test('FUA writes (canFua) and flush succeed in their Promise and aio forms', async () => {
    expect(h.canFua()).toBe(true);
    const data = fill(4096, 5);
    await h.pwrite(data, 262144, CMD_FLAG_FUA);
    expect((await readBack(h, 262144, 4096)).equals(data)).toBe(true);
    const { error } = await withCompletion((done) => h.aioPwrite(fill(512, 6), 262144, done, CMD_FLAG_FUA));
    expect(error).toBe(0);
    expect((await readBack(h, 262144, 512)).equals(fill(512, 6))).toBe(true);
    await expect(h.flush()).resolves.toBeUndefined();
    const f = await withCompletion((done) => h.aioFlush(done));
    expect(f.error).toBe(0);
    const c = h.aioFlush();
    await expect(retire(h, c)).resolves.toBe(true);
  });

  test('trim then read gives zeros in the trimmed range only', async () => {
    const data = fill(16384, 7);
    await h.pwrite(data, 327680);
    await h.trim(4096, 327680 + 4096);
    let back = await readBack(h, 327680, 16384);
    expect(back.subarray(0, 4096).equals(data.subarray(0, 4096))).toBe(true);
    expect(back.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
    expect(back.subarray(8192).equals(data.subarray(8192))).toBe(true);
    // aio form, FUA allowed on trim.
    const { error } = await withCompletion((done) => h.aioTrim(4096, 327680, done, CMD_FLAG_FUA));
    expect(error).toBe(0);
    back = await readBack(h, 327680, 16384);
    expect(back.subarray(0, 8192).every((b) => b === 0)).toBe(true);
    expect(back.subarray(8192).equals(data.subarray(8192))).toBe(true);
  });

  test.each([
    ['no flags', 0],
    ['NO_HOLE', CMD_FLAG_NO_HOLE],
    ['FAST_ZERO', CMD_FLAG_FAST_ZERO],
    ['FUA | NO_HOLE | FAST_ZERO', CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO],
  ])('zero with %s zeroes exactly the range', async (_name, flags) => {
    const data = fill(12288, 8);
    await h.pwrite(data, 393216);
    await h.zero(4096, 393216 + 4096, flags);
    const back = await readBack(h, 393216, 12288);
    expect(back.subarray(0, 4096).equals(data.subarray(0, 4096))).toBe(true);
    expect(back.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
    expect(back.subarray(8192).equals(data.subarray(8192))).toBe(true);
  });

  test('aioZero with a completion callback zeroes the range and reports error 0', async () => {
    await h.pwrite(fill(4096, 9), 458752);
    const { error } = await withCompletion((done) => h.aioZero(4096, 458752, done, CMD_FLAG_NO_HOLE));
    expect(error).toBe(0);
    expect((await readBack(h, 458752, 4096)).every((b) => b === 0)).toBe(true);
  });

  test('cache (canCache): Promise and aio forms succeed and change nothing', async () => {
    expect(h.canCache()).toBe(true);
    const data = fill(4096, 10);
    await h.pwrite(data, 524288);
    await expect(h.cache(65536, 524288 - 4096)).resolves.toBeUndefined();
    const { error } = await withCompletion((done) => h.aioCache(4096, 524288, done));
    expect(error).toBe(0);
    const c = h.aioCache(512, 0);
    await expect(retire(h, c)).resolves.toBe(true);
    expect((await readBack(h, 524288, 4096)).equals(data)).toBe(true);
  });

  test('bigint counts and offsets are accepted', async () => {
    const data = fill(512, 11);
    await h.pwrite(data, 589824n);
    expect((await readBack(h, 589824, 512)).equals(data)).toBe(true);
    await h.zero(256n, 589824n);
    await h.trim(128n, 589824n + 256n);
    await h.cache(512n, 589824n);
    const back = await readBack(h, 589824, 512);
    expect(back.subarray(0, 384).every((b) => b === 0)).toBe(true);
    expect(back.subarray(384).equals(data.subarray(384))).toBe(true);
  });

  test('a completion callback can issue the next write on the same handle', async () => {
    const order: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const next = (i: number) =>
        h.aioPwrite(pattern(i * 512, 512), 655360 + i * 512, (err) => {
          if (err.value !== 0) reject(new Error(`errno ${err.value}`));
          order.push(i);
          if (i < 15) next(i + 1);
          else resolve();
          return 1;
        });
      next(0);
    });
    expect(order).toEqual([...Array(16).keys()]);
    expect((await readBack(h, 655360, 16 * 512)).equals(pattern(0, 16 * 512))).toBe(true);
  });
});

describe('capabilities of other servers', () => {
  test('read-only nbdkit: no write, trim, zero or FUA; flush and cache still work', async () => {
    const h = await connected(nbdkit('-r', 'memory', 'size=1M'));
    expect([h.isReadOnly(), h.canTrim(), h.canZero(), h.canFua(), h.canFastZero()]).toEqual([true, false, false, false, false]);
    expect([h.canFlush(), h.canCache()]).toEqual([true, true]);
    await expect(h.flush()).resolves.toBeUndefined();
    await expect(h.cache(4096, 0)).resolves.toBeUndefined();
    expect(() => h.aioPwrite(Buffer.alloc(512), 0)).toThrow(
      expect.objectContaining({ errno: EPERM, code: 'EPERM', message: expect.stringContaining('server does not support write operations') }),
    );
  });

  test('sparse-random has no fast zero: FAST_ZERO is refused client-side, plain zero works', async () => {
    const h = await connected(nbdkit('sparse-random', 'size=1M'));
    expect([h.canZero(), h.canFastZero()]).toEqual([true, false]);
    expect(() => h.aioZero(512, 0, null, CMD_FLAG_FAST_ZERO)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('server does not support the fast zero flag') }),
    );
    await h.zero(512, 0);
    expect((await readBack(h, 0, 512)).every((b) => b === 0)).toBe(true);
  });

  test('filters nozero / nocache turn the commands off', async () => {
    const nz = await connected(nbdkit('--filter=nozero', 'memory', 'size=1M'));
    expect([nz.canZero(), nz.canFastZero(), nz.canTrim()]).toEqual([false, false, true]);
    const nc = await connected(nbdkit('--filter=nocache', 'memory', 'size=1M'));
    expect([nc.canCache(), nc.canZero()]).toEqual([false, true]);
  });
});

// ====================================================================== errors

/** An nbdkit eval export with reads and writes only: no flush, trim, cache or FUA. */
const EVAL = [
  'eval',
  'get_size=echo 1048576',
  'pread=dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null',
  'pwrite=cat >/dev/null',
];

type Op = 'pwrite' | 'flush' | 'trim' | 'zero' | 'cache' | 'block_status';

interface ErrorCase {
  name: string;
  /** nbdkit arguments after `nbdkit -s --exit-with-parent --log=null`. */
  server: string[];
  /** STRICT_* bits cleared after connecting. */
  clear?: 'COMMANDS' | 'BOUNDS' | 'ZERO_SIZE';
  meta?: boolean;
  op: Op;
  count: number;
  offset: number;
  flags?: number;
  /** What libnbd gives for the sync call (nbd_<op>): errno and message. */
  expect: [errno: number, message: string];
}

/** libnbd's name of a command in "<type>: command failed". */
const CMD_TYPE: Record<Op, string> = {
  pwrite: 'write',
  flush: 'flush',
  trim: 'trim',
  zero: 'write-zeroes',
  cache: 'cache',
  block_status: 'block-status',
};

const RO = ['-r', 'memory', 'size=1M'];
const MEM = ['memory', 'size=1M'];
const END = MiB - 256;
const errFilter = (what: string) => ['--filter=error', 'memory', 'size=1M', `error-${what}=EIO`, `error-${what}-rate=1`];

const ERROR_CASES: ErrorCase[] = [
  // Read-only export (STRICT_COMMANDS: checked client-side).
  { name: 'pwrite on a read-only export', server: RO, op: 'pwrite', count: 512, offset: 0,
    expect: [EPERM, 'nbd_pwrite: server does not support write operations: Operation not permitted'] },
  { name: 'pwrite FUA on a read-only export (write check first)', server: RO, op: 'pwrite', count: 512, offset: 0, flags: CMD_FLAG_FUA,
    expect: [EPERM, 'nbd_pwrite: server does not support write operations: Operation not permitted'] },
  { name: 'trim on a read-only export', server: RO, op: 'trim', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_trim: server does not support trim operations: Invalid argument'] },
  { name: 'zero on a read-only export', server: RO, op: 'zero', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_zero: server does not support zero operations: Invalid argument'] },
  { name: 'pwrite on a read-only export without STRICT_COMMANDS: the server\'s EPERM', server: RO, clear: 'COMMANDS', op: 'pwrite', count: 512, offset: 0,
    expect: [EPERM, 'nbd_pwrite: write: command failed: Operation not permitted'] },
  { name: 'zero on a read-only export without STRICT_COMMANDS: the server\'s EPERM', server: RO, clear: 'COMMANDS', op: 'zero', count: 512, offset: 0,
    expect: [EPERM, 'nbd_zero: write-zeroes: command failed: Operation not permitted'] },
  // Past the end (STRICT_BOUNDS): ENOSPC for writes, EINVAL otherwise.
  { name: 'pwrite past the end', server: MEM, op: 'pwrite', count: 512, offset: END,
    expect: [ENOSPC, 'nbd_pwrite: request out of bounds: No space left on device'] },
  { name: 'trim past the end', server: MEM, op: 'trim', count: 512, offset: END,
    expect: [ENOSPC, 'nbd_trim: request out of bounds: No space left on device'] },
  { name: 'zero past the end', server: MEM, op: 'zero', count: 512, offset: END,
    expect: [ENOSPC, 'nbd_zero: request out of bounds: No space left on device'] },
  { name: 'cache past the end', server: MEM, op: 'cache', count: 512, offset: END,
    expect: [EINVAL, 'nbd_cache: request out of bounds: Invalid argument'] },
  { name: 'block status past the end', server: MEM, meta: true, op: 'block_status', count: 4096, offset: MiB - 1024,
    expect: [EINVAL, 'nbd_block_status: request out of bounds: Invalid argument'] },
  { name: 'pwrite past the end without STRICT_BOUNDS: the server\'s ENOSPC', server: MEM, clear: 'BOUNDS', op: 'pwrite', count: 512, offset: END,
    expect: [ENOSPC, 'nbd_pwrite: write: command failed: No space left on device'] },
  { name: 'trim past the end without STRICT_BOUNDS: the server\'s EINVAL', server: MEM, clear: 'BOUNDS', op: 'trim', count: 512, offset: END,
    expect: [EINVAL, 'nbd_trim: trim: command failed: Invalid argument'] },
  // Count 0 (STRICT_ZERO_SIZE).
  ...(['pwrite', 'trim', 'zero', 'cache', 'block_status'] as const).map((op): ErrorCase => ({
    name: `${op} of count 0`, server: MEM, meta: op === 'block_status', op, count: 0, offset: 0,
    expect: [EINVAL, `nbd_${op}: count cannot be 0: Invalid argument`],
  })),
  { name: 'pwrite of count 0 without STRICT_ZERO_SIZE: sent to the server (nbdkit: ENOSPC)', server: MEM, clear: 'ZERO_SIZE', op: 'pwrite', count: 0, offset: 0,
    expect: [ENOSPC, 'nbd_pwrite: write: command failed: No space left on device'] },
  { name: 'trim of count 0 without STRICT_ZERO_SIZE: sent to the server (nbdkit: EINVAL)', server: MEM, clear: 'ZERO_SIZE', op: 'trim', count: 0, offset: 0,
    expect: [EINVAL, 'nbd_trim: trim: command failed: Invalid argument'] },
  // Flags a command does not take.
  { name: 'flush with FUA', server: MEM, op: 'flush', count: 0, offset: 0, flags: CMD_FLAG_FUA,
    expect: [EINVAL, 'nbd_flush: flags: invalid value for flag: 0x1: Invalid argument'] },
  { name: 'trim with NO_HOLE', server: MEM, op: 'trim', count: 512, offset: 0, flags: CMD_FLAG_NO_HOLE,
    expect: [EINVAL, 'nbd_trim: flags: invalid value for flag: 0x2: Invalid argument'] },
  { name: 'pwrite with REQ_ONE', server: MEM, op: 'pwrite', count: 512, offset: 0, flags: CMD_FLAG_REQ_ONE,
    expect: [EINVAL, 'nbd_pwrite: flags: invalid value for flag: 0x8: Invalid argument'] },
  { name: 'cache with FUA', server: MEM, op: 'cache', count: 512, offset: 0, flags: CMD_FLAG_FUA,
    expect: [EINVAL, 'nbd_cache: flags: invalid value for flag: 0x1: Invalid argument'] },
  { name: 'block status with FUA', server: MEM, meta: true, op: 'block_status', count: 512, offset: 0, flags: CMD_FLAG_FUA,
    expect: [EINVAL, 'nbd_block_status: flags: invalid value for flag: 0x1: Invalid argument'] },
  // Commands the server did not advertise (STRICT_COMMANDS).
  { name: 'trim on a server without trim', server: EVAL, op: 'trim', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_trim: server does not support trim operations: Invalid argument'] },
  { name: 'flush on a server without flush', server: EVAL, op: 'flush', count: 0, offset: 0,
    expect: [EINVAL, 'nbd_flush: server does not support flush operations: Invalid argument'] },
  { name: 'cache on a server without cache', server: EVAL, op: 'cache', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_cache: server does not support cache operations: Invalid argument'] },
  { name: 'FUA on a server without FUA', server: EVAL, op: 'pwrite', count: 512, offset: 0, flags: CMD_FLAG_FUA,
    expect: [EINVAL, 'nbd_pwrite: server does not support the FUA flag: Invalid argument'] },
  { name: 'zero on nozero', server: ['--filter=nozero', ...MEM], op: 'zero', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_zero: server does not support zero operations: Invalid argument'] },
  { name: 'cache on nocache', server: ['--filter=nocache', ...MEM], op: 'cache', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_cache: server does not support cache operations: Invalid argument'] },
  { name: 'FAST_ZERO on a server without fast zero', server: ['sparse-random', 'size=1M'], op: 'zero', count: 512, offset: 0, flags: CMD_FLAG_FAST_ZERO,
    expect: [EINVAL, 'nbd_zero: server does not support the fast zero flag: Invalid argument'] },
  { name: 'trim on a server without trim, no STRICT_COMMANDS: the server\'s EINVAL', server: EVAL, clear: 'COMMANDS', op: 'trim', count: 512, offset: 0,
    expect: [EINVAL, 'nbd_trim: trim: command failed: Invalid argument'] },
  { name: 'flush on a server without flush, no STRICT_COMMANDS: the server\'s EINVAL', server: EVAL, clear: 'COMMANDS', op: 'flush', count: 0, offset: 0,
    expect: [EINVAL, 'nbd_flush: flush: command failed: Invalid argument'] },
  // Block status without a negotiated meta context.
  { name: 'block status without addMetaContext', server: MEM, op: 'block_status', count: 512, offset: 0,
    expect: [os.errno.ENOTSUP, 'nbd_block_status: did not negotiate any metadata contexts, either you did not call nbd_add_meta_context before connecting or the server does not support it: Operation not supported'] },
  // Server errors (the error filter).
  { name: 'server EIO on pwrite', server: errFilter('pwrite'), op: 'pwrite', count: 512, offset: 0,
    expect: [EIO, 'nbd_pwrite: write: command failed: Input/output error'] },
  { name: 'server EIO on trim', server: errFilter('trim'), op: 'trim', count: 512, offset: 0,
    expect: [EIO, 'nbd_trim: trim: command failed: Input/output error'] },
  { name: 'server EIO on zero', server: errFilter('zero'), op: 'zero', count: 512, offset: 0,
    expect: [EIO, 'nbd_zero: write-zeroes: command failed: Input/output error'] },
  { name: 'server EIO on cache', server: errFilter('cache'), op: 'cache', count: 512, offset: 0,
    expect: [EIO, 'nbd_cache: cache: command failed: Input/output error'] },
  { name: 'server EIO on block status', server: errFilter('extents'), meta: true, op: 'block_status', count: 512, offset: 0,
    expect: [EIO, 'nbd_block_status: block-status: command failed: Input/output error'] },
];

/** What one case gives: the aio form (failing at issue, or at retirement) and the sync/Promise form. */
interface ErrorTrace {
  aio: { issue: [number, string] } | { completion: number; completed: [number, string] | true | 'false' };
  sync: [number, string] | 'ok';
}

const ERRORS_PY = String.raw`
import json, sys
import nbd

def err(e):
    return [e.errnum, e.string]

def issue(h, c, comp):
    op, n, off, fl = c['op'], c['count'], c['offset'], c.get('flags', 0)
    if op == 'pwrite':
        return h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(n)), off, comp, fl)
    if op == 'flush':
        return h.aio_flush(comp, fl)
    if op == 'block_status':
        return h.aio_block_status(n, off, lambda *a: 0, comp, fl)
    return getattr(h, 'aio_' + op)(n, off, comp, fl)

def sync(h, c):
    op, n, off, fl = c['op'], c['count'], c['offset'], c.get('flags', 0)
    if op == 'pwrite':
        return h.pwrite(bytes(n), off, fl)
    if op == 'flush':
        return h.flush(fl)
    if op == 'block_status':
        return h.block_status(n, off, lambda *a: 0, fl)
    return getattr(h, op)(n, off, fl)

def run(c):
    h = nbd.NBD()
    if c.get('meta'):
        h.add_meta_context('base:allocation')
    h.connect_command(['nbdkit', '-s', '--exit-with-parent', '--log=null'] + c['server'])
    if c.get('clear'):
        h.set_strict_mode(h.get_strict_mode() & ~getattr(nbd, 'STRICT_' + c['clear']))
    t = {}
    seen = []
    def comp(e):
        seen.append(e.value)
        return 0
    try:
        cookie = issue(h, c, comp)
    except nbd.Error as e:
        t['aio'] = {'issue': err(e)}
    else:
        while not seen:
            h.poll(-1)
        try:
            done = h.aio_command_completed(cookie)
            t['aio'] = {'completion': seen[0], 'completed': True if done else 'false'}
        except nbd.Error as e:
            t['aio'] = {'completion': seen[0], 'completed': err(e)}
    try:
        sync(h, c)
        t['sync'] = 'ok'
    except nbd.Error as e:
        t['sync'] = err(e)
    del h
    return t

print(json.dumps([run(c) for c in json.load(sys.stdin)]))
`;

function errOf(e: unknown): [number, string] {
  if (!(e instanceof NbdError)) throw e;
  return [e.errno, e.message];
}

async function connectCase(c: ErrorCase): Promise<Handle> {
  const h = handle();
  if (c.meta) h.addMetaContext('base:allocation');
  await h.connectCommand(nbdkit('--log=null', ...c.server));
  if (c.clear === 'COMMANDS') h.setStrictMode(h.getStrictMode() & ~STRICT_COMMANDS);
  if (c.clear === 'BOUNDS') h.setStrictMode(h.getStrictMode() & ~STRICT_BOUNDS);
  if (c.clear === 'ZERO_SIZE') h.setStrictMode(h.getStrictMode() & ~STRICT_ZERO_SIZE);
  return h;
}

function issueCase(h: Handle, c: ErrorCase, completion: (err: ErrorRef) => number): number {
  const flags = c.flags ?? 0;
  switch (c.op) {
    case 'pwrite': return h.aioPwrite(Buffer.alloc(c.count), c.offset, completion, flags);
    case 'flush': return h.aioFlush(completion, flags);
    case 'trim': return h.aioTrim(c.count, c.offset, completion, flags);
    case 'zero': return h.aioZero(c.count, c.offset, completion, flags);
    case 'cache': return h.aioCache(c.count, c.offset, completion, flags);
    case 'block_status': return h.aioBlockStatus(c.count, c.offset, () => 0, completion, flags);
  }
}

function promiseCase(h: Handle, c: ErrorCase): Promise<void> {
  const flags = c.flags ?? 0;
  switch (c.op) {
    case 'pwrite': return h.pwrite(Buffer.alloc(c.count), c.offset, flags);
    case 'flush': return h.flush(flags);
    case 'trim': return h.trim(c.count, c.offset, flags);
    case 'zero': return h.zero(c.count, c.offset, flags);
    case 'cache': return h.cache(c.count, c.offset, flags);
    case 'block_status': return h.blockStatus(c.count, c.offset, () => 0, flags);
  }
}

async function runCase(c: ErrorCase): Promise<ErrorTrace> {
  const h = await connectCase(c);
  try {
    const t = {} as ErrorTrace;
    const seen: number[] = [];
    let cookie = 0;
    try {
      cookie = issueCase(h, c, (err) => (seen.push(err.value), 0));
    } catch (e) {
      t.aio = { issue: errOf(e) };
    }
    if (t.aio === undefined) {
      await waitFor(() => seen.length > 0, 'the completion callback');
      try {
        t.aio = { completion: seen[0], completed: h.aioCommandCompleted(cookie) ? true : 'false' };
      } catch (e) {
        t.aio = { completion: seen[0], completed: errOf(e) };
      }
    }
    try {
      await promiseCase(h, c);
      t.sync = 'ok';
    } catch (e) {
      t.sync = errOf(e);
    }
    return t;
  } finally {
    h.close();
  }
}

/** The trace libnbd gives for a case, from its expectation (the Python run checks these). */
function expectedTrace(c: ErrorCase): ErrorTrace {
  const [errnum, message] = c.expect;
  const tail = message.replace(/^nbd_[a-z_]+: /, '');
  const serverSide = tail.startsWith(`${CMD_TYPE[c.op]}: command failed: `);
  return {
    aio: serverSide
      ? { completion: errnum, completed: [errnum, `nbd_aio_command_completed: ${tail}`] }
      : { issue: [errnum, `nbd_aio_${c.op}: ${tail}`] },
    sync: [errnum, message],
  };
}

describe('errors of the data commands equal libnbd\'s', () => {
  test('the expectations below are libnbd\'s own (the same cases through the Python binding)', async () => {
    const ref = await runPython<ErrorTrace[]>(ERRORS_PY, { input: ERROR_CASES });
    expect(ref).toHaveLength(ERROR_CASES.length);
    const named = (ts: ErrorTrace[]) => Object.fromEntries(ERROR_CASES.map((c, i) => [c.name, ts[i]]));
    expect(named(ref)).toEqual(named(ERROR_CASES.map(expectedTrace)));
  });

  // The aio form: synchronous errors keep libnbd's errno and message
  // (nbd_aio_<op>: ...); server errors reach the completion callback and
  // aioCommandCompleted ("<type>: command failed").
  test.each(ERROR_CASES.map((c) => [c.name, c] as const))('aio form: %s', async (_name, c) => {
    const h = await connectCase(c);
    const want = expectedTrace(c).aio;
    const seen: number[] = [];
    let cookie = 0;
    let thrown: unknown;
    try {
      cookie = issueCase(h, c, (err) => (seen.push(err.value), 0));
    } catch (e) {
      thrown = e;
    }
    if ('issue' in want) {
      expect(thrown).toBeInstanceOf(NbdError);
      expect(errOf(thrown)).toEqual(want.issue);
      expect(seen).toEqual([]); // no completion for a command never issued
      expect(h.aioInFlight()).toBe(0);
    } else {
      expect(thrown).toBeUndefined();
      await waitFor(() => seen.length > 0, 'the completion callback');
      expect(seen).toEqual([want.completion]);
      let err: unknown;
      try {
        h.aioCommandCompleted(cookie);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NbdError);
      expect(errOf(err)).toEqual(want.completed);
      expect(h.aioCommandCompleted(cookie)).toBe(false); // retired
      expect(h.aioIsReady()).toBe(true);
    }
    h.close();
  });

  // The Promise form is nbd_<op>: its rejection is what the sync C call
  // returns, message included.
  test.each(ERROR_CASES.map((c) => [c.name, c] as const))('Promise form: %s', async (_name, c) => {
    const h = await connectCase(c);
    const [errnum, message] = c.expect;
    let err: unknown;
    try {
      await promiseCase(h, c);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NbdError);
    expect(err).toMatchObject({ errno: errnum, code: errnoName(errnum) });
    expect((err as NbdError).message).toBe(message);
    h.close();
  });

  test('a whole case run agrees with the Python trace (read-only pwrite, server EIO on zero)', async () => {
    const cases = ERROR_CASES.filter((c) => c.name === 'pwrite on a read-only export' || c.name === 'server EIO on zero');
    expect(cases).toHaveLength(2);
    const ref = await runPython<ErrorTrace[]>(ERRORS_PY, { input: cases });
    const ours = [];
    for (const c of cases) ours.push(await runCase(c));
    expect(ours).toEqual(ref);
  });

  test('codes are the symbolic errno names', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    await expect(h.pwrite(Buffer.alloc(512), END)).rejects.toMatchObject({ code: 'ENOSPC', errno: ENOSPC });
    await expect(h.zero(0, 0)).rejects.toMatchObject({ code: 'EINVAL', errno: EINVAL });
    const ro = await connected(nbdkit('-r', 'memory', 'size=1M'));
    await expect(ro.pwrite(Buffer.alloc(512), 0)).rejects.toMatchObject({ code: 'EPERM', errno: EPERM });
  });

  test('after a server error the handle is still usable', async () => {
    const h = await connected(nbdkit('--log=null', ...errFilter('pwrite')));
    await expect(h.pwrite(Buffer.alloc(512, 1), 0)).rejects.toMatchObject({ code: 'EIO' });
    await h.zero(512, 0);
    await h.trim(512, 512);
    await h.flush();
    expect((await readBack(h, 0, 1024)).every((b) => b === 0)).toBe(true);
  });

  test('a completion callback may replace a server error (-1 with a new errno)', async () => {
    const h = await connected(nbdkit('--log=null', ...errFilter('pwrite')));
    const { cookie, error } = await withCompletion((done) => h.aioPwrite(Buffer.alloc(512), 0, (err) => (done(err), (err.value = ENOMEM), -1)), 0);
    expect(error).toBe(EIO);
    expect(() => h.aioCommandCompleted(cookie)).toThrow(expect.objectContaining({ code: 'ENOMEM' }));
  });
});

// ====================================================================== block status

describe('block status', () => {
  const BS_FILE_SIZE = 16384; // data 0-4K, hole 4-8K, data 8-12K, hole 12-16K
  let qemuSocket: string;

  beforeAll(async () => {
    const file = sparseFile(BS_FILE_SIZE, [[0, 4096], [8192, 4096]]);
    qemuSocket = (await startQemuNbd(file, '-e', '8', '-A')).socket;
  });

  // qemu-nbd serves at most -e clients at once: every test closes its handles.
  const open: Handle<boolean>[] = [];
  afterEach(() => {
    while (open.length) open.pop()!.close();
  });

  async function qemu<B extends boolean = false>(contexts = ['base:allocation'], bigint?: B): Promise<Handle<B>> {
    const h = new Handle<B>(bigint ? ({ bigint } as { bigint: B }) : undefined);
    open.push(h);
    for (const c of contexts) h.addMetaContext(c);
    await h.connectUnix(qemuSocket);
    return h;
  }

  const HOLE = STATE_HOLE | STATE_ZERO;

  test('qemu-nbd over a sparse file: base:allocation extents match the layout', async () => {
    expect([STATE_HOLE, STATE_ZERO]).toEqual([1, 2]);
    const h = await qemu();
    expect(h.canMetaContext('base:allocation')).toBe(true);
    const calls: Extent[] = [];
    await h.blockStatus(BS_FILE_SIZE, 0, (ctx, off, entries, err) => {
      // A Uint32Array (of the addon's realm: jest runs tests in a vm context).
      expect(Object.prototype.toString.call(entries)).toBe('[object Uint32Array]');
      calls.push([ctx, off, Array.from(entries), err.value]);
      return 0;
    });
    expect(calls).toEqual([['base:allocation', 0, [4096, 0, 4096, HOLE, 4096, 0, 4096, HOLE], 0]]);
  });

  test('the offset is the request offset; entries cover the range from there', async () => {
    const h = await qemu();
    const calls: Extent[] = [];
    await h.blockStatus(8192, 2048, (ctx, off, entries, err) => (calls.push([ctx, off, Array.from(entries), err.value]), 0));
    expect(calls).toHaveLength(1);
    const [ctx, off, entries] = calls[0];
    expect([ctx, off]).toEqual(['base:allocation', 2048]);
    expect(entries.slice(0, 4)).toEqual([2048, 0, 4096, HOLE]);
    let covered = 0;
    for (let i = 0; i < entries.length; i += 2) covered += entries[i];
    expect(covered).toBeGreaterThanOrEqual(8192);
  });

  test('REQ_ONE gives exactly one extent', async () => {
    const h = await qemu();
    const calls: Extent[] = [];
    await h.blockStatus(BS_FILE_SIZE, 0, (ctx, off, e, err) => (calls.push([ctx, off, Array.from(e), err.value]), 0), CMD_FLAG_REQ_ONE);
    await h.blockStatus(8192, 4096, (ctx, off, e, err) => (calls.push([ctx, off, Array.from(e), err.value]), 0), CMD_FLAG_REQ_ONE);
    expect(calls).toEqual([
      ['base:allocation', 0, [4096, 0], 0],
      ['base:allocation', 4096, [4096, HOLE], 0],
    ]);
  });

  test('aioBlockStatus with a completion callback; entries stay valid after the callback', async () => {
    const h = await qemu();
    const kept: Uint32Array[] = [];
    const copies: number[][] = [];
    const { cookie, error } = await withCompletion(
      (done) =>
        h.aioBlockStatus(BS_FILE_SIZE, 0, (_c, _o, entries) => {
          kept.push(entries);
          copies.push(Array.from(entries));
          return 0;
        }, done),
      0,
    );
    expect(error).toBe(0);
    expect(h.aioCommandCompleted(cookie)).toBe(true);
    expect(copies).toEqual([[4096, 0, 4096, HOLE, 4096, 0, 4096, HOLE]]);
    expect(kept.map((e) => Array.from(e))).toEqual(copies);
  });

  test('with two meta contexts, blockStatus calls the callback once per context', async () => {
    const h = await qemu(['base:allocation', 'qemu:allocation-depth']);
    expect(h.canMetaContext('qemu:allocation-depth')).toBe(true);
    const calls: Extent[] = [];
    await h.blockStatus(BS_FILE_SIZE, 0, (ctx, off, e, err) => (calls.push([ctx, off, Array.from(e), err.value]), 0));
    expect(calls.map((c) => c[0]).sort()).toEqual(['base:allocation', 'qemu:allocation-depth']);
    expect(calls.find((c) => c[0] === 'base:allocation')![2]).toEqual([4096, 0, 4096, HOLE, 4096, 0, 4096, HOLE]);
  });

  test('nbdkit data with holes (32K pages) and nbdkit memory after writes, zero and trim', async () => {
    const d = handle();
    d.addMetaContext('base:allocation');
    await d.connectCommand(nbdkit('data', 'data=@4096 1 @12288 2 @32768', 'size=64K'));
    const calls: Extent[] = [];
    const record = (ctx: string, off: number, e: Uint32Array, err: ErrorRef) => (calls.push([ctx, off, Array.from(e), err.value]), 0);
    await d.blockStatus(65536, 0, record);
    expect(calls).toEqual([['base:allocation', 0, [32768, 0, 32768, HOLE], 0]]);

    const m = handle();
    m.addMetaContext('base:allocation');
    await m.connectCommand(nbdkit('memory', 'size=128K'));
    calls.length = 0;
    await m.blockStatus(131072, 0, record);
    await m.pwrite(fill(4096, 1), 40960);
    await m.blockStatus(131072, 0, record);
    await m.trim(32768, 32768);
    await m.blockStatus(131072, 0, record);
    expect(calls.map((c) => c[2])).toEqual([[131072, HOLE], [32768, HOLE, 32768, 0, 65536, HOLE], [131072, HOLE]]);
  });

  test('without addMetaContext: libnbd\'s ENOTSUP at issue, in both forms', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    expect(h.canMetaContext('base:allocation')).toBe(false);
    const cb = jest.fn(() => 0);
    expect(() => h.aioBlockStatus(512, 0, cb)).toThrow(
      expect.objectContaining({ code: 'ENOTSUP', message: expect.stringContaining('did not negotiate any metadata contexts') }),
    );
    await expect(h.blockStatus(512, 0, cb)).rejects.toMatchObject({ code: 'ENOTSUP' });
    expect(cb).not.toHaveBeenCalled();
  });

  test('extent callback returning -1 with ENOMEM: the command fails with ENOMEM', async () => {
    const h = await qemu();
    const err = await h
      .blockStatus(BS_FILE_SIZE, 0, (_c, _o, _e, error) => {
        error.value = ENOMEM;
        return -1;
      })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NbdError);
    expect(err).toMatchObject({ errno: ENOMEM, code: 'ENOMEM', message: 'nbd_block_status: block-status: command failed: Cannot allocate memory' });
    // aio form: the completion sees ENOMEM, aioCommandCompleted throws it.
    const { cookie, error } = await withCompletion(
      (done) => h.aioBlockStatus(BS_FILE_SIZE, 0, (_c, _o, _e, e) => ((e.value = ENOMEM), -1), done),
      0,
    );
    expect(error).toBe(ENOMEM);
    expect(() => h.aioCommandCompleted(cookie)).toThrow(expect.objectContaining({ code: 'ENOMEM' }));
    expect(h.aioIsReady()).toBe(true);
  });

  test('-1 with error.value 0 is EPROTO; other return values are ignored', async () => {
    const h = await qemu();
    await expect(h.blockStatus(BS_FILE_SIZE, 0, () => -1)).rejects.toMatchObject({ errno: EPROTO, code: 'EPROTO' });
    await expect(h.blockStatus(BS_FILE_SIZE, 0, (_c, _o, _e, e) => ((e.value = EIO), 1))).resolves.toBeUndefined();
    await expect(h.blockStatus(BS_FILE_SIZE, 0, () => -2)).resolves.toBeUndefined();
  });

  test('a throwing extent callback fails the command (EPROTO) with the thrown value as cause', async () => {
    const h = await qemu();
    const boom = new Error('boom');
    const err = await h.blockStatus(BS_FILE_SIZE, 0, () => {
      throw boom;
    }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NbdError);
    expect(err).toMatchObject({ code: 'EPROTO', message: 'nbd_block_status: block-status: command failed: Protocol error' });
    expect((err as NbdError).cause).toBe(boom);
    // aio form: the cause travels to aioCommandCompleted.
    const boom2 = new Error('boom2');
    const { cookie, error } = await withCompletion((done) => h.aioBlockStatus(BS_FILE_SIZE, 0, () => { throw boom2; }, done), 0);
    expect(error).toBe(EPROTO);
    let thrown: unknown;
    try {
      h.aioCommandCompleted(cookie);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'EPROTO' });
    expect((thrown as NbdError).cause).toBe(boom2);
  });

  test('first error sticks: a later context\'s callback still runs, sees it, and cannot replace it', async () => {
    const h = await qemu(['base:allocation', 'qemu:allocation-depth']);
    const entry: number[] = [];
    const err = await h
      .blockStatus(BS_FILE_SIZE, 0, (_c, _o, _e, error) => {
        entry.push(error.value);
        error.value = entry.length === 1 ? ENOMEM : EIO;
        return -1;
      })
      .then(() => undefined, (e: unknown) => e);
    expect(entry).toEqual([0, ENOMEM]);
    expect(err).toMatchObject({ code: 'ENOMEM' });
  });

  test('the extent callback can call into the handle (it runs outside libnbd)', async () => {
    const h = await qemu();
    const inner: Promise<void>[] = [];
    await h.blockStatus(4096, 0, () => {
      expect(h.getSize()).toBe(BS_FILE_SIZE);
      inner.push(h.pread(Buffer.alloc(512), 0));
      return 0;
    });
    expect(inner).toHaveLength(1);
    await expect(inner[0]).resolves.toBeUndefined();
  });

  test('{ bigint: true }: the extent callback gets a bigint offset', async () => {
    const h = await qemu(['base:allocation'], true);
    const offsets: unknown[] = [];
    const entries: number[][] = [];
    await h.blockStatus(8192n, 4096n, (_c, off, e) => {
      offsets.push(off);
      entries.push(Array.from(e));
      return 0;
    });
    await h.blockStatus(4096, 8192, (_c, off) => (offsets.push(off), 0));
    expect(offsets).toEqual([4096n, 8192n]);
    expect(typeof offsets[0]).toBe('bigint');
    expect(entries[0].slice(0, 2)).toEqual([4096, HOLE]);
  });

  // --------------------------------------------------------------- against Python

  interface BsScenario {
    name: string;
    contexts: string[];
    mode: 'sync' | 'aio';
    count: number;
    offset: number;
    flags?: number;
    /** Per call (the last repeats): set error.value, then return `ret` or raise/throw. */
    calls?: { set?: number; ret?: number; raise?: boolean }[];
    completion?: { set?: number; ret: number };
  }
  interface BsTrace {
    calls: [string, number, number[], number][];
    completion: number[];
    result: 0 | [number, string];
  }

  const BS_SCENARIOS: BsScenario[] = [
    { name: 'whole file', contexts: ['base:allocation'], mode: 'sync', count: BS_FILE_SIZE, offset: 0 },
    { name: 'mid-extent offset', contexts: ['base:allocation'], mode: 'sync', count: 8192, offset: 2048 },
    { name: 'REQ_ONE in a hole', contexts: ['base:allocation'], mode: 'sync', count: 8192, offset: 4096, flags: CMD_FLAG_REQ_ONE },
    { name: 'two contexts', contexts: ['base:allocation', 'qemu:allocation-depth'], mode: 'sync', count: BS_FILE_SIZE, offset: 0 },
    { name: 'two contexts, REQ_ONE', contexts: ['base:allocation', 'qemu:allocation-depth'], mode: 'aio', count: BS_FILE_SIZE, offset: 0, flags: CMD_FLAG_REQ_ONE, completion: { ret: 0 } },
    { name: '-1 with ENOMEM', contexts: ['base:allocation'], mode: 'sync', count: BS_FILE_SIZE, offset: 0, calls: [{ set: ENOMEM, ret: -1 }] },
    { name: '-1 with 0', contexts: ['base:allocation'], mode: 'sync', count: BS_FILE_SIZE, offset: 0, calls: [{ ret: -1 }] },
    { name: 'raise/throw', contexts: ['base:allocation'], mode: 'sync', count: BS_FILE_SIZE, offset: 0, calls: [{ raise: true }] },
    { name: 'first error sticks over two contexts', contexts: ['base:allocation', 'qemu:allocation-depth'], mode: 'sync', count: BS_FILE_SIZE, offset: 0, calls: [{ set: ENOMEM, ret: -1 }, { set: EIO, ret: -1 }] },
    { name: 'aio: extent fails ENOMEM, completion replaces with EIO', contexts: ['base:allocation'], mode: 'aio', count: BS_FILE_SIZE, offset: 0, calls: [{ set: ENOMEM, ret: -1 }], completion: { set: EIO, ret: -1 } },
    { name: 'aio: extent fails ENOMEM, completion -1 with 0 keeps it', contexts: ['base:allocation'], mode: 'aio', count: BS_FILE_SIZE, offset: 0, calls: [{ set: ENOMEM, ret: -1 }], completion: { set: 0, ret: -1 } },
    { name: 'aio: success, completion sets EIO but returns 0', contexts: ['base:allocation'], mode: 'aio', count: BS_FILE_SIZE, offset: 0, completion: { set: EIO, ret: 0 } },
  ];

  const BS_PY = String.raw`
import json, sys
import nbd

def run(sc):
    h = nbd.NBD()
    for c in sc['contexts']:
        h.add_meta_context(c)
    h.connect_unix(sc['socket'])
    t = {'calls': [], 'completion': []}
    acts = sc.get('calls') or [{}]
    def extent(ctx, off, entries, err):
        a = acts[min(len(t['calls']), len(acts) - 1)]
        t['calls'].append([ctx, off, list(entries), err.value])
        if 'set' in a:
            err.value = a['set']
        if a.get('raise'):
            raise RuntimeError('callback fails')
        return a.get('ret', 0)
    def comp(err):
        t['completion'].append(err.value)
        a = sc['completion']
        if 'set' in a:
            err.value = a['set']
        return a['ret']
    try:
        if sc['mode'] == 'sync':
            h.block_status(sc['count'], sc['offset'], extent, sc.get('flags', 0))
        else:
            c = h.aio_block_status(sc['count'], sc['offset'], extent, comp, sc.get('flags', 0))
            while not t['completion']:
                h.poll(-1)
            h.aio_command_completed(c)
        t['result'] = 0
    except nbd.Error as e:
        t['result'] = [e.errnum, e.string]
    del h
    return t

print(json.dumps([run(sc) for sc in json.load(sys.stdin)]))
`;

  async function runBs(sc: BsScenario): Promise<BsTrace> {
    const h = await qemu(sc.contexts);
    try {
      const t: BsTrace = { calls: [], completion: [], result: 0 };
      const acts = sc.calls ?? [{}];
      const extent = (ctx: string, off: number, entries: Uint32Array, err: ErrorRef): unknown => {
        const a = acts[Math.min(t.calls.length, acts.length - 1)];
        t.calls.push([ctx, off, Array.from(entries), err.value]);
        if (a.set !== undefined) err.value = a.set;
        if (a.raise) throw new Error('callback fails');
        return a.ret ?? 0;
      };
      try {
        if (sc.mode === 'sync') {
          await h.blockStatus(sc.count, sc.offset, extent, sc.flags ?? 0);
        } else {
          const c = h.aioBlockStatus(sc.count, sc.offset, extent, (err) => {
            t.completion.push(err.value);
            if (sc.completion!.set !== undefined) err.value = sc.completion!.set;
            return sc.completion!.ret;
          }, sc.flags ?? 0);
          await waitFor(() => t.completion.length > 0, 'the completion callback');
          h.aioCommandCompleted(c);
        }
      } catch (e) {
        t.result = errOf(e);
      }
      return t;
    } finally {
      h.close();
    }
  }

  test('block-status traces equal libnbd\'s Python binding on the same qemu-nbd', async () => {
    const ref = await runPython<BsTrace[]>(BS_PY, { input: BS_SCENARIOS.map((sc) => ({ ...sc, socket: qemuSocket })) });
    expect(ref).toHaveLength(BS_SCENARIOS.length);
    // The scenarios mean what their names say.
    expect(ref[0].calls).toEqual([['base:allocation', 0, [4096, 0, 4096, HOLE, 4096, 0, 4096, HOLE], 0]]);
    expect(ref[5].result).toEqual([ENOMEM, 'nbd_block_status: block-status: command failed: Cannot allocate memory']);
    expect(ref[8].calls.map((c) => c[3])).toEqual([0, ENOMEM]);
    expect(ref[9].result).toEqual([EIO, 'nbd_aio_command_completed: block-status: command failed: Input/output error']);
    const ours: BsTrace[] = [];
    for (const sc of BS_SCENARIOS) ours.push(await runBs(sc));
    const named = (ts: BsTrace[]) => Object.fromEntries(BS_SCENARIOS.map((sc, i) => [sc.name, ts[i]]));
    expect(named(ours)).toEqual(named(ref));
  });
});
