// Several replies per wake-up: after a reply, the driver reads the replies
// already waiting in the socket before going back to its wait
// (NbdHandle::ReadWaitingReplies). A scripted server holds its replies and
// then sends them in one write, so that they are all in the client's socket
// at once; libnbd's order, errors, retirement and close() must be as when
// each reply has a wake-up of its own.
import { execFileSync } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { constants } from 'node:os';
import { NbdError, READ_DATA, defaultDriver, type ErrorRef, type Handle } from '../../lib';
import { handle, pattern, startNbdkit } from '../helpers/servers';
import { serverSocketFdWith, stopSocketFdServers } from '../helpers/socket-fd';
import { waitFor } from '../helpers/wait';
import { NBD_EIO, NBD_ENOSPC } from '../helpers/nbd-wire';
import { scriptedData, startScriptedServer, type ReadScript, type ScriptedServer } from '../helpers/scripted-server';

const { EIO, ENOSPC, ENOTCONN } = constants.errno;
const COUNT = 64;
const BLOCK = 512; // 64 replies of ~550 bytes fit in the socket's buffer at once

const dataScript: ReadScript = (offset, length) => [{ type: 'data', offset, length }];

/**
 * Counts JS deliveries: completions run by one delivery share one microtask
 * checkpoint (the callback scope closes after the batch), so a microtask
 * queued by the first completion of a delivery runs only after its last.
 */
class Deliveries {
  count = 0;
  #open = false;

  mark(): void {
    if (this.#open) return;
    this.#open = true;
    this.count++;
    queueMicrotask(() => (this.#open = false));
  }
}

interface Command {
  index: number;
  buf: Buffer;
  cookie: number;
  /** [offset, status, length, error.value] per chunk call. */
  chunks: [number, number, number, number][];
  /** error.value on entry of each completion call. */
  completions: number[];
  /** The delivery (Deliveries.count) its completion ran in. */
  delivery: number;
}

async function connect(script: ReadScript = dataScript): Promise<{ server: ScriptedServer; h: Handle }> {
  const server = await startScriptedServer(script);
  const h = handle();
  await h.connectUri(server.uri);
  return { server, h };
}

/**
 * Issues COUNT reads of BLOCK bytes at offsets i * BLOCK while the server
 * holds its replies, waits until it has every request, then lets it send
 * `release` replies (all by default) in one write.
 */
async function issueHeld(
  server: ScriptedServer,
  h: Handle,
  onCompletion: (c: Command, order: number[]) => number = () => 0,
  release?: number,
): Promise<{ commands: Command[]; order: number[]; deliveries: Deliveries }> {
  const deliveries = new Deliveries();
  const order: number[] = [];
  const commands: Command[] = [];
  const before = server.requests.length;
  server.hold();
  for (let i = 0; i < COUNT; i++) {
    const c: Command = { index: i, buf: Buffer.alloc(BLOCK), cookie: 0, chunks: [], completions: [], delivery: 0 };
    c.cookie = h.aioPreadStructured(
      c.buf,
      i * BLOCK,
      (subbuf, offset, status, error) => {
        c.chunks.push([Number(offset), status, subbuf.length, error.value]);
        return 0;
      },
      (error: ErrorRef) => {
        deliveries.mark();
        c.completions.push(error.value);
        c.delivery = deliveries.count;
        order.push(i);
        return onCompletion(c, order);
      },
    );
    commands.push(c);
  }
  await waitFor(() => server.requests.length - before === COUNT, `${COUNT} requests at the server`);
  server.release(release);
  return { commands, order, deliveries };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('replies already waiting in the socket', () => {
  test('64 reads whose replies arrive in one write all complete, in order, with their data, and are retired once', async () => {
    const { server, h } = await connect();
    const { commands, order } = await issueHeld(server, h);
    await waitFor(() => order.length === COUNT, 'every completion');

    expect(order).toEqual(range(COUNT));
    for (const c of commands) {
      expect(c.completions).toEqual([0]);
      expect(c.chunks).toEqual([[c.index * BLOCK, READ_DATA, BLOCK, 0]]);
      expect(c.buf.equals(scriptedData(c.index * BLOCK, BLOCK))).toBe(true);
      // Not auto-retired (the completion returned 0): retired here, once.
      expect(h.aioCommandCompleted(c.cookie)).toBe(true);
      expect(h.aioCommandCompleted(c.cookie)).toBe(false);
    }
    expect(h.aioInFlight()).toBe(0);
    // The connection is still in order: one more read after the batch.
    const buf = Buffer.alloc(BLOCK);
    await h.pread(buf, 3 * BLOCK);
    expect(buf.equals(scriptedData(3 * BLOCK, BLOCK))).toBe(true);
  });

  test('replies that are all waiting reach JS in fewer deliveries than there are replies', async () => {
    const { server, h } = await connect();
    const { commands, order, deliveries } = await issueHeld(server, h);
    await waitFor(() => order.length === COUNT, 'every completion');

    expect(order).toEqual(range(COUNT));
    // Deliveries only ever go forward with the replies' order.
    const byOrder = commands.map((c) => c.delivery);
    expect(byOrder).toEqual([...byOrder].sort((a, b) => a - b));
    if (defaultDriver() === 'loop') {
      // The loop driver reads every waiting reply in the wake-up of the first
      // (one notify_read each), then delivers them together: one wake-up,
      // one delivery, where it used to take one of each per reply.
      expect(deliveries.count).toBe(1);
    } else {
      // The I/O thread wakes JS once per batch, not once per reply (it did
      // so before reading several replies per wake-up too: what changed is
      // its own poll(2) per reply, which JS cannot see); it may see the
      // first replies before the rest are in the socket.
      expect(deliveries.count).toBeLessThan(COUNT / 4);
    }
  });

  test('Promise forms of replies read in one wake-up resolve in the order of the replies', async () => {
    const { server, h } = await connect();
    server.hold();
    const settled: number[] = [];
    const bufs = range(COUNT).map(() => Buffer.alloc(BLOCK));
    const reads = bufs.map((buf, i) => h.pread(buf, i * BLOCK).then(() => settled.push(i)));
    await waitFor(() => server.requests.length === COUNT, `${COUNT} requests at the server`);
    server.release();
    await Promise.all(reads);
    expect(settled).toEqual(range(COUNT));
    bufs.forEach((buf, i) => expect(buf.equals(scriptedData(i * BLOCK, BLOCK))).toBe(true));
  });
});

describe('a failure in the middle of a batch of waiting replies', () => {
  const failing = new Map([
    [20, NBD_EIO],
    [41, NBD_ENOSPC],
  ]);
  const script: ReadScript = (offset, length) => {
    const errno = failing.get(offset / BLOCK);
    return errno === undefined ? [{ type: 'data', offset, length }] : [{ type: 'error', errno, message: 'scripted failure' }];
  };

  test('error replies among waiting replies fail only their own commands, with their errno; the others succeed', async () => {
    const { server, h } = await connect(script);
    const { commands, order } = await issueHeld(server, h);
    await waitFor(() => order.length === COUNT, 'every completion');

    expect(order).toEqual(range(COUNT));
    const expected: Record<number, number> = { 20: EIO, 41: ENOSPC };
    for (const c of commands) {
      const errno = expected[c.index];
      if (errno === undefined) {
        expect(c.completions).toEqual([0]);
        expect(c.chunks).toEqual([[c.index * BLOCK, READ_DATA, BLOCK, 0]]);
        expect(c.buf.equals(scriptedData(c.index * BLOCK, BLOCK))).toBe(true);
        expect(h.aioCommandCompleted(c.cookie)).toBe(true);
      } else {
        expect(c.completions).toEqual([errno]);
        expect(c.chunks).toEqual([]);
        let thrown: unknown;
        try {
          h.aioCommandCompleted(c.cookie);
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(NbdError);
        expect(thrown).toMatchObject({ errno });
      }
    }
    // An error reply is the command's, not the connection's: it goes on.
    const buf = Buffer.alloc(BLOCK);
    await h.pread(buf, 5 * BLOCK);
    expect(buf.equals(scriptedData(5 * BLOCK, BLOCK))).toBe(true);
  });

  test('a server that sends some replies and hangs up: those succeed, the rest fail with ENOTCONN, each command once', async () => {
    const { server, h } = await connect();
    const sent = 40;
    const { commands, order } = await issueHeld(server, h, () => 0, sent);
    await waitFor(() => order.length === sent, `the first ${sent} completions`);
    await server.close(); // the other replies are never sent
    await waitFor(() => order.length === COUNT, 'every completion');
    await new Promise((r) => setTimeout(r, 50)); // nothing more arrives

    // The replies in their order; then libnbd fails the rest in an order of
    // its own (newest first, in libnbd 1.14).
    expect(order.slice(0, sent)).toEqual(range(sent));
    expect([...order].sort((a, b) => a - b)).toEqual(range(COUNT));
    for (const c of commands) {
      if (c.index < sent) {
        expect(c.completions).toEqual([0]);
        expect(c.buf.equals(scriptedData(c.index * BLOCK, BLOCK))).toBe(true);
      } else {
        expect(c.completions).toEqual([ENOTCONN]);
        expect(c.chunks).toEqual([]);
      }
    }
  });
});

describe('close() from a callback in the middle of a batch of waiting replies', () => {
  test('every other command settles exactly once, with ENOTCONN, and no callback runs after close()', async () => {
    const { server, h } = await connect();
    const closeAt = 10;
    let closedAfter = -1;
    const { commands, order } = await issueHeld(server, h, (c, seen) => {
      if (c.index === closeAt) {
        closedAfter = seen.length;
        h.close();
      }
      return 0;
    });
    await waitFor(() => order.length === COUNT, 'every completion');
    await new Promise((r) => setTimeout(r, 50)); // nothing more arrives

    expect(closedAfter).toBe(closeAt + 1);
    // Those before close() completed with their replies; close() completed
    // the rest itself, in issue order, from inside the callback.
    expect(order).toEqual(range(COUNT));
    for (const c of commands) {
      if (c.index <= closeAt) {
        expect(c.completions).toEqual([0]);
        expect(c.chunks).toEqual([[c.index * BLOCK, READ_DATA, BLOCK, 0]]);
      } else {
        expect(c.completions).toEqual([ENOTCONN]);
        expect(c.chunks).toEqual([]); // their replies, already read, are dropped
      }
    }
    expect(h.closed).toBe(true);
  });

  test('Promise forms pending when a callback closes the handle mid-batch reject once with ENOTCONN', async () => {
    const { server, h } = await connect();
    server.hold();
    const outcomes: (number | string)[][] = range(COUNT).map(() => []);
    const closeAt = 30;
    // Even indexes: callback form (closeAt closes); odd: Promise form.
    for (let i = 0; i < COUNT; i++) {
      const buf = Buffer.alloc(BLOCK);
      if (i % 2 === 0) {
        h.aioPread(buf, i * BLOCK, (error) => {
          outcomes[i].push(error.value);
          if (i === closeAt) h.close();
          return 1;
        });
      } else {
        h.pread(buf, i * BLOCK).then(
          () => outcomes[i].push(0),
          (e: NbdError) => outcomes[i].push(e.code ?? String(e)),
        );
      }
    }
    await waitFor(() => server.requests.length === COUNT, `${COUNT} requests at the server`);
    server.release();
    await waitFor(() => outcomes.every((o) => o.length > 0), 'every command settled');
    await new Promise((r) => setTimeout(r, 50));

    outcomes.forEach((o, i) => {
      if (i <= closeAt) expect(o).toEqual([0]);
      else if (i % 2 === 0) expect(o).toEqual([ENOTCONN]);
      else expect(o).toEqual(['ENOTCONN']);
    });
  });
});

describe('large replies already waiting in the socket', () => {
  afterAll(stopSocketFdServers);

  const LARGE = 256 * 1024;
  const READS = 8; // 2 MiB of replies: twice the JS thread's drain cap

  /** Bytes waiting in the receive queue of Unix socket `fd` (ss: Recv-Q of the socket with its inode). */
  const queued = (fd: number): number => {
    const inode = String(fstatSync(fd).ino);
    for (const line of execFileSync('ss', ['-xnH'], { encoding: 'utf8' }).split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[5] === inode) return Number(f[2]);
    }
    throw new Error(`no Unix socket with inode ${inode} in ss -x`);
  };

  test("plain reads' replies are drained on the JS thread 1 MiB per wake-up, in order, each with its data", async () => {
    // A server whose send buffer holds all the replies, so that they wait in
    // the socket together while this thread is held.
    // One server thread: replies in request order.
    const { fd } = await serverSocketFdWith({ sendBuffer: 4 << 20 }, '--threads=1', 'pattern', 'size=8M');
    const h = handle();
    await h.connectSocket(fd);
    const deliveries = new Deliveries();
    const seen: { index: number; delivery: number; error: number }[] = [];
    const bufs = range(READS).map(() => Buffer.alloc(LARGE));
    bufs.forEach((buf, i) =>
      h.aioPread(buf, i * LARGE, (error: ErrorRef) => {
        deliveries.mark();
        seen.push({ index: i, delivery: deliveries.count, error: error.value });
        return 1;
      }),
    );
    if (defaultDriver() === 'loop') {
      // Hold this thread (and with it the loop driver's reading) until every
      // reply waits in the socket. The thread driver's I/O thread reads them
      // meanwhile.
      const park = new Int32Array(new SharedArrayBuffer(4));
      for (const deadline = Date.now() + 10_000; queued(fd) < READS * LARGE; ) {
        if (Date.now() > deadline) throw new Error('the server did not write its replies within 10 s');
        Atomics.wait(park, 0, 0, 5);
      }
    }
    await waitFor(() => seen.length === READS, 'every completion');

    expect(seen.map((c) => c.index)).toEqual(range(READS));
    expect(seen.every((c) => c.error === 0)).toBe(true);
    bufs.forEach((buf, i) => expect(buf.equals(pattern(i * LARGE, LARGE))).toBe(true));
    const perDelivery = [...new Set(seen.map((c) => c.delivery))].map((d) => seen.filter((c) => c.delivery === d).length);
    if (defaultDriver() === 'loop') {
      // Four replies of 256 KiB reach the cap; the rest wait for the next turn.
      expect(perDelivery).toEqual([4, 4]);
    } else {
      // The I/O thread has no such cap (it holds no event loop): whatever it read meanwhile.
      expect(perDelivery.reduce((a, b) => a + b, 0)).toBe(READS);
    }
  });
});

describe('the thread driver while JS delivers', () => {
  test('goes on reading the socket: replies arrive in their buffers while a completion callback holds the JS thread', async () => {
    // Eight 1 MiB replies: far more than the server's socket buffer holds
    // (~200 KiB), so the seven after the first reach their buffers only if
    // the I/O thread reads while JS is inside the first completion.
    const READS = 8;
    const SIZE = 1024 * 1024;
    const server = await startNbdkit('pattern', `size=${READS * SIZE}`);
    const h = handle({ driver: 'thread' });
    await h.connectUri(server.uri);
    // Views of SharedArrayBuffers, which libnbd fills in place on every Node
    // release (a plain Buffer goes through a copy on 20 and 22, whose bytes
    // reach it only as the completion is delivered: lib/handle/buffers.ts).
    const bufs = range(READS).map(() => Buffer.from(new SharedArrayBuffer(SIZE)));
    const lastFilled = (): boolean => bufs[READS - 1].readBigUInt64BE(SIZE - 8) === BigInt(READS * SIZE - 8);
    let filledDuringCallback: boolean | undefined;
    let done = 0;
    bufs.forEach((buf, i) =>
      h.aioPread(buf, i * SIZE, (error: ErrorRef) => {
        if (filledDuringCallback === undefined) {
          // Held here (up to 10 s) until the last reply's bytes are in its buffer.
          const park = new Int32Array(new SharedArrayBuffer(4));
          for (const deadline = Date.now() + 10_000; !lastFilled() && Date.now() < deadline; ) Atomics.wait(park, 0, 0, 1);
          filledDuringCallback = lastFilled();
        }
        expect(error.value).toBe(0);
        done++;
        return 1;
      }),
    );
    await waitFor(() => done === READS, 'every completion');
    expect(filledDuringCallback).toBe(true);
    bufs.forEach((buf, i) => expect(buf.equals(pattern(i * SIZE, SIZE))).toBe(true));
  });
});
