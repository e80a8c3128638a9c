// nbdkit servers meant to be killed: stderr ignored (a client cut off
// mid-reply makes nbdkit complain), SIGKILLed after the test file at the latest.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/servers';

const live = new Set<ChildProcess>();
afterAll(() => {
  for (const p of live) p.kill('SIGKILL');
});

export interface KillableServer {
  socket: string;
  process: ChildProcess;
  kill(): void;
}

/** `nbdkit -U SOCKET ARGS`, ready once its pidfile exists (it accepts connections then). */
export async function killableNbdkit(...args: string[]): Promise<KillableServer> {
  const dir = tempDir();
  const socket = join(dir, 'nbd.sock');
  const pidfile = join(dir, 'nbdkit.pid');
  const proc = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', socket, '-P', pidfile, ...args], { stdio: 'ignore' });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  const until = Date.now() + 10000;
  while (!existsSync(pidfile)) {
    if (proc.exitCode !== null) throw new Error(`nbdkit ${args.join(' ')} exited with ${proc.exitCode}`);
    if (Date.now() > until) throw new Error(`timed out waiting for nbdkit ${args.join(' ')}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return { socket, process: proc, kill: () => void proc.kill('SIGKILL') };
}
