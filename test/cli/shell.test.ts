// nbdjs shell: nbdsh for Node. -c CODE compared with nbdsh -c (the same
// snippet in Python: output, order, exit status); the REPL driven through a
// real terminal (script(1) from util-linux), as a user types into it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NBDJS, nbdjs, run } from '../helpers/cli';
import { systemPython } from '../helpers/python';
import { startNbdkit, tempDir } from '../helpers/servers';

/** nbdsh runs `python3` from PATH: the system one, which has libnbd's module. */
const NBDSH_ENV = { ...process.env, PATH: `${join(systemPython, '..')}:${process.env.PATH ?? ''}` };

function nbdsh(args: string[]) {
  return run('nbdsh', args, { env: NBDSH_ENV });
}

/** `node nbdjs.js shell ARGS` in a pseudo-terminal, `typed` as its keyboard input, HOME set to `home`: what the terminal showed. */
async function inTerminal(args: string[], typed: string, home: string) {
  const command = [process.execPath, NBDJS, 'shell', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return run('script', ['-qfec', command, '/dev/null'], { input: Buffer.from(typed), env: { ...process.env, HOME: home, NODE_REPL_HISTORY: undefined } as NodeJS.ProcessEnv, timeout: 20000 });
}

describe('nbdjs shell -c', () => {
  test('several -c run in order, as nbdsh runs them, and the status is 0', async () => {
    const theirs = await nbdsh(['-c', 'print(1)', '-c', 'print(2)']);
    const ours = await nbdjs(['shell', '-c', 'console.log(1)', '-c', 'console.log(2)']);
    expect(theirs).toMatchObject({ code: 0, stdout: '1\n2\n' });
    expect(ours).toEqual({ ...theirs, stderr: '' });
  });

  test('exit(N) ends the shell with status N and runs no later -c, as in nbdsh', async () => {
    const theirs = await nbdsh(['-c', 'print(1)', '-c', 'exit(3)', '-c', 'print(2)']);
    const ours = await nbdjs(['shell', '-c', 'console.log(1)', '-c', 'exit(3)', '-c', 'console.log(2)']);
    expect(theirs).toMatchObject({ code: 3, stdout: '1\n' });
    expect({ code: ours.code, stdout: ours.stdout, stderr: ours.stderr }).toEqual({ code: 3, stdout: '1\n', stderr: '' });
  });

  test('code that throws ends the shell with status 1, one line naming the error, no later -c run', async () => {
    const theirs = await nbdsh(['-c', 'print(1)', '-c', 'raise Exception("boom")', '-c', 'print(2)']);
    const ours = await nbdjs(['shell', '-c', 'console.log(1)', '-c', 'throw new Error("boom")', '-c', 'console.log(2)']);
    expect(theirs).toMatchObject({ code: 1, stdout: '1\n' });
    expect(ours).toEqual({ code: 1, signal: null, stdout: '1\n', stderr: 'nbdjs: shell: Error: boom\n' });
  });

  test('-c code may await: h is connected to the URI given with -u, and reads as nbdsh\'s h', async () => {
    const server = await startNbdkit('pattern', 'size=1M');
    const theirs = await nbdsh(['-u', server.uri, '-c', 'print(h.get_size())', '-c', 'print(h.pread(8, 8).hex())']);
    const ours = await nbdjs(['shell', '-u', server.uri, '-c', 'console.log(String(await h.getSize()))', '-c', 'const b = Buffer.alloc(8); await h.pread(b, 8); console.log(b.toString("hex"))']);
    expect(theirs).toMatchObject({ code: 0, stdout: '1048576\n0000000000000008\n' });
    expect(ours).toEqual({ ...theirs, stderr: '' });
  });

  test('a URI operand connects h as -u does', async () => {
    const server = await startNbdkit('memory', 'size=3M');
    const ours = await nbdjs(['shell', server.uri, '-c', 'console.log(String(await h.getSize()))']);
    expect(ours).toMatchObject({ code: 0, stdout: `${3 * 2 ** 20}\n`, stderr: '' });
  });

  test('-- [ CMD ARGS ] connects h to a server it starts', async () => {
    const ours = await nbdjs(['shell', '-c', 'console.log(String(await h.getSize()))', '--', '[', 'nbdkit', 'pattern', 'size=5M', ']']);
    expect(ours).toMatchObject({ code: 0, stdout: `${5 * 2 ** 20}\n`, stderr: '' });
  });

  test('without a URI h is a fresh handle, as nbdsh\'s is', async () => {
    const theirs = await nbdsh(['-c', 'print(h.aio_is_created())']);
    const ours = await nbdjs(['shell', '-c', 'console.log(h.aioIsCreated())']);
    expect(theirs.stdout).toBe('True\n');
    expect(ours).toMatchObject({ code: 0, stdout: 'true\n', stderr: '' });
  });

  test('-n gives no h, as nbdsh -n', async () => {
    const theirs = await nbdsh(['-n', '-c', 'h']);
    const ours = await nbdjs(['shell', '-n', '-c', 'h']);
    expect(theirs.code).toBe(1);
    expect(ours).toMatchObject({ code: 1, stdout: '', stderr: 'nbdjs: shell: ReferenceError: h is not defined\n' });
  });

  test('a URI that cannot be connected fails with status 1 and one line, before any -c runs', async () => {
    const socket = join(tempDir(), 'nothing.sock');
    const ours = await nbdjs(['shell', '-u', `nbd+unix:///?socket=${socket}`, '-c', 'console.log(1)']);
    expect(ours.code).toBe(1);
    expect(ours.stdout).toBe('');
    expect(ours.stderr).toMatch(/^nbdjs: shell: nbd_connect_uri: .*\(ENOENT\)\n$/);
  });
});

describe('the nbdjs shell REPL on a terminal', () => {
  test('top-level await on h connected with a URI prints the value, and .exit ends with status 0', async () => {
    const server = await startNbdkit('pattern', 'size=1M');
    const home = tempDir();
    const r = await inTerminal([server.uri], 'await h.getSize()\nconst x = 6 * 7\nx + 1\n.exit\n', home);
    expect(r.code).toBe(0);
    const screen = r.stdout.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
    expect(screen).toContain('connected to');
    expect(screen).toMatch(/nbd> await h\.getSize\(\)\r?\r\n1048576\r\n/);
    expect(screen).toMatch(/nbd> x \+ 1\r?\r\n43\r\n/);
  });

  test('what was typed is kept in ~/.nbdjs_history, newest first', async () => {
    const home = tempDir();
    const r = await inTerminal([], 'h.aioIsCreated()\n1 + 1\n.exit\n', home);
    expect(r.code).toBe(0);
    expect(readFileSync(join(home, '.nbdjs_history'), 'utf8').split('\n')).toEqual(['.exit', '1 + 1', 'h.aioIsCreated()']);
    // The next session sees it: the up arrow brings back the last line.
    const again = await inTerminal([], '\x1b[A\x1b[A\n.exit\n', home);
    expect(again.stdout.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')).toMatch(/\r\n2\r\n/);
  });
});
