// Servers that break the protocol: garbage instead of a greeting, garbage
// after it, hang-ups at every byte of the handshake, corrupted handshakes,
// hang-ups in the middle of a reply chunk, replies with a bad magic or an
// unknown cookie, corrupted replies. A connect rejects with an NbdError;
// every command issued on a connection that dies settles exactly once;
// nothing hangs (every wait is bounded and reported, never a jest timeout).
import { Handle } from '../../lib';
import { pattern } from '../helpers/servers';
import { Ledger, Rng, closeDeadConnection, collectStrayErrors, nbdErrorProblem } from './helpers/faults';
import { settled } from '../helpers/outcome';
import { sleep, within } from '../helpers/wait';
import {
  CMD_DISC,
  CMD_READ,
  Cut,
  REPLY_FLAG_DONE,
  REPLY_TYPE_OFFSET_DATA,
  greeting,
  handshake,
  readRequest,
  simpleReply,
  structuredChunk,
  u64,
  type Request,
  type Wire,
} from '../helpers/nbd-wire';
import { goodReply, startRawServer, type RawServer } from './helpers/raw-server';

const SEED = 0x686f7374; // 'host'
const CONNECT_MS = 2000;
const SETTLE_MS = 2000;

const stray = collectStrayErrors();
const handles: Handle[] = [];
afterAll(() => handles.forEach((h) => h.close()));

// One server for the file; each test sets what it does with a connection.
let script: (w: Wire) => Promise<void> = async () => {};
let server: RawServer;
beforeAll(async () => {
  server = await startRawServer((w) => script(w));
});

function newHandle(): Handle {
  const h = new Handle();
  handles.push(h);
  return h;
}

/** Connects to the server running `s`: what the connect settled with, within CONNECT_MS. */
async function connectTo(h: Handle, s: (w: Wire) => Promise<void>) {
  script = s;
  return within(settled(h.connectUnix(server.socket)), CONNECT_MS);
}

/** A new handle's connect to the server running `s`, then close(): what the connect settled with. */
async function connectOnce(s: (w: Wire) => Promise<void>) {
  const h = newHandle();
  const c = await connectTo(h, s);
  h.close();
  return c;
}

/** Why a connect outcome is not "rejected with a proper NbdError" (undefined if it is). */
function rejectionProblem(c: Awaited<ReturnType<typeof connectTo>>): string | undefined {
  if (c === 'pending') return `connect did not settle within ${CONNECT_MS} ms`;
  if (c.error === undefined) return 'connect succeeded';
  return nbdErrorProblem(c.error);
}

/** After the connection died: shutdown() settles promptly, close() returns promptly, nothing settles again. */
async function finish(h: Handle, ledger?: Ledger): Promise<string[]> {
  const problems = await closeDeadConnection(h);
  if (ledger) {
    await sleep(10);
    problems.push(...ledger.problems({ settled: true }));
  }
  return problems;
}

/** Issues n commands of mixed forms (reads of 4 KiB at i * 4 KiB, a flush or write now and then). */
function issueMix(h: Handle, rng: Rng, n: number): { ledger: Ledger; reads: Map<number, Buffer> } {
  const ledger = new Ledger();
  const reads = new Map<number, Buffer>();
  for (let i = 0; i < n; i++) {
    const buf = Buffer.alloc(4096);
    const offset = i * 4096;
    const kind = rng.pick(['aioPread', 'aioPreadStructured', 'pread', 'preadStructured', 'aioPread', 'pread', 'flush', 'aioPwrite']);
    const label = `${kind} #${i}`;
    try {
      if (kind === 'aioPread') h.aioPread(buf, offset, ledger.aio(label, rng.pick([0, 1])).completion);
      else if (kind === 'aioPreadStructured') {
        const c = ledger.aio(label, rng.pick([0, 1]));
        h.aioPreadStructured(buf, offset, c.chunk, c.completion);
      } else if (kind === 'pread') ledger.promise(label, () => h.pread(buf, offset));
      else if (kind === 'preadStructured') ledger.promise(label, (chunk) => h.preadStructured(buf, offset, chunk));
      else if (kind === 'flush') ledger.promise(label, () => h.flush());
      else h.aioPwrite(buf, offset, ledger.aio(label).completion);
    } catch (e) {
      ledger.threw(e);
    }
    if (kind.toLowerCase().includes('pread')) reads.set(i, buf);
  }
  return { ledger, reads };
}

async function unsettledAfter(ledger: Ledger, h: Handle): Promise<string[]> {
  if (await ledger.settledWithin(SETTLE_MS)) return [];
  const left = ledger.entries.filter((e) => e.settles === 0).map((e) => e.label);
  return [`${left.length} commands unsettled ${SETTLE_MS} ms after the server hung up (${left.slice(0, 4).join(', ')}); state ${h.connectionState()}`];
}

// ================================================================ handshake

describe('a connect to a server that breaks the handshake rejects with an NbdError', () => {
  test('random bytes instead of the greeting, then a hang-up', async () => {
    const problems: string[] = [];
    for (let i = 0; i < 16; i++) {
      const rng = Rng.forRound(SEED, i);
      const garbage = rng.bytes(rng.int(1, 200));
      const c = await connectOnce(async (w) => {
        await w.write(garbage);
        await sleep(rng.int(0, 5));
        w.destroy();
      });
      const p = rejectionProblem(c);
      if (p) problems.push(`seed ${SEED} round ${i} (${garbage.length} bytes): ${p}`);
    }
    expect(problems).toEqual([]);
  });

  test('a valid greeting, then garbage where an option reply belongs, then a hang-up', async () => {
    const problems: string[] = [];
    for (let i = 0; i < 16; i++) {
      const rng = Rng.forRound(SEED + 1, i);
      const garbage = rng.bytes(rng.int(1, 64));
      const afterOption = rng.chance(0.5);
      const c = await connectOnce(async (w) => {
        await w.write(greeting());
        await w.read(4); // client flags
        if (afterOption) await w.read(16); // the first option's header
        await w.write(garbage);
        await sleep(rng.int(0, 5));
        w.destroy();
      });
      const p = rejectionProblem(c);
      if (p) problems.push(`seed ${SEED + 1} round ${i} (${garbage.length} bytes${afterOption ? ' after an option' : ''}): ${p}`);
    }
    expect(problems).toEqual([]);
  });

  test('a hang-up after each possible number of bytes the server sends in the handshake', async () => {
    // libnbd's default handshake: greeting 18, structured-reply ACK 20, GO INFO 32 and ACK 20.
    const problems: string[] = [];
    for (let n = 0; n < 90; n++) {
      const c = await connectOnce(async (w) => {
        w.sendBudget = n;
        await handshake(w);
        problems.push(`budget ${n}: the handshake ended within it`);
      });
      const p = rejectionProblem(c);
      if (p) problems.push(`after ${n} bytes sent: ${p}`);
    }
    expect(problems).toEqual([]);
  });

  test('a hang-up after reading each possible number of the bytes the client sends in the handshake', async () => {
    const problems: string[] = [];
    // Client flags 4, structured-reply option 16, then GO: 16 + its data.
    for (let n = 0; n < 44; n++) {
      const c = await connectOnce(async (w) => {
        w.recvBudget = n;
        await handshake(w);
      });
      const p = rejectionProblem(c);
      if (p) problems.push(`after ${n} bytes read: ${p}`);
    }
    expect(problems).toEqual([]);
  });

  test('a handshake with 1–3 seeded byte flips: the connect settles within 2 s (with an NbdError if it fails), and a read after it settles once', async () => {
    const problems: string[] = [];
    let rejected = 0;
    for (let i = 0; i < 40; i++) {
      const rng = Rng.forRound(SEED + 2, i);
      const target = rng.int(0, 3); // which server message to corrupt
      const flips = Array.from({ length: rng.int(1, 3) }, () => [rng.next(), rng.int(0, 7)] as const);
      const where = `seed ${SEED + 2} round ${i} (message ${target}, ${flips.length} flips)`;
      const h = newHandle();
      const c = await connectTo(h, async (w) => {
        let message = 0;
        const mangle = (b: Buffer) => {
          if (message++ !== target) return b;
          const out = Buffer.from(b);
          for (const [at, bit] of flips) out[Math.floor(at * out.length)] ^= 1 << bit;
          return out;
        };
        // A client left waiting for handshake bytes that never come must
        // still be freed: hang up unless a request came within 300 ms.
        const timer = setTimeout(() => w.destroy(), 300);
        try {
          const { structured } = await handshake(w, { mangle });
          for (;;) {
            const req = await readRequest(w);
            clearTimeout(timer);
            if (req.type === CMD_DISC) return w.destroy();
            await w.write(goodReply(req, structured, pattern));
          }
        } finally {
          clearTimeout(timer);
        }
      });
      if (c === 'pending') {
        problems.push(`${where}: connect did not settle within ${CONNECT_MS} ms`);
      } else if (c.error !== undefined) {
        rejected++;
        const p = nbdErrorProblem(c.error);
        if (p) problems.push(`${where}: ${p}`);
      } else {
        const ledger = new Ledger();
        ledger.promise('pread', () => h.pread(Buffer.alloc(512), 0));
        if (!(await ledger.settledWithin(SETTLE_MS))) problems.push(`${where}: a read after the connect did not settle`);
        problems.push(...ledger.problems({ settled: true }).map((p) => `${where}: ${p}`));
      }
      problems.push(...(await finish(h)).map((p) => `${where}: ${p}`));
    }
    expect(problems).toEqual([]);
    expect(rejected).toBeGreaterThan(10); // most corruptions are fatal
  });
});

// An error that arrives on the socket while connect(2) is in progress (a
// vsock peer that resets at once: cid 2, a port nobody listens on) is the
// loop driver's poll error case during a connect. (Without /dev/vsock the
// socket cannot even be made: the connect rejects all the same.)
test('a vsock connect refused after connect(2) returned rejects with an NbdError within 2 s, 5 times out of 5', async () => {
  const problems: string[] = [];
  for (let i = 0; i < 5; i++) {
    const h = newHandle();
    const c = await within(settled(h.connectVsock(2, 1)), CONNECT_MS);
    const p = rejectionProblem(c);
    if (p) problems.push(`try ${i}: ${p} (state ${h.connectionState()})`);
    h.close();
    if (p) break; // a hang costs CONNECT_MS
  }
  expect(problems).toEqual([]);
});

// ================================================================ transmission

type Reply = (w: Wire, req: Request, i: number, structured: boolean) => Promise<void>;

/** Serves the handshake, then answers request i with `reply`, until the client disconnects or the script throws. */
function transmission(reply: Reply) {
  return async (w: Wire) => {
    const { structured } = await handshake(w);
    for (let i = 0; ; i++) {
      const req = await readRequest(w);
      if (req.type === CMD_DISC) return w.destroy();
      await reply(w, req, i, structured);
    }
  };
}

/** A READ's reply as one structured DATA chunk (simple without structured replies); others simple. */
function wholeReply(req: Request, structured: boolean): Buffer {
  if (req.type === CMD_READ && structured) {
    return structuredChunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, req.handle, Buffer.concat([u64(req.offset), pattern(req.offset, req.length)]));
  }
  return goodReply(req, structured, pattern);
}

/**
 * Connects to `reply`'s server, issues 2–32 mixed commands, and checks that
 * every command settles once within SETTLE_MS, that the first `answered`
 * succeed with their data, and, if `restFail`, that the others fail.
 */
async function brokenReplyRound(rng: Rng, where: string, answered: number, n: number, restFail: boolean, reply: Reply): Promise<string[]> {
  const h = newHandle();
  const c = await connectTo(h, transmission(reply));
  if (c === 'pending' || c.error) return [`${where}: connect ${c === 'pending' ? 'hung' : String(c.error)}`];
  const { ledger, reads } = issueMix(h, rng, n);
  const problems = await unsettledAfter(ledger, h);
  ledger.entries.forEach((e, i) => {
    if (e.settles === 0) return;
    const ok = e.error === undefined;
    if (i < answered && !ok) problems.push(`${e.label} was answered but failed: ${String(e.error)}`);
    if (i >= answered && ok && restFail) problems.push(`${e.label} was never answered but succeeded`);
    const buf = reads.get(i);
    if (i < answered && ok && buf && !buf.equals(pattern(i * 4096, 4096))) problems.push(`${e.label}: wrong data`);
  });
  problems.push(...(await finish(h, ledger)));
  return problems.slice(0, 6).map((p) => `${where}: ${p}`);
}

describe('commands on a connection whose server breaks a reply each settle exactly once', () => {
  test('a hang-up in the middle of a reply (structured chunk or simple): the commands answered before it succeed, the rest fail', async () => {
    const problems: string[] = [];
    for (let round = 0; round < 16; round++) {
      const rng = Rng.forRound(SEED + 3, round);
      const serverRng = Rng.forRound(SEED + 3, round, 1);
      const n = rng.int(2, 32);
      const answered = rng.int(0, n - 1);
      const cutAt = rng.next();
      const where = `seed ${SEED + 3} round ${round} (${n} commands, hang-up in reply ${answered})`;
      problems.push(
        ...(await brokenReplyRound(rng, where, answered, n, true, async (w, req, i, structured) => {
          const whole = wholeReply(req, structured);
          if (i < answered) return w.write(whole);
          // Anywhere from the first byte of the reply to its last but one.
          await w.write(whole.subarray(0, 1 + Math.floor(cutAt * (whole.length - 2))));
          await sleep(serverRng.int(0, 5));
          throw new Cut('hang up mid-reply');
        })),
      );
    }
    expect(problems).toEqual([]);
  });

  test('a reply with a bad magic on a connection the server keeps open: the answered commands succeed, the rest fail', async () => {
    const problems: string[] = [];
    for (let round = 0; round < 8; round++) {
      const rng = Rng.forRound(SEED + 4, round);
      const badMagic = rng.pick([0, 0xffffffff, 0x67446699, 0x668e33ee, rng.int(1, 0xfffffff0)]);
      const n = rng.int(2, 32);
      const answered = rng.int(0, n - 1);
      const where = `seed ${SEED + 4} round ${round} (${n} commands, bad magic in reply ${answered})`;
      problems.push(
        ...(await brokenReplyRound(rng, where, answered, n, true, async (w, req, i, structured) => {
          const whole = wholeReply(req, structured);
          if (i < answered) return w.write(whole);
          if (i > answered) return; // read, never answered
          const bad = Buffer.from(whole);
          bad.writeUInt32BE(badMagic, 0);
          await w.write(bad);
        })),
      );
    }
    expect(problems).toEqual([]);
  });

  test('a reply for a cookie nobody asked for, then correct replies: each command settles once (an NbdError if it fails)', async () => {
    const problems: string[] = [];
    for (let round = 0; round < 8; round++) {
      const rng = Rng.forRound(SEED + 5, round);
      const structuredStray = rng.chance(0.5);
      const n = rng.int(2, 32);
      const answered = rng.int(0, n - 1);
      const where = `seed ${SEED + 5} round ${round} (${n} commands, stray cookie before reply ${answered})`;
      problems.push(
        ...(await brokenReplyRound(rng, where, answered, n, false, async (w, req, i, structured) => {
          if (i === answered) {
            const stray = Buffer.from(req.handle);
            stray.writeUInt32BE(0xdeadbeef, 0);
            await w.write(
              structured && structuredStray
                ? structuredChunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, stray, Buffer.concat([u64(0), Buffer.alloc(512)]))
                : simpleReply(stray, 0),
            );
          }
          await w.write(wholeReply(req, structured));
        })),
      );
    }
    expect(problems).toEqual([]);
  });

  test('replies with seeded byte flips, the server hanging up 100 ms after its last reply: each command settles once within 2 s', async () => {
    const problems: string[] = [];
    for (let round = 0; round < 16; round++) {
      const rng = Rng.forRound(SEED + 6, round);
      const serverRng = Rng.forRound(SEED + 6, round, 1);
      const n = rng.int(2, 32);
      const where = `seed ${SEED + 6} round ${round} (${n} commands)`;
      let idle: NodeJS.Timeout | undefined;
      problems.push(
        ...(await brokenReplyRound(rng, where, 0, n, false, async (w, req, i, structured) => {
          clearTimeout(idle);
          // A client left waiting for bytes that never come must still be freed.
          idle = setTimeout(() => w.destroy(), 100);
          const out = Buffer.from(wholeReply(req, structured));
          const r = serverRng;
          if (r.chance(0.3)) for (let k = r.int(1, 2); k > 0; k--) out[r.int(0, Math.min(out.length, 40) - 1)] ^= 1 << r.int(0, 7);
          await w.write(out);
        })),
      );
      clearTimeout(idle);
    }
    expect(problems).toEqual([]);
  });
});

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
