// Servers killed with SIGKILL at random moments while 1–64 commands are in
// flight, aio forms (completion callbacks) and Promise forms mixed: every
// command settles exactly once and promptly, and shutdown()/close()
// afterwards neither hang nor settle anything a second time.
// Seeded: a failure names the seed and round that replay it.
import { join } from 'node:path';
import { Handle } from '../../lib';
import { nbdkit, pattern, spawnServer, startNbdkit, tempDir } from '../helpers/servers';
import { Ledger, Rng, closeDeadConnection, collectStrayErrors } from './helpers/faults';
import { settled } from '../helpers/outcome';
import { blockThread, sleep, within } from '../helpers/wait';

const SEED = 0x6b696c6c; // 'kill'
const ROUNDS = 16; // per server kind: 32 kills per driver
const SETTLE_MS = 3000; // after the kill, for every command to settle
const GIVE_UP_AFTER = 2; // failing rounds: a hang costs SETTLE_MS each

const stray = collectStrayErrors();

const handles: Handle[] = [];
afterAll(() => handles.forEach((h) => h.close()));

const SLOT = 512 * 1024;
const EXPORT = 64 << 20;
// 64 slots of up to 512 KiB: big replies, so that some kills land mid-reply.
// A SharedArrayBuffer, which libnbd uses in place on every Node release: a
// plain Buffer goes through copies on 20 and 22 (lib/handle/buffers.ts),
// which slow the issue enough on a busy machine that most commands complete
// before the kill.
const arena = Buffer.from(new SharedArrayBuffer(64 * SLOT));

const KINDS = ['aioPread', 'aioPreadStructured', 'aioPwrite', 'aioFlush', 'pread', 'preadStructured', 'pwrite', 'flush', 'zero'] as const;

/** Issues `depth` random commands on `h`, each recorded in `ledger`. */
function issue(h: Handle, rng: Rng, ledger: Ledger, depth: number): void {
  for (let i = 0; i < depth; i++) {
    const kind = rng.pick(KINDS);
    const size = rng.pick([512, 4096, 65536, 262144, SLOT]);
    const buf = arena.subarray(i * SLOT, i * SLOT + size);
    const offset = rng.int(0, (EXPORT - SLOT) / 512) * 512;
    const ret = rng.pick([0, 1]); // completion: keep for aioCommandCompleted, or auto-retire
    const label = `${kind}(${size} @ ${offset})`;
    try {
      if (kind === 'aioPread') h.aioPread(buf, offset, ledger.aio(label, ret).completion);
      else if (kind === 'aioPreadStructured') {
        const c = ledger.aio(label, ret);
        h.aioPreadStructured(buf, offset, c.chunk, c.completion);
      } else if (kind === 'aioPwrite') h.aioPwrite(buf, offset, ledger.aio(label, ret).completion);
      else if (kind === 'aioFlush') h.aioFlush(ledger.aio(label, ret).completion);
      else if (kind === 'pread') ledger.promise(label, () => h.pread(buf, offset));
      else if (kind === 'preadStructured') ledger.promise(label, (chunk) => h.preadStructured(buf, offset, chunk));
      else if (kind === 'pwrite') ledger.promise(label, () => h.pwrite(buf, offset));
      else if (kind === 'flush') ledger.promise(label, () => h.flush());
      else ledger.promise(label, () => h.zero(size, offset));
    } catch (e) {
      ledger.threw(e); // the server is alive until every command is issued
    }
  }
}

type Via = 'unix' | 'command';

/** One kill: what went wrong, and whether it cut off any command. */
async function killRound(seed: number, via: Via, round: number): Promise<{ problems: string[]; cut: boolean }> {
  const rng = Rng.forRound(seed, round);
  const depth = rng.int(1, 64);
  const readDelay = rng.int(0, 8);
  const killAfter = rng.int(0, 20);
  const busyAfter = rng.chance(0.5) ? rng.int(1, 20) : 0;
  const args = ['--filter=delay', 'memory', `size=${EXPORT}`, `delay-read=${readDelay}ms`, `delay-write=${rng.int(0, 4)}ms`];
  const where = `seed ${seed} ${via} round ${round} (${depth} in flight, delay-read ${readDelay} ms, kill after ${killAfter} ms, JS busy ${busyAfter} ms after)`;
  const h = new Handle();
  handles.push(h);
  let kill: () => void;
  if (via === 'unix') {
    const srv = await startNbdkit(...args);
    const c = await within(settled(h.connectUnix(srv.socket)), 5000);
    if (c === 'pending' || c.error) return { problems: [`${where}: connect ${c === 'pending' ? 'hung' : String(c.error)}`], cut: false };
    kill = () => srv.process.kill('SIGKILL');
  } else {
    const c = await within(settled(h.connectCommand(nbdkit(...args))), 5000);
    if (c === 'pending' || c.error) return { problems: [`${where}: connect ${c === 'pending' ? 'hung' : String(c.error)}`], cut: false };
    kill = () => h.killSubprocess(9);
  }

  const ledger = new Ledger();
  issue(h, rng, ledger, depth);
  if (killAfter > 0) await sleep(killAfter);
  kill();
  // Half the time the JS thread is busy as the server dies: the client then
  // wakes up to replies and the hang-up at once.
  if (busyAfter > 0) blockThread(busyAfter);

  const problems: string[] = [];
  if (!(await ledger.settledWithin(SETTLE_MS))) {
    const left = ledger.entries.filter((e) => e.settles === 0).map((e) => e.label);
    problems.push(`${left.length} of ${depth} commands unsettled ${SETTLE_MS} ms after the kill (${left.slice(0, 4).join(', ')}...); state ${h.connectionState()}`);
  }
  problems.push(...(await closeDeadConnection(h)));
  await sleep(10); // a second settlement would show up here
  problems.push(...ledger.problems({ settled: true }));
  return { problems: problems.map((p) => `${where}: ${p}`), cut: ledger.failed() > 0 };
}

/** The rounds for one kind of server: every problem, and how many kills cut commands off. */
async function killRounds(via: Via): Promise<{ failures: string[]; cutRounds: number }> {
  const seed = SEED + (via === 'unix' ? 0 : 1);
  const failures: string[] = [];
  let failedRounds = 0;
  let cutRounds = 0;
  for (let round = 0; round < ROUNDS && failedRounds < GIVE_UP_AFTER; round++) {
    const { problems, cut } = await killRound(seed, via, round);
    if (problems.length > 0) failedRounds++;
    if (cut) cutRounds++;
    failures.push(...problems.slice(0, 6));
  }
  if (failedRounds >= GIVE_UP_AFTER) failures.push(`(stopped after ${GIVE_UP_AFTER} failing rounds)`);
  return { failures, cutRounds };
}

describe('servers killed with commands in flight', () => {
  test('nbdkit on a Unix socket, SIGKILLed 0–20 ms after 1–64 commands: each command settles once, shutdown() and close() return promptly', async () => {
    const { failures, cutRounds } = await killRounds('unix');
    expect(failures).toEqual([]);
    // The kills did land while commands were in flight (about half do).
    expect(cutRounds).toBeGreaterThanOrEqual(ROUNDS / 4);
  }, 60000);

  test('connectCommand nbdkit killed with killSubprocess(SIGKILL) 0–20 ms after 1–64 commands: each command settles once, shutdown() and close() return promptly', async () => {
    const { failures, cutRounds } = await killRounds('command');
    expect(failures).toEqual([]);
    expect(cutRounds).toBeGreaterThanOrEqual(ROUNDS / 4);
  }, 60000);
});

describe('a server that hangs up with requests unread', () => {
  const ANSWER = 16;
  const SERVER = join(__dirname, 'fixtures', 'half-answering-server.py');
  async function halfAnsweringServer(more: number): Promise<string> {
    const socket = join(tempDir(), 'half.sock');
    const { proc } = spawnServer('python3', [SERVER, socket, String(ANSWER), String(more)], { stdout: 'pipe', stopSignal: 'SIGKILL' });
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.once('data', () => resolve());
      proc.once('exit', (code) => reject(new Error(`half-answering-server.py exited with ${code}`)));
    });
    return socket;
  }

  test('answers 16 of 32 reads and closes: the 16 answered succeed with their data, the 16 others and two flushes fail, each once, within 2 s', async () => {
    // Requests beyond the 16th: 16 reads and two flushes, 28 bytes each.
    const socket = await halfAnsweringServer(18 * 28);
    const h = new Handle();
    handles.push(h);
    await h.connectUnix(socket);
    const ledger = new Ledger();
    const bufs: Buffer[] = [];
    for (let i = 0; i < 32; i++) {
      const buf = Buffer.alloc(4096);
      bufs.push(buf);
      const offset = i * 4096;
      const label = `read ${i}`;
      if (i % 4 === 0) h.aioPread(buf, offset, ledger.aio(label).completion);
      else if (i % 4 === 1) {
        const c = ledger.aio(label, 1);
        h.aioPreadStructured(buf, offset, c.chunk, c.completion);
      } else if (i % 4 === 2) ledger.promise(label, () => h.pread(buf, offset));
      else ledger.promise(label, (chunk) => h.preadStructured(buf, offset, chunk));
    }
    h.aioFlush(ledger.aio('aioFlush').completion);
    ledger.promise('flush', () => h.flush());
    // Every request is on the wire. While this thread is busy, the server
    // answers 16 and hangs up: the client wakes up to both at once.
    blockThread(300);

    const allSettled = await ledger.settledWithin(2000);
    const left = ledger.entries.filter((e) => e.settles === 0).map((e) => e.label);
    expect({ settled: allSettled, unsettled: left, state: allSettled ? 'n/a' : h.connectionState() }).toEqual({ settled: true, unsettled: [], state: 'n/a' });
    expect(ledger.problems({ settled: true })).toEqual([]);
    const outcome = ledger.entries.map((e, i) => `${e.label}: ${e.error === undefined ? 'ok' : 'failed'}${i < ANSWER && e.error !== undefined ? ` (${String(e.error)})` : ''}`);
    expect(outcome).toEqual(ledger.entries.map((e, i) => `${e.label}: ${i < ANSWER ? 'ok' : 'failed'}`));
    for (let i = 0; i < ANSWER; i++) expect(bufs[i].equals(pattern(i * 4096, 4096))).toBe(true);

    const down = await within(settled(h.shutdown()), 2000);
    expect(down).not.toBe('pending');
    h.close();
    await sleep(10);
    expect(ledger.problems({ settled: true })).toEqual([]);
  });
});

test('once aioIsDead() or aioIsClosed() is true, aioInFlight() is 0 and no completion is left to deliver, as in C (20 kills with reads in flight)', async () => {
  const seen: string[] = [];
  for (let round = 0; round < 20; round++) {
    const server = await startNbdkit('--filter=delay', 'memory', 'size=16M', 'rdelay=20ms');
    const h = new Handle();
    handles.push(h);
    await h.connectUri(server.uri);
    let delivered = 0;
    for (let i = 0; i < 16; i++) h.aioPread(Buffer.alloc(65536), i * 65536, () => (delivered++, 1));
    setTimeout(() => server.process.kill('SIGKILL'), 5);
    // Ask as a C program polling the state would, between turns of the loop.
    const state = await new Promise<string>((resolve) => {
      const started = Date.now();
      const look = () => {
        if (h.aioIsDead() || h.aioIsClosed()) resolve(`inFlight ${h.aioInFlight()}, completions ${delivered}`);
        else if (Date.now() - started > SETTLE_MS) resolve(`still ${h.connectionState()} after ${SETTLE_MS} ms`);
        else setImmediate(look);
      };
      look();
    });
    seen.push(state);
    h.close();
  }
  expect(seen).toEqual(Array(20).fill('inFlight 0, completions 16'));
});

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
