// Output cut by a closed pipe (`nbdjs ... | head -c 1`) ends quietly, as
// the C tools end there: nothing on stderr, status 0 or 141 (SIGPIPE), for
// every subcommand that writes to stdout. The servers are the test's own:
// a tool killed by SIGPIPE never closes its handles, so a [ CMD ]'s server
// would outlive it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NBDJS, run } from '../helpers/cli';
import { startNbdkit, tempDir } from '../helpers/servers';

/** Runs `file args | head -c 1` under bash: the byte head printed, the status of `file` and what it wrote on stderr. */
async function throughHead(file: string, args: string[]): Promise<{ first: string; status: number; stderr: string }> {
  const err = join(tempDir(), 'stderr');
  const r = await run('bash', ['-c', 'e=$1; shift; "$@" 2>"$e" | head -c 1; printf " %s" "${PIPESTATUS[0]}"', 'bash', err, file, ...args], { timeout: 30000 });
  expect(r.code).toBe(0);
  const m = /^([\s\S]) (\d+)$/.exec(r.stdout);
  expect(m).not.toBeNull();
  return { first: m![1], status: Number(m![2]), stderr: readFileSync(err, 'utf8') };
}

const nbdjsThroughHead = (args: string[]) => throughHead(process.execPath, [NBDJS, ...args]);

describe('nbdjs output cut by a closed pipe ends quietly', () => {
  test('info --map of a large map: nothing on stderr, status 0 or 141, as nbdinfo', async () => {
    const server = await startNbdkit('sparse-random', 'size=4G', 'seed=1');
    const args = ['--map', server.uri];
    const theirs = await throughHead('nbdinfo', args);
    const ours = await nbdjsThroughHead(['info', ...args]);
    expect([0, 141]).toContain(theirs.status);
    expect({ stderr: ours.stderr, cut: [0, 141].includes(ours.status), first: ours.first }).toEqual({ stderr: '', cut: true, first: theirs.first });
  });

  test('copy to -: nothing on stderr, status 0 or 141, as nbdcopy', async () => {
    const server = await startNbdkit('pattern', 'size=256M');
    const args = [server.uri, '-'];
    const theirs = await throughHead('nbdcopy', args);
    const ours = await nbdjsThroughHead(['copy', ...args]);
    expect([0, 141]).toContain(theirs.status);
    expect({ stderr: ours.stderr, cut: [0, 141].includes(ours.status), first: ours.first }).toEqual({ stderr: '', cut: true, first: theirs.first });
  });

  test('dump: nothing on stderr, status 0 or 141', async () => {
    const server = await startNbdkit('pattern', 'size=64M');
    const ours = await nbdjsThroughHead(['dump', server.uri]);
    expect({ stderr: ours.stderr, cut: [0, 141].includes(ours.status), first: ours.first }).toEqual({ stderr: '', cut: true, first: '0' });
  });

  test('shell -c writing much to stdout: nothing on stderr, status 0 or 141', async () => {
    const ours = await nbdjsThroughHead(['shell', '-n', '-c', 'process.stdout.write(Buffer.alloc(16 * 2 ** 20, 65))']);
    expect({ stderr: ours.stderr, cut: [0, 141].includes(ours.status), first: ours.first }).toEqual({ stderr: '', cut: true, first: 'A' });
  });

  test('shell -c logging line after line: nothing on stderr, status 0 or 141', async () => {
    const ours = await nbdjsThroughHead(['shell', '-n', '-c', 'for (let i = 0; i < 200000; i++) console.log(i)']);
    expect({ stderr: ours.stderr, cut: [0, 141].includes(ours.status), first: ours.first }).toEqual({ stderr: '', cut: true, first: '0' });
  });
});
