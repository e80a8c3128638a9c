// A programmable NBD server for the fault suite: each connection runs a
// script that may speak the protocol (test/helpers/nbd-wire), break it, or
// hang up at any byte. In the test's own process: every libnbd call the
// client makes must be asynchronous.
import {
  CMD_READ,
  REPLY_FLAG_DONE,
  REPLY_TYPE_OFFSET_DATA,
  Wire,
  listenUnix,
  simpleReply,
  structuredChunk,
  u64,
  type Request,
  type UnixServer,
} from '../../helpers/nbd-wire';

/** The correct reply to a request: one DATA chunk for structured reads, simple otherwise. */
export function goodReply(req: Request, structured: boolean, data: (offset: number, length: number) => Buffer): Buffer {
  if (req.type === CMD_READ) {
    const payload = data(req.offset, req.length);
    if (structured) return structuredChunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, req.handle, Buffer.concat([u64(req.offset), payload]));
    return simpleReply(req.handle, 0, payload);
  }
  return simpleReply(req.handle, 0);
}

export type RawServer = UnixServer;

/** Runs `serve` for each connection; whatever it throws hangs up that connection. */
export function startRawServer(serve: (w: Wire, n: number) => Promise<void>): Promise<RawServer> {
  return listenUnix('raw.sock', (sock, n) => serve(new Wire(sock), n));
}
