// Regression tests for hangs and lost completions found by fault testing:
// each fails on the code before the fix. Every suite runs on both drivers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Handle, NbdError, defaultDriver } from '../../lib';
import { connected, handle, nbdkit, pattern, silentServer, spawnServer, startNbdkit, tempDir } from '../helpers/servers';
import { keepOutput } from '../helpers/output';
import { waitFor, within } from '../helpers/wait';
import { settled } from '../helpers/outcome';

const EFAULT = 14;
// The lib settings have no DOM types: what these tests use of WebAssembly.
declare const WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer; grow(n: number): number } };
const EINVAL = 22;
const ENOTCONN = 107;
const fixtures = join(__dirname, '..', 'fixtures');

/** Settlement counts of a set of commands: each must settle exactly once. */
class Ledger {
  readonly settled: number[] = [];
  readonly errors: unknown[] = [];
  ok = 0;

  /** A completion callback for command i (auto-retires). */
  completion(i: number) {
    return (error: { value: number }) => {
      this.settled[i] = (this.settled[i] ?? 0) + 1;
      if (error.value === 0) this.ok++;
      else this.errors[i] = error.value;
      return 1;
    };
  }

  /** Tracks the Promise of command i. */
  promise(i: number, p: Promise<unknown>): void {
    p.then(
      () => {
        this.settled[i] = (this.settled[i] ?? 0) + 1;
        this.ok++;
      },
      (e) => {
        this.settled[i] = (this.settled[i] ?? 0) + 1;
        this.errors[i] = e;
      },
    );
  }

  count(): number {
    return this.settled.reduce((a, b) => a + (b ?? 0), 0);
  }

  /** Waits (bounded) until `n` commands settled; a hang becomes a failed expectation. */
  async all(n: number, ms = 5000): Promise<void> {
    await waitFor(() => this.count() >= n, `${n} commands to settle`, ms).catch(() => undefined);
    expect(this.count()).toBe(n);
    for (let i = 0; i < n; i++) expect(this.settled[i]).toBe(1);
  }
}

/** A server that prints a line on stdout once it listens. */
function startProcess(cmd: string, args: string[]): Promise<ChildProcess> {
  const { proc: child } = spawnServer(cmd, args, { stdout: 'pipe', stopSignal: 'SIGKILL' });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`${cmd} exited with ${code}`)));
  });
}

// ------------------------------------------------------------------ 1

describe('a socket error with replies still queued', () => {
  test('every command settles: the queued replies succeed, the rest fail', async () => {
    const socket = join(tempDir(), 'reset.sock');
    await startProcess('/usr/bin/python3', [join(fixtures, 'reset-server.py'), socket, '16', '32']);
    const h = handle();
    await h.connectUnix(socket);
    const ledger = new Ledger();
    for (let i = 0; i < 32; i++) {
      const buf = Buffer.alloc(4096);
      if (i % 2 === 0) h.aioPread(buf, i * 4096, ledger.completion(i));
      else ledger.promise(i, h.pread(buf, i * 4096));
    }
    await ledger.all(32);
    expect(ledger.ok).toBe(16);
    expect(h.aioInFlight()).toBe(0);
    expect(h.aioIsDead()).toBe(true);
    // Nothing is left to hang on.
    expect(await within(settled(h.shutdown()), 2000)).not.toBe('pending');
  });
});

// ------------------------------------------------------------------ 2

describe('two connects on one handle', () => {
  test('the second rejects EINVAL and the first settles with its own outcome', async () => {
    const h = handle();
    const first = h.connectCommand(nbdkit('memory', 'size=1M'));
    first.catch(() => undefined); // judged below
    const second = await within(settled(h.connectCommand(nbdkit('memory', 'size=1M'))), 5000);
    expect(second).not.toBe('pending');
    expect((second as { error: NbdError }).error).toBeInstanceOf(NbdError);
    expect((second as { error: NbdError }).error).toMatchObject({ errno: EINVAL, code: 'EINVAL' });
    expect(await within(settled(first), 5000)).toEqual({ value: undefined });
    expect(h.getSize()).toBe(1 << 20);
  });

  test('close() rejects every connect still waiting', async () => {
    const { socket } = await silentServer();
    const h = handle();
    const first = h.connectUnix(socket);
    first.catch(() => undefined); // judged below
    const second = h.connectUnix(socket);
    const secondOutcome = await within(settled(second), 5000);
    h.close();
    const firstOutcome = await within(settled(first), 2000);
    expect(firstOutcome).not.toBe('pending');
    expect((firstOutcome as { error: NbdError }).error).toMatchObject({ errno: ENOTCONN });
    expect(secondOutcome).not.toBe('pending');
    expect((secondOutcome as { error: NbdError }).error).toMatchObject({ errno: EINVAL });
  });
});

// ------------------------------------------------------------------ 3

describe('event delivery whatever user code throws or does to its buffer', () => {
  test('a thrown value whose stack getter throws costs no completion', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const ledger = new Ledger();
      const nasty = () => {
        const value = { message: 'nasty' };
        Object.defineProperty(value, 'stack', {
          get() {
            throw new Error('stack getter');
          },
        });
        return value;
      };
      for (let i = 0; i < 32; i++) {
        const done = ledger.completion(i);
        h.aioPreadStructured(Buffer.alloc(512), i * 512, () => 0, (error) => {
          done(error);
          throw nasty(); // the command succeeded: the throw is reported as a warning
        });
      }
      await ledger.all(32);
      expect(ledger.ok).toBe(32);
      const warned = emitWarning.mock.calls.filter((c) => String(c[0]).includes('nasty'));
      expect(warned).toHaveLength(32);
    } finally {
      emitWarning.mockRestore();
    }
  });

  test('a thrown Symbol and a value that cannot be turned into a string are reported too', async () => {
    const h = await connected(nbdkit('pattern', 'size=1M'));
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const ledger = new Ledger();
      const odd = [Symbol('odd'), Object.create(null), { toString: () => { throw new Error('no'); } }];
      odd.forEach((value, i) => {
        const done = ledger.completion(i);
        h.aioPread(Buffer.alloc(512), 0, (error) => {
          done(error);
          throw value;
        });
      });
      await ledger.all(odd.length);
      expect(emitWarning).toHaveBeenCalledTimes(odd.length);
    } finally {
      emitWarning.mockRestore();
    }
  });

  test('a read whose WebAssembly memory grows meanwhile fails EFAULT and settles once', async () => {
    const server = await startNbdkit('--filter=delay', 'pattern', 'size=1M', 'delay-read=200ms');
    const h = handle();
    await h.connectUnix(server.socket);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    const ledger = new Ledger();
    const chunks: number[] = [];
    const structured = new Uint8Array(memory.buffer, 0, 4096);
    h.aioPreadStructured(structured, 0, (sub) => chunks.push(sub.length), ledger.completion(0));
    ledger.promise(1, h.pread(new Uint8Array(memory.buffer, 8192, 4096), 0));
    memory.grow(1); // detaches the views' buffer; the memory stays where it was
    await ledger.all(2);
    expect(chunks).toEqual([]); // no view of a detached buffer is handed out
    expect(ledger.errors[0]).toBe(EFAULT);
    expect(ledger.errors[1]).toBeInstanceOf(NbdError);
    expect(ledger.errors[1]).toMatchObject({ code: 'EFAULT' });
    expect((ledger.errors[1] as Error).message).toMatch(/detached or shrunk/);
    // The handle goes on working.
    const buf = Buffer.alloc(512);
    await h.pread(buf, 4096);
    expect(buf).toEqual(pattern(4096, 512));
  });

  test('a buffer backed by a resizable ArrayBuffer is refused before it reaches libnbd', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
    const view = new Uint8Array(new Resizable(4096, { maxByteLength: 8192 }));
    expect(() => h.aioPread(view, 0)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => h.pwrite(view, 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(h.aioInFlight()).toBe(0);
  });
});

// ------------------------------------------------------------------ 4

function eventfds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

describe('close() releases every OS resource at once', () => {
  test('closed handles still referenced hold no eventfd', async () => {
    const server = await startNbdkit('memory', 'size=1M');
    const before = eventfds();
    const handles: Handle[] = [];
    for (let i = 0; i < 20; i++) {
      const h = new Handle();
      handles.push(h);
      await h.connectUnix(server.socket);
    }
    if (defaultDriver() === 'thread') expect(eventfds()).toBeGreaterThanOrEqual(before + 20);
    for (const h of handles) h.close();
    expect(eventfds()).toBeLessThanOrEqual(before);
    expect(handles.every((h) => h.closed)).toBe(true);
  });
});

// ------------------------------------------------------------------ 5

/** pids of this process's children (servers started by connectCommand among them). */
function children(): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => Number(l.trim())).filter((pid) => pid > 0 && pid !== r.pid);
}

describe('close() with a connectCommand server that lingers', () => {
  // The server exits 3 s after the client goes away; libnbd's nbd_close
  // waits for it. (The margins below are wide: a loaded machine must not
  // make a blocked close() pass or a prompt one fail.)
  const lingering = ['sh', '-c', 'nbdkit -s memory size=1M; sleep 3'];

  test('returns at once and the server is still reaped', async () => {
    const before = children();
    const h = new Handle();
    await h.connectCommand(lingering);
    const started = process.hrtime.bigint();
    h.close();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(ms).toBeLessThan(1500);
    await waitFor(() => children().filter((p) => !before.includes(p)).length === 0, 'the server to be reaped', 8000);
  });

  test('a worker that holds such a handle terminates at once', async () => {
    const lib = join(__dirname, '../../dist/lib');
    const worker = new Worker(
      `const { Handle } = require(${JSON.stringify(lib)});
       const { parentPort, workerData } = require('node:worker_threads');
       const h = new Handle();
       h.connectCommand(workerData).then(() => parentPort.postMessage('connected'));`,
      { eval: true, workerData: lingering },
    );
    await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const started = Date.now();
    await worker.terminate();
    expect(Date.now() - started).toBeLessThan(1500);
  });
});

// ------------------------------------------------------------------ 6

describe('connectSystemdSocketActivation', () => {
  test('starts nbdkit, which needs fds 0-2 open, and reads from it', async () => {
    const h = handle();
    await h.connectSystemdSocketActivation(['nbdkit', 'pattern', 'size=1M']);
    const buf = Buffer.alloc(4096);
    await h.pread(buf, 8192);
    expect(buf).toEqual(pattern(8192, 4096));
  });
});

// ------------------------------------------------------------------ 7

describe('connects that resolve a host name', () => {
  /**
   * Runs test/fixtures/slow-dns.js (`args`) in a namespace of its own where
   * 127.0.0.1 is the name server: the lookup takes 3 s and finds nothing; no
   * query leaves this machine. Resolves with the fixture's JSON report.
   */
  async function inSlowDnsNamespace(...args: string[]): Promise<Record<string, unknown>> {
    const resolv = join(tempDir(), 'resolv.conf');
    writeFileSync(resolv, 'nameserver 127.0.0.1\noptions timeout:6 attempts:1\n');
    const script = `ip link set lo up && mount --bind ${resolv} /etc/resolv.conf && exec "$0" "$@"`;
    const child = spawn('unshare', ['--mount', '--net', 'sh', '-c', script, process.execPath, join(fixtures, 'slow-dns.js'), '3000', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // The default build: a sanitizer build (scripts/sanitize.sh) needs its
      // runtime preloaded, which does not pass through unshare and sh.
      env: { ...process.env, LIBNBD_BINDING: '' },
    });
    keepOutput('slow-dns.js', child.stderr!);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
    return JSON.parse(out);
  }

  test('run off the JS thread and keep libnbd errno 0 with a code of Node', async () => {
    // A blocked event loop would stall for all of the lookup (and the answer
    // could not even be sent); the margin is wide for a loaded machine.
    const r = await inSlowDnsNamespace();
    expect(r.ok).toBe(false);
    expect(r.errno).toBe(0);
    expect(r.code).toBe('ENOTFOUND');
    expect(r.message).toMatch(/^nbd_connect_tcp: getaddrinfo: .*slow\.nbd\.test.*: Name or service not known$/);
    expect(r.seconds).toBeGreaterThanOrEqual(2.9); // the lookup really took its time
    expect(r.stall).toBeLessThan(1500); // while the event loop kept turning
  });

  test('aioConnectTcp: connecting while the lookup runs, state queries never wait for it, the failure emitted', async () => {
    const r = await inSlowDnsNamespace('aio');
    expect(r.ok).toBe(false);
    expect(r.code).toBe('ENOTFOUND');
    expect(r.message).toMatch(/^nbd_aio_connect_tcp: getaddrinfo: /);
    expect(r.seconds).toBeGreaterThanOrEqual(2.9);
    expect(r.polls).toBeGreaterThan(50); // aioIsConnecting() said true all along
    expect(r.query).toBeLessThan(200); // no state query waited for the lookup
    expect(r.stall).toBeLessThan(1500);
  });
});

// ------------------------------------------------------------------ debug messages of the binding's own calls

describe('with debug messages on', () => {
  test("the debug callback sees the user's calls and libnbd's state machine, not the binding's own queries, and commands complete", async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const contexts = new Set<string>();
    let calls = 0;
    h.setDebugCallback((context) => {
      calls++;
      contexts.add(context);
    });
    h.setDebug(true);
    for (let i = 0; i < 8; i++) await h.pread(Buffer.alloc(512), i * 512);
    h.setDebug(false);
    expect(contexts).toContain('nbd_aio_pread');
    for (const own of ['nbd_aio_get_direction', 'nbd_aio_get_fd', 'nbd_aio_is_ready', 'nbd_aio_is_processing', 'nbd_aio_in_flight', 'nbd_aio_command_completed']) {
      expect(contexts).not.toContain(own);
    }
    // A few dozen messages per read (the state machine's), not an endless
    // stream of the binding's own.
    expect(calls).toBeLessThan(2000);
  });
});
