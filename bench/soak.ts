// Soak test: millions of reads on each driver, looking for leaks and for
// failures that only show after a long run. Not part of `npm test`.
//
//   npm run soak [-- --reads N] [--driver loop|thread] [--qd N]
//
// Starts `nbdkit pattern` on a Unix socket of its own. Per driver, one handle
// reads in rounds of ROUND reads, the rounds rotating through four forms (two
// callback: aioPreadStructured and aioPread with a completion that issues the
// slot's next read; two Promise: pread and preadStructured awaited by QD
// concurrent loops), with sizes from 512 B to 256 KiB at random 512-aligned
// offsets; every read's data is checked against the pattern. Every CHURN
// rounds a short-lived second handle connects, reads and closes. RSS,
// heapUsed and the open fd count are sampled (after gc() and a turn of the
// event loop) once warmed up and at the end, the handle still connected both
// times. Exits 1 if a read
// failed or the fd count grew.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Handle, READ_DATA, type Driver, type ErrorRef } from '../lib';

const EXPORT_SIZE = 1 << 30; // nbdkit pattern: each 8-byte word holds its own offset (big-endian)
const SIZES = [512, 4096, 4096, 4096, 16384, 65536, 262144]; // drawn uniformly: mostly small
const MAX_SIZE = Math.max(...SIZES);
const ROUND = 20_000;
const CHURN = 10; // rounds between short-lived handles
const CHURN_READS = 100;
const FORMS = ['aioPreadStructured', 'aioPread', 'pread', 'preadStructured'] as const;
type Form = (typeof FORMS)[number];

interface Options {
  reads: number;
  drivers: Driver[];
  qd: number;
}

function usage(message?: string): never {
  if (message) console.error(`soak: ${message}`);
  console.error('usage: npm run soak [-- --reads N] [--driver loop|thread] [--qd N]');
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { reads: 3_000_000, drivers: ['loop', 'thread'], qd: 32 };
  for (let i = 0; i < argv.length; i++) {
    const value = () => argv[++i] ?? usage(`${argv[i - 1]} needs a value`);
    const count = (v: string) => {
      const n = Number(v.replace(/_/g, ''));
      if (!Number.isSafeInteger(n) || n < 1) usage(`not a positive integer: ${v}`);
      return n;
    };
    switch (argv[i]) {
      case '--reads':
        opts.reads = count(value());
        break;
      case '--qd':
        opts.qd = count(value());
        break;
      case '--driver': {
        const d = value();
        if (d !== 'loop' && d !== 'thread') usage(`unknown driver: ${d}`);
        opts.drivers = [d];
        break;
      }
      case '-h':
      case '--help':
        usage();
      default:
        usage(`unknown option: ${argv[i]}`);
    }
  }
  return opts;
}

// ------------------------------------------------------------------ server

async function startServer(dir: string): Promise<{ uri: string; proc: ChildProcess }> {
  const socket = join(dir, 'nbd.sock');
  const pidfile = join(dir, 'nbdkit.pid'); // written once nbdkit accepts connections
  const proc = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', socket, '-P', pidfile, 'pattern', `size=${EXPORT_SIZE}`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<never>((_, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code, signal) => reject(new Error(`nbdkit exited (${signal ?? code}) before it was ready`)));
  });
  const ready = (async () => {
    for (const until = Date.now() + 10_000; !existsSync(pidfile); ) {
      if (Date.now() > until) throw new Error('timed out waiting for nbdkit');
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await Promise.race([ready, exited]);
  proc.removeAllListeners('exit');
  return { uri: `nbd+unix:///?socket=${socket}`, proc };
}

// ------------------------------------------------------------------ reads

/** xorshift32: the same reads on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

interface Tally {
  reads: number;
  bytes: number;
  byForm: Record<Form, number>;
  failure?: unknown;
}

class Reader {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  /** A random read: length from SIZES, 512-aligned offset within the export. */
  pick(): { length: number; offset: number } {
    const length = SIZES[this.next() % SIZES.length];
    const offset = (this.next() % ((EXPORT_SIZE - length) / 512 + 1)) * 512;
    return { length, offset };
  }
}

/** Data of `buf` (read at `offset`) matches nbdkit's pattern: first and last word. */
function checkData(buf: Uint8Array, offset: number): void {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const last = buf.byteLength - 8;
  if (view.readBigUInt64BE(0) !== BigInt(offset) || view.readBigUInt64BE(last) !== BigInt(offset + last)) {
    throw new Error(`wrong data read at offset ${offset}, length ${buf.byteLength}`);
  }
}

/** Callback forms: qd slots; each completion checks its read and issues the slot's next. */
function callbackRound(h: Handle, form: 'aioPreadStructured' | 'aioPread', n: number, qd: number, reader: Reader, tally: Tally): Promise<void> {
  return new Promise((resolve) => {
    let issued = 0;
    let inFlight = 0;
    const settle = () => {
      if (inFlight === 0 && (issued === n || tally.failure !== undefined)) resolve();
    };
    const fail = (e: unknown) => {
      tally.failure ??= e;
    };
    const slot = (storage: Buffer) => {
      const issue = () => {
        const { length, offset } = reader.pick();
        const buf = storage.subarray(0, length);
        let chunked = 0;
        const completion = (error: ErrorRef): number => {
          inFlight--;
          try {
            if (error.value !== 0) throw new Error(`${form} at ${offset}: errno ${error.value}`);
            if (form === 'aioPreadStructured' && chunked !== length) throw new Error(`${form} at ${offset}: chunks cover ${chunked} of ${length} bytes`);
            checkData(buf, offset);
            tally.reads++;
            tally.bytes += length;
            tally.byForm[form]++;
          } catch (e) {
            fail(e);
          }
          if (tally.failure === undefined && issued < n) issue();
          settle();
          return 1; // auto-retire
        };
        try {
          if (form === 'aioPread') {
            h.aioPread(buf, offset, completion);
          } else {
            const chunk = (subbuf: Uint8Array, chunkOffset: number, status: number): number => {
              if (status !== READ_DATA) fail(new Error(`${form} at ${offset}: chunk status ${status}`));
              else if (subbuf.byteOffset - buf.byteOffset !== chunkOffset - offset) fail(new Error(`${form} at ${offset}: chunk at ${chunkOffset} misplaced`));
              chunked += subbuf.byteLength;
              return 0;
            };
            h.aioPreadStructured(buf, offset, chunk, completion);
          }
        } catch (e) {
          fail(e);
          return;
        }
        issued++;
        inFlight++;
      };
      issue();
    };
    for (let i = 0; i < Math.min(qd, n) && tally.failure === undefined; i++) slot(Buffer.alloc(MAX_SIZE));
    settle();
  });
}

/** Promise forms: qd concurrent loops, each awaiting one read at a time. */
async function promiseRound(h: Handle, form: 'pread' | 'preadStructured', n: number, qd: number, reader: Reader, tally: Tally): Promise<void> {
  let issued = 0;
  const loop = async () => {
    const storage = Buffer.alloc(MAX_SIZE);
    while (issued < n && tally.failure === undefined) {
      issued++;
      const { length, offset } = reader.pick();
      const buf = storage.subarray(0, length);
      try {
        if (form === 'pread') {
          await h.pread(buf, offset);
        } else {
          let chunked = 0;
          await h.preadStructured(buf, offset, (subbuf, _chunkOffset, status) => {
            if (status !== READ_DATA) throw new Error(`chunk status ${status}`);
            chunked += subbuf.byteLength;
            return 0;
          });
          if (chunked !== length) throw new Error(`${form} at ${offset}: chunks cover ${chunked} of ${length} bytes`);
        }
        checkData(buf, offset);
      } catch (e) {
        tally.failure ??= e;
        return;
      }
      tally.reads++;
      tally.bytes += length;
      tally.byForm[form]++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(qd, n) }, loop));
}

function round(h: Handle, form: Form, n: number, qd: number, reader: Reader, tally: Tally): Promise<void> {
  return form === 'pread' || form === 'preadStructured'
    ? promiseRound(h, form, n, qd, reader, tally)
    : callbackRound(h, form, n, qd, reader, tally);
}

/** Connect, read, disconnect, close: a short-lived handle beside the soaked one. */
async function churn(uri: string, driver: Driver, reader: Reader, tally: Tally): Promise<void> {
  const h = new Handle({ driver });
  try {
    await h.connectUri(uri);
    await round(h, 'pread', CHURN_READS, 4, reader, tally);
    await h.shutdown();
  } catch (e) {
    tally.failure ??= e;
  } finally {
    h.close();
  }
}

// ------------------------------------------------------------------ samples

interface Sample {
  rss: number;
  heapUsed: number;
  fds: number;
}

/**
 * After gc() and a turn of the event loop, so that memory is sampled after
 * the collection and Node-API finalizers have run. (close() releases a
 * handle's fds at once; a handle whose connectCommand server lingers after
 * EOF releases its socket when the server exits.)
 */
async function sample(): Promise<Sample> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 10));
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed, fds: readdirSync('/proc/self/fd').length - 1 }; // less readdir's own fd
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const grouped = (n: number) => n.toLocaleString('en-US');

async function soak(uri: string, driver: Driver, reads: number, qd: number): Promise<boolean> {
  const reader = new Reader(driver === 'loop' ? 1 : 2);
  const tally: Tally = { reads: 0, bytes: 0, byForm: { aioPreadStructured: 0, aioPread: 0, pread: 0, preadStructured: 0 } };
  const h = new Handle({ driver });
  await h.connectUri(uri);

  // Warm-up: every form once, and one short-lived handle.
  const warmupPerForm = Math.max(1, Math.min(25_000, Math.floor(reads / 40)));
  for (const form of FORMS) await round(h, form, warmupPerForm, qd, reader, tally);
  await churn(uri, driver, reader, tally);
  const warmupReads = tally.reads;
  const before = await sample();

  const t0 = process.hrtime.bigint();
  let done = 0;
  for (let r = 0, form = 0; done < reads && tally.failure === undefined; r++) {
    const was = tally.reads;
    if (r % CHURN === CHURN - 1) await churn(uri, driver, reader, tally);
    else await round(h, FORMS[form++ % FORMS.length], Math.min(ROUND, reads - done), qd, reader, tally);
    done += tally.reads - was;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = await sample();
  await h.shutdown().catch((e: unknown) => (tally.failure ??= e));
  h.close();

  const measured = tally.reads - warmupReads;
  const forms = FORMS.map((f) => `${f} ${grouped(tally.byForm[f])}`).join(', ');
  console.log(`soak ${driver}: ${grouped(measured)} reads in ${seconds.toFixed(1)} s (${grouped(Math.round(measured / seconds))}/s, ${(tally.bytes / 2 ** 30).toFixed(1)} GiB in all), after ${grouped(warmupReads)} warm-up reads`);
  console.log(`  forms (warm-up included): ${forms}`);
  console.log(`  RSS      ${mib(before.rss)} -> ${mib(after.rss)} (${after.rss >= before.rss ? '+' : ''}${mib(after.rss - before.rss)})`);
  console.log(`  heapUsed ${mib(before.heapUsed)} -> ${mib(after.heapUsed)}`);
  console.log(`  fds      ${before.fds} -> ${after.fds}`);
  let ok = true;
  if (tally.failure !== undefined) {
    console.log(`  FAILED: a read failed: ${tally.failure instanceof Error ? tally.failure.stack ?? tally.failure.message : String(tally.failure)}`);
    ok = false;
  }
  if (after.fds > before.fds) {
    console.log(`  FAILED: open fds grew from ${before.fds} to ${after.fds}`);
    ok = false;
  }
  if (ok && measured < reads) {
    console.log(`  FAILED: ${grouped(measured)} of ${grouped(reads)} reads done`);
    ok = false;
  }
  return ok;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (!(globalThis as { gc?: () => void }).gc) console.error('soak: run with node --expose-gc (npm run soak does) for steadier samples');
  const dir = mkdtempSync(join(tmpdir(), 'libnbd-soak-'));
  const server = await startServer(dir);
  try {
    const perDriver = Math.ceil(opts.reads / opts.drivers.length);
    console.log(`soak: ${grouped(perDriver)} reads per driver (${opts.drivers.join(', ')}), queue depth ${opts.qd}, ${SIZES[0]} B to ${MAX_SIZE / 1024} KiB, nbdkit pattern size=1G`);
    let ok = true;
    for (const driver of opts.drivers) ok = (await soak(server.uri, driver, perDriver, opts.qd)) && ok;
    console.log(ok ? 'soak: ok' : 'soak: FAILED');
    return ok ? 0 : 1;
  } finally {
    server.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error('soak:', e);
    process.exitCode = 1;
  },
);
