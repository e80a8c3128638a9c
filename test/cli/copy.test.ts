// nbdjs copy as a child process, on real servers: byte-identical to
// nbdcopy, stdin/stdout, exit statuses, progress on a pipe and on a
// pseudo-terminal, Ctrl-C.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NBDJS, nbdjs, run, startNbdjs } from '../helpers/cli';
import { startNbdkit, tempDir } from '../helpers/servers';

const sparseRandom = ['[', 'nbdkit', 'sparse-random', 'size=64M', 'seed=3', ']'];

describe('nbdjs copy', () => {
  test('copies a [ nbdkit ] command to a file byte for byte as nbdcopy does, and the file stays sparse', async () => {
    const dir = tempDir();
    const ours = join(dir, 'ours.img');
    const theirs = join(dir, 'theirs.img');
    const r = await nbdjs(['copy', '--', ...sparseRandom, ours]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect((await run('nbdcopy', ['--', ...sparseRandom, theirs])).code).toBe(0);
    expect(readFileSync(ours).equals(readFileSync(theirs))).toBe(true);
    expect(statSync(ours).size).toBe(64 * 2 ** 20);
    expect(statSync(ours).blocks * 512).toBeLessThan(64 * 2 ** 20);
  });

  test('copies between NBD URIs with --connections, --requests, --request-size, --no-sparse and --flush', async () => {
    const src = await startNbdkit('sparse-random', 'size=32M', 'seed=5');
    const dst = await startNbdkit('memory', 'size=32M');
    const r = await nbdjs(['copy', src.uri, dst.uri, '--connections', '2', '--requests', '4', '--request-size', '64K', '--no-sparse', '--flush']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const a = await run('nbdcopy', [src.uri, '-']);
    const b = await run('nbdcopy', [dst.uri, '-']);
    expect(b.stdout.length).toBe(32 * 2 ** 20);
    expect(b.stdout === a.stdout).toBe(true);
  });

  test('reads stdin into an export and writes an export to stdout', async () => {
    const data = Buffer.alloc(3 * 2 ** 20 + 512);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    const dst = await startNbdkit('memory', 'size=4M');
    expect((await nbdjs(['copy', '-', dst.uri], { input: data })).code).toBe(0);
    const back = await nbdjs(['copy', dst.uri, '-']);
    expect(back.code).toBe(0);
    const bytes = Buffer.from(back.stdout, 'latin1');
    expect(bytes.length).toBe(4 * 2 ** 20);
    expect(bytes.subarray(0, data.length).equals(data)).toBe(true);
    expect(bytes.subarray(data.length).every((b) => b === 0)).toBe(true);
    // A file to stdout, and stdin to a file.
    const file = join(tempDir(), 'f.raw');
    writeFileSync(file, data);
    const out = await nbdjs(['copy', file, '-']);
    expect(Buffer.from(out.stdout, 'latin1').equals(data)).toBe(true);
    const copied = join(tempDir(), 'g.raw');
    expect((await nbdjs(['copy', '-', copied], { input: data })).code).toBe(0);
    expect(readFileSync(copied).equals(data)).toBe(true);
  });

  test('a read-only destination fails with exit status 1 and nbdcopy\'s one line plus the cause (EROFS), no stack', async () => {
    // The source is a server of the test's: nbdcopy 1.22 exits here without
    // closing a [ CMD ]'s server, which keeps its stderr open.
    const src = await startNbdkit('sparse-random', 'size=64M', 'seed=3');
    const dst = await startNbdkit('-r', 'memory', 'size=64M');
    const theirs = await run('nbdcopy', [src.uri, dst.uri]);
    const r = await nbdjs(['copy', src.uri, dst.uri]);
    expect(theirs.code).toBe(1);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(theirs.stderr.replace(/^nbdcopy: /, 'nbdjs: copy: ').replace(/\n$/, ' (EROFS)\n'));
    const debug = await nbdjs(['copy', '--debug', '--', ...sparseRandom, dst.uri]);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^nbdjs: copy: .*\(EROFS\)\nNbdError: .*\n\s+at /);
  });

  test('a failing read fails the copy with exit status 1 naming nbd_pread and EIO', async () => {
    const r = await nbdjs(['copy', '--', '[', 'nbdkit', '--filter=error', 'pattern', 'size=8M', 'error-pread=EIO', 'error-pread-rate=100%', ']', join(tempDir(), 'x.img')]);
    expect(r.code).toBe(1);
    // nbdkit's own messages come first: the server inherits stderr, as under nbdcopy.
    expect(r.stderr).toMatch(/\nnbdjs: copy: nbd_pread: .*\(EIO\)\n$/);
    expect(r.stderr).not.toMatch(/\s+at /);
  });

  test('usage errors exit 2 with the usage; --help exits 0', async () => {
    const one = await nbdjs(['copy', 'only-one']);
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/^nbdjs: copy: SOURCE and DESTINATION are needed \(got 1\)\nusage: nbdjs copy \[--allocated\]/);
    expect((await nbdjs(['copy', '--requests', 'x', 'a', 'b'])).code).toBe(2);
    expect((await nbdjs(['copy', '--frobnicate', 'a', 'b'])).code).toBe(2);
    expect((await nbdjs(['copy', '--', '[', 'nbdkit', 'memory', '1M', 'b'])).code).toBe(2);
    const help = await nbdjs(['copy', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: nbdjs copy \[--allocated\]/);
    expect((await nbdjs(['--help'])).code).toBe(0);
  });
});

describe('nbdjs copy progress', () => {
  test('prints nothing on a pipe without --progress, and plain lines ending at 100% with --progress', async () => {
    const quiet = await nbdjs(['copy', '--', ...sparseRandom, join(tempDir(), 'q.img')]);
    expect(quiet.stderr).toBe('');
    const r = await nbdjs(['copy', '--progress', '--', ...sparseRandom, join(tempDir(), 'p.img')]);
    expect(r.code).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(r.stderr).not.toContain('\r');
    expect(lines[lines.length - 1]).toMatch(/^nbdjs: copy: 100% 64\.0 MiB \/ 64\.0 MiB [\d.]+ [KMG]?i?B\/s ETA 00:00$/);
  });

  test('draws a bar on a pseudo-terminal: percent reaching 100%, bytes, a rate, ETA, then a newline', async () => {
    // script(1) gives the child a pseudo-terminal for stdin, stdout and stderr.
    const file = join(tempDir(), 'tty.img');
    const command = `${process.execPath} ${NBDJS} copy -- [ nbdkit --filter=delay pattern size=64M delay-read=50ms ] ${file}`;
    const r = await run('script', ['-qfec', command, '/dev/null']);
    expect(r.code).toBe(0);
    const screen = r.stdout;
    expect(screen).toContain('\r');
    const frames = screen.split('\r').map((f) => f.trim()).filter((f) => f !== '');
    const last = frames[frames.length - 1];
    expect(last).toMatch(/^100% \[#{20}\] 64\.0 MiB \/ 64\.0 MiB {2}[\d.]+ [KMG]?i?B\/s {2}ETA 00:00$/);
    expect(frames.some((f) => /^\s*\d+% \[#*-+\]/.test(f))).toBe(true);
    expect(screen.endsWith('\n')).toBe(true);
  });
});

describe('nbdjs copy and Ctrl-C', () => {
  test('SIGINT during a slow copy stops it: exit status 130, promptly, one line', async () => {
    const file = join(tempDir(), 'int.img');
    const { child, done } = startNbdjs(['copy', '--progress', '--', '[', 'nbdkit', '--filter=delay', 'pattern', 'size=1G', 'delay-read=500ms', ']', file]);
    // Wait until the copy is under way (its first progress line, or a second of it).
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 3000);
      child.stderr!.once('data', () => {
        clearTimeout(t);
        resolve();
      });
    });
    child.kill('SIGINT');
    // "Promptly": the requests in flight (one delayed round) complete, not the gigabyte.
    const killer = setTimeout(() => child.kill('SIGKILL'), 20000);
    const r = await done;
    clearTimeout(killer);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/nbdjs: copy: interrupted\n$/);
    expect(statSync(file).size).toBe(2 ** 30);
  });
});
