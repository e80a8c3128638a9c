// A minimal, scripted NBD server for protocol behaviour no real server
// produces (NBD_REPLY_TYPE_ERROR_OFFSET chunks, short structured reads,
// malformed replies). Fixed-newstyle handshake, structured replies, Unix
// socket in a temp dir; any number of connections, each handled on its own.
//
// It runs in the test's own process: a client that blocks the event loop
// (spawnSync, a synchronous libnbd call on the main thread) would deadlock
// against it, so run other clients asynchronously (spawn/execFile).
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './servers';

const running = new Set<ScriptedServer>();
afterAll(async () => {
  await Promise.all([...running].map((s) => s.close()));
});

// Handshake (doc/proto.md in the NBD repository).
const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
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
const INFO_EXPORT = 0;

// Transmission flags.
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_DF = 1 << 7;

// Transmission phase.
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_ERROR = (1 << 15) + 1;
export const REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;

/** NBD's errno values (not necessarily the host's). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** One structured reply chunk. The last chunk of a reply gets the DONE flag. */
export type Chunk =
  /** OFFSET_DATA with `scriptedData(offset, length)` (or `data`) as payload. */
  | { type: 'data'; offset: number; length: number; data?: Buffer }
  | { type: 'hole'; offset: number; length: number }
  | { type: 'error_offset'; errno: number; offset: number; message?: string }
  | { type: 'error'; errno: number; message?: string }
  /** Anything else: a raw reply type and payload, e.g. for malformed replies. */
  | { type: 'raw'; replyType: number; payload: Buffer; flags?: number };

/** For an NBD_CMD_READ: the chunks to send, in order. */
export type ReadScript = (offset: number, length: number) => Chunk[];

export interface Request {
  type: number;
  flags: number;
  offset: number;
  length: number;
}

export interface ScriptedServerOptions {
  /** Export size in bytes (default 1 MiB). */
  size?: number;
  /** Transmission flags (default HAS_FLAGS | READ_ONLY | SEND_DF). */
  transmissionFlags?: number;
  /** Reply to NBD_OPT_STRUCTURED_REPLY with ACK (default) or ERR_UNSUP. */
  structuredReplies?: boolean;
}

export interface ScriptedServer {
  socket: string;
  uri: string;
  /** Every request received, over all connections, in order. */
  requests: Request[];
  /** Connections accepted so far. */
  connections: number;
  /** Replace the read script (applies to later requests). */
  script: ReadScript;
  /** From now on, keep transmission replies instead of sending them (until release()). */
  hold(): void;
  /**
   * Sends the replies held so far, each connection's in one write (so that
   * they are all in the client's socket at once), and stops holding. With
   * `count`, sends only each connection's first `count` held replies and
   * keeps holding the rest.
   */
  release(count?: number): void;
  close(): Promise<void>;
}

/** The payload of a scripted DATA chunk: byte i of the export is (i * 7 + 3) mod 256. */
export function scriptedData(offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = ((offset + i) * 7 + 3) & 0xff;
  return b;
}

/** Pull-based reader over a socket: `await read(n)` returns exactly n bytes. */
class Reader {
  #buf: Buffer = Buffer.alloc(0);
  #want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #ended = false;

  constructor(sock: Socket) {
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

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#want = { n, resolve, reject };
      this.#pump();
    });
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

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}
function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}

function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u64(OPT_REPLY_MAGIC), u32(option), u32(type), u32(data.length), data]);
}

function structuredReply(flags: number, type: number, handle: Buffer, payload: Buffer): Buffer {
  return Buffer.concat([u32(STRUCTURED_REPLY_MAGIC), u16(flags), u16(type), handle, u32(payload.length), payload]);
}

function chunkBytes(c: Chunk, done: boolean, handle: Buffer): Buffer {
  const flags = done ? REPLY_FLAG_DONE : 0;
  switch (c.type) {
    case 'data':
      return structuredReply(flags, REPLY_TYPE_OFFSET_DATA, handle, Buffer.concat([u64(c.offset), c.data ?? scriptedData(c.offset, c.length)]));
    case 'hole':
      return structuredReply(flags, REPLY_TYPE_OFFSET_HOLE, handle, Buffer.concat([u64(c.offset), u32(c.length)]));
    case 'error_offset': {
      const msg = Buffer.from(c.message ?? '');
      return structuredReply(flags, REPLY_TYPE_ERROR_OFFSET, handle, Buffer.concat([u32(c.errno), u16(msg.length), msg, u64(c.offset)]));
    }
    case 'error': {
      const msg = Buffer.from(c.message ?? '');
      return structuredReply(flags, REPLY_TYPE_ERROR, handle, Buffer.concat([u32(c.errno), u16(msg.length), msg]));
    }
    case 'raw':
      return structuredReply(c.flags ?? flags, c.replyType, handle, c.payload);
  }
}

/** Starts a scripted server on a Unix socket in a temp dir (removed after the test file). */
export async function startScriptedServer(script: ReadScript, options: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const size = options.size ?? 1 << 20;
  const tflags = options.transmissionFlags ?? TFLAG_HAS_FLAGS | TFLAG_READ_ONLY | TFLAG_SEND_DF;
  const structured = options.structuredReplies ?? true;
  const socket = join(tempDir(), 'scripted.sock');
  const sockets = new Set<Socket>();
  /** Replies held per connection while holding. */
  let held: Map<Socket, Buffer[]> | undefined;
  const sendReply = (sock: Socket, reply: Buffer) => {
    if (held === undefined) sock.write(reply);
    else if (held.has(sock)) held.get(sock)!.push(reply);
    else held.set(sock, [reply]);
  };

  const state: ScriptedServer = {
    socket,
    uri: `nbd+unix:///?socket=${socket}`,
    requests: [],
    connections: 0,
    script,
    hold: () => {
      held ??= new Map();
    },
    release: (count?: number) => {
      const replies = held;
      if (count === undefined) held = undefined;
      for (const [sock, bufs] of replies ?? []) {
        const send = count === undefined ? bufs : bufs.splice(0, count);
        if (send.length > 0 && !sock.destroyed) sock.write(Buffer.concat(send));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        running.delete(state);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };

  async function serve(sock: Socket): Promise<void> {
    const r = new Reader(sock);
    // Handshake.
    sock.write(Buffer.concat([u64(NBDMAGIC), u64(IHAVEOPT), u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)]));
    const clientFlags = (await r.read(4)).readUInt32BE(0);
    const noZeroes = (clientFlags & FLAG_NO_ZEROES) !== 0;
    let sr = false;
    for (;;) {
      const hdr = await r.read(16);
      if (hdr.readBigUInt64BE(0) !== IHAVEOPT) throw new Error('bad option magic');
      const option = hdr.readUInt32BE(8);
      const len = hdr.readUInt32BE(12);
      await r.read(len); // option data: export name and info requests are ignored
      const exportInfo = Buffer.concat([u16(INFO_EXPORT), u64(size), u16(tflags)]);
      if (option === OPT_EXPORT_NAME) {
        sock.write(Buffer.concat([u64(size), u16(tflags), noZeroes ? Buffer.alloc(0) : Buffer.alloc(124)]));
        break;
      } else if (option === OPT_ABORT) {
        sock.write(optionReply(option, REP_ACK));
        sock.end();
        return;
      } else if (option === OPT_STRUCTURED_REPLY && structured) {
        sr = true;
        sock.write(optionReply(option, REP_ACK));
      } else if (option === OPT_GO || option === OPT_INFO) {
        sock.write(Buffer.concat([optionReply(option, REP_INFO, exportInfo), optionReply(option, REP_ACK)]));
        if (option === OPT_GO) break;
      } else {
        sock.write(optionReply(option, REP_ERR_UNSUP));
      }
    }
    // Transmission.
    for (;;) {
      const req = await r.read(28);
      if (req.readUInt32BE(0) !== REQUEST_MAGIC) throw new Error('bad request magic');
      const flags = req.readUInt16BE(4);
      const type = req.readUInt16BE(6);
      const handle = Buffer.from(req.subarray(8, 16));
      const offset = Number(req.readBigUInt64BE(16));
      const length = req.readUInt32BE(24);
      state.requests.push({ type, flags, offset, length });
      if (type === CMD_DISC) {
        sock.end();
        return;
      }
      if (type === CMD_READ && sr) {
        const chunks = state.script(offset, length);
        if (chunks.length === 0) throw new Error('a read script must return at least one chunk');
        sendReply(sock, Buffer.concat(chunks.map((c, i) => chunkBytes(c, i === chunks.length - 1, handle))));
        continue;
      }
      if (type === CMD_WRITE) await r.read(length);
      // Everything else (and reads without structured replies): a simple reply.
      let errno = NBD_EINVAL;
      let payload: Buffer = Buffer.alloc(0);
      if (type === CMD_READ) {
        errno = 0;
        payload = scriptedData(offset, length);
      } else if (type === CMD_WRITE) {
        errno = NBD_EPERM;
      }
      sendReply(sock, Buffer.concat([u32(SIMPLE_REPLY_MAGIC), u32(errno), handle, payload]));
    }
  }

  const server: Server = createServer((sock) => {
    state.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    serve(sock).catch(() => sock.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  running.add(state);
  return state;
}
