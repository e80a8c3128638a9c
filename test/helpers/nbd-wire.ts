// The NBD protocol as the tests' in-process servers speak it (doc/proto.md in
// the NBD repository): its numbers, a Wire that reads exact byte counts and
// can hang up after a budget, the server side of the handshake, requests
// and replies. Shared by the scripted server (test/helpers/scripted-server)
// and the fault suite's raw server (test/faults/helpers/raw-server).
//
// These servers run in the test's own process: the client must never block
// the event loop (spawnSync, a synchronous libnbd call on the main thread)
// while talking to them.
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './servers';

// Handshake.
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_INFO = 6;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
// Transmission flags.
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_DF = 1 << 7;

// Transmission phase.
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_ERROR = (1 << 15) + 1;
export const REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;

/** NBD's errno values (not necessarily the host's). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** Thrown by a Wire when its byte budget runs out (it has hung up by then). */
export class Cut extends Error {}

/** One connection, with optional budgets: after that many bytes each way, it hangs up. */
export class Wire {
  #buf: Buffer = Buffer.alloc(0);
  #want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #ended = false;
  sendBudget = Infinity;
  recvBudget = Infinity;

  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#pump();
    });
    const end = () => {
      this.#ended = true;
      this.#pump();
    };
    sock.on('end', end);
    sock.on('close', end);
    sock.on('error', end);
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Exactly n bytes; rejects once the connection has ended. */
  async read(n: number): Promise<Buffer> {
    if (this.recvBudget < n) {
      if (this.recvBudget > 0) await this.#read(this.recvBudget);
      this.recvBudget = 0;
      this.destroy();
      throw new Cut('receive budget spent');
    }
    this.recvBudget -= n;
    return this.#read(n);
  }

  #read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#want = { n, resolve, reject };
      this.#pump();
    });
  }

  /** Resolves once the bytes are handed to the kernel. */
  async write(b: Buffer): Promise<void> {
    if (this.sendBudget < b.length) {
      const part = b.subarray(0, this.sendBudget);
      this.sendBudget = 0;
      if (part.length > 0) await this.#write(part);
      this.destroy();
      throw new Cut('send budget spent');
    }
    this.sendBudget -= b.length;
    return this.#write(b);
  }

  #write(b: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.sock.destroyed) return reject(new Error('connection closed'));
      this.sock.write(b, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Stop reading: what the client sends next stays unread in the kernel. */
  pause(): void {
    this.sock.pause();
  }

  /** Hang up now; with unread data queued, the client's next read is ECONNRESET. */
  destroy(): void {
    this.sock.destroy();
  }

  #pump(): void {
    const w = this.#want;
    if (w === undefined) return;
    if (this.#buf.length >= w.n) {
      this.#want = undefined;
      const out = this.#buf.subarray(0, w.n);
      this.#buf = this.#buf.subarray(w.n);
      w.resolve(out);
    } else if (this.#ended) {
      this.#want = undefined;
      w.reject(new Error('connection closed'));
    }
  }
}

export function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}
export function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}

export function greeting(): Buffer {
  return Buffer.concat([u64(NBDMAGIC), u64(IHAVEOPT), u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)]);
}

function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u64(OPT_REPLY_MAGIC), u32(option), u32(type), u32(data.length), data]);
}

export interface ExportOptions {
  /** Export size in bytes (default 1 MiB). */
  size?: number;
  /** Reply to NBD_OPT_STRUCTURED_REPLY with ACK (default) or ERR_UNSUP. */
  structured?: boolean;
  /** Transmission flags (default HAS_FLAGS | SEND_FLUSH | SEND_DF). */
  transmissionFlags?: number;
  /** Applied to each server message of the handshake before it is sent (fuzzing). */
  mangle?: (b: Buffer) => Buffer;
}

/**
 * The server side of libnbd's default handshake (fixed newstyle, structured
 * replies, NBD_OPT_GO). Throws Cut when the wire's budget ends it.
 */
export async function handshake(w: Wire, o: ExportOptions = {}): Promise<{ structured: boolean }> {
  const size = o.size ?? 1 << 20;
  const mangle = o.mangle ?? ((b: Buffer) => b);
  const tflags = o.transmissionFlags ?? TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_DF;
  await w.write(mangle(greeting()));
  const clientFlags = (await w.read(4)).readUInt32BE(0);
  let structured = false;
  for (;;) {
    const hdr = await w.read(16);
    if (hdr.readBigUInt64BE(0) !== IHAVEOPT) throw new Error('bad option magic');
    const option = hdr.readUInt32BE(8);
    await w.read(hdr.readUInt32BE(12));
    if (option === OPT_EXPORT_NAME) {
      await w.write(mangle(Buffer.concat([u64(size), u16(tflags), clientFlags & FLAG_NO_ZEROES ? Buffer.alloc(0) : Buffer.alloc(124)])));
      return { structured };
    } else if (option === OPT_ABORT) {
      await w.write(mangle(optionReply(option, REP_ACK)));
      w.destroy();
      throw new Cut('client aborted');
    } else if (option === OPT_STRUCTURED_REPLY && (o.structured ?? true)) {
      structured = true;
      await w.write(mangle(optionReply(option, REP_ACK)));
    } else if (option === OPT_GO || option === OPT_INFO) {
      const info = Buffer.concat([u16(0), u64(size), u16(tflags)]);
      await w.write(mangle(Buffer.concat([optionReply(option, REP_INFO, info), optionReply(option, REP_ACK)])));
      if (option === OPT_GO) return { structured };
    } else {
      await w.write(mangle(optionReply(option, REP_ERR_UNSUP)));
    }
  }
}

export interface Request {
  type: number;
  flags: number;
  handle: Buffer;
  offset: number;
  length: number;
}

/** One request (the payload of a write is read and dropped). */
export async function readRequest(w: Wire): Promise<Request> {
  const r = await w.read(28);
  if (r.readUInt32BE(0) !== REQUEST_MAGIC) throw new Error('bad request magic');
  const req = {
    flags: r.readUInt16BE(4),
    type: r.readUInt16BE(6),
    handle: Buffer.from(r.subarray(8, 16)),
    offset: Number(r.readBigUInt64BE(16)),
    length: r.readUInt32BE(24),
  };
  if (req.type === CMD_WRITE) await w.read(req.length);
  return req;
}

export function simpleReply(handle: Buffer, errno: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u32(SIMPLE_REPLY_MAGIC), u32(errno), handle, payload]);
}

export function structuredChunk(flags: number, type: number, handle: Buffer, payload: Buffer): Buffer {
  return Buffer.concat([u32(STRUCTURED_REPLY_MAGIC), u16(flags), u16(type), handle, u32(payload.length), payload]);
}

export interface UnixServer {
  socket: string;
  uri: string;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

const running = new Set<UnixServer>();
afterAll(async () => {
  await Promise.all([...running].map((s) => s.close()));
});

/**
 * A Unix socket server in a temp dir (closed after the test file) that runs
 * `serve` for each connection (`n` counts from 0); whatever `serve` throws
 * hangs up that connection.
 */
export async function listenUnix(name: string, serve: (sock: Socket, n: number) => Promise<void>): Promise<UnixServer> {
  const socket = join(tempDir(), name);
  const sockets = new Set<Socket>();
  let connections = 0;
  const state: UnixServer = {
    socket,
    uri: `nbd+unix:///?socket=${socket}`,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        running.delete(state);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((sock) => {
    const n = connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    serve(sock, n).catch(() => sock.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  running.add(state);
  return state;
}
