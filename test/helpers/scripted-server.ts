// A minimal, scripted NBD server for protocol behaviour no real server
// produces (NBD_REPLY_TYPE_ERROR_OFFSET chunks, short structured reads,
// malformed replies). Fixed-newstyle handshake, structured replies, Unix
// socket in a temp dir; any number of connections, each handled on its own.
//
// It runs in the test's own process: a client that blocks the event loop
// (spawnSync, a synchronous libnbd call on the main thread) would deadlock
// against it, so run other clients asynchronously (spawn/execFile).
import type { Socket } from 'node:net';
import {
  CMD_DISC,
  CMD_READ,
  CMD_WRITE,
  NBD_EINVAL,
  NBD_EPERM,
  REPLY_FLAG_DONE,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
  TFLAG_SEND_DF,
  Wire,
  handshake,
  listenUnix,
  readRequest,
  simpleReply,
  structuredChunk,
  u16,
  u32,
  u64,
} from './nbd-wire';

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

function chunkBytes(c: Chunk, done: boolean, handle: Buffer): Buffer {
  const flags = done ? REPLY_FLAG_DONE : 0;
  switch (c.type) {
    case 'data':
      return structuredChunk(flags, REPLY_TYPE_OFFSET_DATA, handle, Buffer.concat([u64(c.offset), c.data ?? scriptedData(c.offset, c.length)]));
    case 'hole':
      return structuredChunk(flags, REPLY_TYPE_OFFSET_HOLE, handle, Buffer.concat([u64(c.offset), u32(c.length)]));
    case 'error_offset': {
      const msg = Buffer.from(c.message ?? '');
      return structuredChunk(flags, REPLY_TYPE_ERROR_OFFSET, handle, Buffer.concat([u32(c.errno), u16(msg.length), msg, u64(c.offset)]));
    }
    case 'error': {
      const msg = Buffer.from(c.message ?? '');
      return structuredChunk(flags, REPLY_TYPE_ERROR, handle, Buffer.concat([u32(c.errno), u16(msg.length), msg]));
    }
    case 'raw':
      return structuredChunk(c.flags ?? flags, c.replyType, handle, c.payload);
  }
}

/** Starts a scripted server on a Unix socket in a temp dir (removed after the test file). */
export async function startScriptedServer(script: ReadScript, options: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const exportOptions = {
    size: options.size ?? 1 << 20,
    transmissionFlags: options.transmissionFlags ?? TFLAG_HAS_FLAGS | TFLAG_READ_ONLY | TFLAG_SEND_DF,
    structured: options.structuredReplies ?? true,
  };
  /** Replies held per connection while holding. */
  let held: Map<Socket, Buffer[]> | undefined;
  const sendReply = (sock: Socket, reply: Buffer) => {
    if (held === undefined) sock.write(reply);
    else if (held.has(sock)) held.get(sock)!.push(reply);
    else held.set(sock, [reply]);
  };

  async function serve(sock: Socket): Promise<void> {
    const w = new Wire(sock);
    const { structured } = await handshake(w, exportOptions);
    // Transmission.
    for (;;) {
      const req = await readRequest(w);
      state.requests.push({ type: req.type, flags: req.flags, offset: req.offset, length: req.length });
      if (req.type === CMD_DISC) {
        sock.end();
        return;
      }
      if (req.type === CMD_READ && structured) {
        const chunks = state.script(req.offset, req.length);
        if (chunks.length === 0) throw new Error('a read script must return at least one chunk');
        sendReply(sock, Buffer.concat(chunks.map((c, i) => chunkBytes(c, i === chunks.length - 1, req.handle))));
        continue;
      }
      // Everything else (and reads without structured replies): a simple reply.
      if (req.type === CMD_READ) sendReply(sock, simpleReply(req.handle, 0, scriptedData(req.offset, req.length)));
      else sendReply(sock, simpleReply(req.handle, req.type === CMD_WRITE ? NBD_EPERM : NBD_EINVAL));
    }
  }

  const server = await listenUnix('scripted.sock', serve);
  const state: ScriptedServer = {
    socket: server.socket,
    uri: server.uri,
    requests: [],
    get connections() {
      return server.connections;
    },
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
    close: () => server.close(),
  };
  return state;
}
