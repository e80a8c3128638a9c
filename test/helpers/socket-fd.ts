// A connected socket fd for connectSocket/aioConnectSocket, whose peer is
// `nbdkit -s ARGS`: a Unix listener here (pauseOnConnect: Node never reads
// from it), and a Python child that connects and execs nbdkit with that
// connection as its stdin and stdout.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { keepOutput } from './output';
import { systemPython } from './python';
import { nbdkit, tempDir } from './servers';

const connectAndExec = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
want = int(sys.argv.pop(1))
if want > 0:
    # The server's send buffer: how much of its replies can wait in the socket.
    # SO_SNDBUFFORCE (root) is not bounded by net.core.wmem_max.
    try:
        s.setsockopt(socket.SOL_SOCKET, 32, want)
    except PermissionError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, want)
    got = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    if got < want:
        sys.exit('the send buffer is %d bytes, not %d (net.core.wmem_max)' % (got, want))
s.connect(sys.argv[1])
os.dup2(s.fileno(), 0)
os.dup2(s.fileno(), 1)
os.execvp(sys.argv[2], sys.argv[2:])
`;

// Node's sockets sharing the fds handed to libnbd: kept referenced and
// paused, never read from, never destroyed (libnbd owns the fds).
const keep: Socket[] = [];
const children: ChildProcess[] = [];

export async function serverSocketFd(...args: string[]): Promise<{ fd: number; child: ChildProcess }> {
  return serverSocketFdWith({}, ...args);
}

/** serverSocketFd, with `sendBuffer`: the server's SO_SNDBUF (so that that many bytes of replies can wait). */
export async function serverSocketFdWith(options: { sendBuffer?: number }, ...args: string[]): Promise<{ fd: number; child: ChildProcess }> {
  const path = join(tempDir(), 'listen.sock');
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const child = spawn(systemPython, ['-c', connectAndExec, String(options.sendBuffer ?? 0), path, ...nbdkit(...args)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  keepOutput('the connect-and-exec child', child.stderr!);
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`the connect-and-exec child exited (${code}) before connecting: ${stderr}`))),
  );
  const sock = await Promise.race([accepted, exited]);
  server.close();
  sock.unref();
  keep.push(sock);
  const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
  if (!(fd > 2)) throw new Error(`the accepted socket has fd ${fd}`);
  return { fd, child };
}

/** For afterAll: ends the servers still running. */
export function stopSocketFdServers(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  children.length = 0;
}
