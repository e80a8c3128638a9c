// nbdjs copy with nbdcopy's options and endpoints, each compared with the
// installed nbdcopy on the same servers: what the servers were asked (nbdkit's
// log filter), what the destination holds, what is printed.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NBDJS, nbdjs, run, type Run } from '../helpers/cli';
import { startNbdkit, tempDir, tempFile } from '../helpers/servers';

const MiB = 2 ** 20;

/** `nbdcopy ARGS` and `nbdjs copy ARGS`. */
async function both(args: string[], options?: { input?: Buffer }): Promise<{ theirs: Run; ours: Run }> {
  const theirs = await run('nbdcopy', args, options);
  const ours = await nbdjs(['copy', ...args], options);
  return { theirs, ours };
}

/** The requests of one kind ('Read', 'Write', 'Zero', 'Flush') an nbdkit log filter's file records: their offsets and counts. */
function logged(file: string, kind: string): { offset: number; count: number }[] {
  const out: { offset: number; count: number }[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = new RegExp(` ${kind} id=\\d+ offset=0x([0-9a-f]+) count=0x([0-9a-f]+) `).exec(line);
    if (m !== null) out.push({ offset: parseInt(m[1], 16), count: parseInt(m[2], 16) });
    else if (kind === 'Flush' && / Flush id=\d+ /.test(line)) out.push({ offset: 0, count: 0 });
  }
  return out;
}

const sum = (rs: { count: number }[]) => rs.reduce((n, r) => n + r.count, 0);

/** The bytes nbdinfo --map says hold data (type 0) in the export of `argv` (a [ CMD ]). */
async function dataBytes(argv: string[]): Promise<number> {
  const map = await run('nbdinfo', ['--map', '--', '[', ...argv, ']']);
  return map.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && f[2] === '0')
    .reduce((n, f) => n + Number(f[1]), 0);
}

/** Runs `node nbdjs.js copy ARGS` (or nbdcopy) under bash, with fd 3 open on what is returned as stdout (nbdcopy's own stdout thrown away). */
function withFd3(file: string, args: string[]): Promise<Run> {
  return run('bash', ['-c', '"$@" 3>&1 >/dev/null', 'bash', file, ...args]);
}

describe('nbdjs copy takes nbdcopy options', () => {
  test('-V prints what nbdcopy -V prints', async () => {
    const { theirs, ours } = await both(['-V']);
    expect(theirs.code).toBe(0);
    expect(ours).toEqual(theirs);
  });

  test('--long-options lists every long option of nbdcopy, and beyond them only nbdjs copy\'s four older names', async () => {
    const { theirs, ours } = await both(['--long-options']);
    const mine = ours.stdout.split('\n').filter(Boolean);
    const nbdcopys = theirs.stdout.split('\n').filter(Boolean);
    expect(mine.slice(0, nbdcopys.length)).toEqual(nbdcopys);
    expect(mine.slice(nbdcopys.length).sort()).toEqual(['--detect-zeroes', '--no-detect-zeroes', '--no-progress', '--no-sparse']);
  });

  test('--short-options lists every short option of nbdcopy, and -h', async () => {
    const { theirs, ours } = await both(['--short-options']);
    const nbdcopys = theirs.stdout.split('\n').filter(Boolean);
    expect(nbdcopys.length).toBeGreaterThan(4);
    expect(ours.stdout.split('\n').filter(Boolean).sort()).toEqual([...nbdcopys, '-h'].sort());
  });

  test('-v prints the sides and the settings -C, -R, -T and --request-size chose as nbdcopy -v does', async () => {
    const src = await startNbdkit('memory', 'size=4M');
    const args = ['-v', '-C', '2', '-R', '16', '-T', '2', '--request-size=65536', src.uri, 'null:'];
    const { theirs, ours } = await both(args);
    const settings = (r: Run) => r.stderr.split('\n').filter((l) => l.startsWith('nbdcopy: '));
    expect(theirs.code).toBe(0);
    expect(ours.code).toBe(0);
    expect(settings(theirs).length).toBe(5);
    expect(settings(ours)).toEqual(settings(theirs));
  });

  test('--synchronous runs one connection with one request in flight, as nbdcopy -v reports it', async () => {
    const src = await startNbdkit('memory', 'size=4M');
    const { theirs, ours } = await both(['-v', '--synchronous', '-C', '4', src.uri, 'null:']);
    const line = (r: Run) => r.stderr.split('\n').find((l) => l.startsWith('nbdcopy: connections='));
    expect(line(ours)).toMatch(/^nbdcopy: connections=1 requests=1 .* synchronous=true$/);
    expect(line(ours)?.replace(/requests=\d+/, '')).toBe(line(theirs)?.replace(/requests=\d+/, ''));
  });

  test('--request-size bounds every read the source is sent, as for nbdcopy', async () => {
    const dir = tempDir();
    for (const [tool, args] of [
      ['nbdcopy', []],
      ['nbdjs', ['copy']],
    ] as const) {
      const log = join(dir, `${tool}.log`);
      const argv = [...args, '--request-size=65536', '--no-extents', '--', '[', 'nbdkit', '--filter=log', 'pattern', 'size=4M', `logfile=${log}`, ']', 'null:'];
      const r = tool === 'nbdcopy' ? await run('nbdcopy', argv) : await nbdjs(argv);
      expect(r.code).toBe(0);
      const reads = logged(log, 'Read');
      expect(sum(reads)).toBe(4 * MiB);
      expect(Math.max(...reads.map((x) => x.count))).toBe(65536);
    }
  });

  test('--no-extents reads the whole of a sparse source, as nbdcopy does; without it only the data is read', async () => {
    const dir = tempDir();
    const server = (log: string) => ['nbdkit', '--filter=log', 'sparse-random', 'size=16M', 'seed=11', 'runlength=65536', `logfile=${log}`];
    const totals: Record<string, number> = {};
    for (const tool of ['nbdcopy', 'nbdjs']) {
      for (const extents of [true, false]) {
        const log = join(dir, `${tool}-${extents}.log`);
        const argv = [...(extents ? [] : ['--no-extents']), '--', '[', ...server(log), ']', join(dir, `${tool}-${extents}.img`)];
        const r = tool === 'nbdcopy' ? await run('nbdcopy', argv) : await nbdjs(['copy', ...argv]);
        expect(r.code).toBe(0);
        totals[`${tool} ${extents ? 'extents' : 'no-extents'}`] = sum(logged(log, 'Read'));
      }
    }
    const data = await dataBytes(['nbdkit', 'sparse-random', 'size=16M', 'seed=11', 'runlength=65536']);
    expect(data).toBeGreaterThan(0);
    expect(data).toBeLessThan(8 * MiB);
    // nbdcopy reads what it reads around the data in whole requests; nbdjs the data alone.
    expect(totals['nbdcopy extents']).toBeLessThan(16 * MiB);
    expect(totals).toEqual({ 'nbdcopy extents': totals['nbdcopy extents'], 'nbdcopy no-extents': 16 * MiB, 'nbdjs extents': data, 'nbdjs no-extents': 16 * MiB });
  });

  test('--destination-is-zero leaves the destination\'s holes unwritten, as nbdcopy does: old data stays', async () => {
    const contents: Buffer[] = [];
    for (const tool of ['nbdcopy', 'nbdjs']) {
      const dst = await startNbdkit('memory', 'size=8M');
      expect((await run('nbdcopy', ['--', '[', 'nbdkit', 'pattern', 'size=8M', ']', dst.uri])).code).toBe(0);
      const argv = ['--destination-is-zero', '--', '[', 'nbdkit', 'sparse-random', 'size=8M', 'seed=2', ']', dst.uri];
      expect((tool === 'nbdcopy' ? await run('nbdcopy', argv) : await nbdjs(['copy', ...argv])).code).toBe(0);
      contents.push(Buffer.from((await run('nbdcopy', [dst.uri, '-'])).stdout, 'latin1'));
    }
    const [theirs, ours] = contents;
    expect(ours.length).toBe(8 * MiB);
    // The pattern plugin's first 8 bytes are 0 at offset 0, then 8 at offset 8: the hole at the end still holds it.
    expect(ours.equals(theirs)).toBe(true);
    expect(ours.readBigUInt64BE(8 * MiB - 8)).toBe(BigInt(8 * MiB - 8));
  });

  test('--target-is-zero is the same option as --destination-is-zero', async () => {
    const dst = await startNbdkit('memory', 'size=8M');
    expect((await run('nbdcopy', ['--', '[', 'nbdkit', 'pattern', 'size=8M', ']', dst.uri])).code).toBe(0);
    expect((await nbdjs(['copy', '--target-is-zero', '--', '[', 'nbdkit', 'sparse-random', 'size=8M', 'seed=2', ']', dst.uri])).code).toBe(0);
    const back = Buffer.from((await run('nbdcopy', [dst.uri, '-'])).stdout, 'latin1');
    expect(back.readBigUInt64BE(8 * MiB - 8)).toBe(BigInt(8 * MiB - 8));
  });

  test('-S 0 writes all-zero blocks of a file as data, as nbdcopy does; by default they become holes', async () => {
    const dir = tempDir();
    const zeroes = join(dir, 'zeroes.raw');
    writeFileSync(zeroes, Buffer.alloc(4 * MiB));
    const allocated: Record<string, boolean> = {};
    for (const tool of ['nbdcopy', 'nbdjs']) {
      for (const sparse of [[], ['-S', '0']]) {
        const out = join(dir, `${tool}${sparse.length}.img`);
        const argv = [...sparse, zeroes, out];
        expect((tool === 'nbdcopy' ? await run('nbdcopy', argv) : await nbdjs(['copy', ...argv])).code).toBe(0);
        expect(readFileSync(out).equals(readFileSync(zeroes))).toBe(true);
        allocated[`${tool}${sparse.length ? ' -S 0' : ''}`] = statSync(out).blocks * 512 >= 4 * MiB;
      }
    }
    expect(allocated).toEqual({ nbdcopy: false, 'nbdcopy -S 0': true, nbdjs: false, 'nbdjs -S 0': true });
  });

  test('--allocated leaves every block of a file destination allocated, holding what nbdcopy writes', async () => {
    // nbdcopy 1.22 allocates the file it truncated (file_allocate_space);
    // 1.14 skips its holes all the same (a truncated file reads as zeroes):
    // nbdjs does what the option means, on either.
    const dir = tempDir();
    for (const tool of ['nbdcopy', 'nbdjs']) {
      const argv = ['--allocated', '--', '[', 'nbdkit', 'sparse-random', 'size=8M', 'seed=4', ']', join(dir, `${tool}.img`)];
      expect((tool === 'nbdcopy' ? await run('nbdcopy', argv) : await nbdjs(['copy', ...argv])).code).toBe(0);
    }
    const ours = join(dir, 'nbdjs.img');
    expect(statSync(ours).blocks * 512).toBeGreaterThanOrEqual(8 * MiB);
    expect(readFileSync(ours).equals(readFileSync(join(dir, 'nbdcopy.img')))).toBe(true);
  });

  test('--flush sends the destination a flush at the end, as nbdcopy does, and none without it', async () => {
    const dir = tempDir();
    const flushes: Record<string, number> = {};
    for (const tool of ['nbdcopy', 'nbdjs']) {
      for (const flush of [true, false]) {
        const log = join(dir, `${tool}-${flush}.log`);
        const argv = [...(flush ? ['--flush'] : []), '--', '[', 'nbdkit', 'pattern', 'size=1M', ']', '[', 'nbdkit', '--filter=log', 'memory', 'size=1M', `logfile=${log}`, ']'];
        expect((tool === 'nbdcopy' ? await run('nbdcopy', argv) : await nbdjs(['copy', ...argv])).code).toBe(0);
        flushes[`${tool}${flush ? ' --flush' : ''}`] = logged(log, 'Flush').length;
      }
    }
    expect(flushes).toEqual({ 'nbdcopy --flush': 1, nbdcopy: 0, 'nbdjs --flush': 1, nbdjs: 0 });
  });

  test('--progress=FD writes nbdcopy\'s lines "N/100" to that descriptor, rising to 100/100', async () => {
    const args = ['copy', '--progress=3', '--', '[', 'nbdkit', 'pattern', 'size=16M', ']', 'null:'];
    const ours = await withFd3(process.execPath, [NBDJS, ...args]);
    const theirs = await withFd3('nbdcopy', args.slice(1));
    for (const r of [theirs, ours]) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^(\d+\/100\n)+$/);
      const percents = r.stdout.trimEnd().split('\n').map((l) => Number(l.split('/')[0]));
      expect(percents[percents.length - 1]).toBe(100);
      expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    }
    expect(ours.stderr).toBe('');
  });
});

describe('nbdjs copy endpoints as nbdcopy takes them', () => {
  test('null: as the destination reads the source and writes nothing anywhere', async () => {
    const dir = tempDir();
    const log = join(dir, 'src.log');
    const r = await nbdjs(['copy', '--', '[', 'nbdkit', '--filter=log', 'pattern', 'size=4M', `logfile=${log}`, ']', 'null:'], {});
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(sum(logged(log, 'Read'))).toBe(4 * MiB);
    expect(execFileSync('ls', ['-A', process.cwd()]).toString()).not.toMatch(/^null:$/m);
  });

  test('/dev/null as the source copies nothing to stdout, as nbdcopy does', async () => {
    const { theirs, ours } = await both(['/dev/null', '-']);
    expect(theirs).toMatchObject({ code: 0, stdout: '' });
    expect(ours).toEqual(theirs);
  });

  test('/dev/null as the destination takes a whole export', async () => {
    const { theirs, ours } = await both(['--', '[', 'nbdkit', 'pattern', 'size=4M', ']', '/dev/null']);
    expect(theirs.code).toBe(0);
    expect(ours).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });

  test('a FIFO as the destination receives the export byte for byte as from nbdcopy', async () => {
    const fifo = join(tempDir(), 'fifo');
    execFileSync('mkfifo', [fifo]);
    const read = run('cat', [fifo]);
    const ours = await nbdjs(['copy', '--', '[', 'nbdkit', 'sparse-random', 'size=8M', 'seed=9', ']', fifo]);
    expect(ours).toMatchObject({ code: 0, stderr: '' });
    const got = (await read).stdout;
    const theirs = await run('nbdcopy', ['--', '[', 'nbdkit', 'sparse-random', 'size=8M', 'seed=9', ']', '-']);
    expect(got.length).toBe(8 * MiB);
    expect(got === theirs.stdout).toBe(true);
  });

  test('a FIFO as the source fills an export with what was written into it', async () => {
    const dir = tempDir();
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const data = randomBytes(MiB + 1000);
    const input = tempFile('input.raw', data);
    const writer = run('bash', ['-c', 'cat "$1" > "$2"', 'bash', input, fifo]);
    const dst = await startNbdkit('memory', 'size=2M');
    const ours = await nbdjs(['copy', fifo, dst.uri]);
    expect(ours).toMatchObject({ code: 0, stderr: '' });
    expect((await writer).code).toBe(0);
    const back = Buffer.from((await run('nbdcopy', [dst.uri, '-'])).stdout, 'latin1');
    expect(back.subarray(0, data.length).equals(data)).toBe(true);
  });

  test('a URI with ?tls-psk-file= is opened, as nbdcopy opens it', async () => {
    const key = randomBytes(32).toString('hex');
    const psk = tempFile('keys.psk', `alice:${key}\n`);
    const src = await startNbdkit('--tls=require', `--tls-psk=${psk}`, 'pattern', 'size=1M');
    const uri = `nbds+unix://alice@/?socket=${src.socket}&tls-psk-file=${psk}`;
    const { theirs, ours } = await both([uri, '-']);
    expect(theirs.code).toBe(0);
    expect(ours).toMatchObject({ code: 0, stderr: '' });
    expect(ours.stdout.length).toBe(MiB);
    expect(ours.stdout === theirs.stdout).toBe(true);
  });

  test('a sparse source copied to - gives nbdcopy\'s bytes and reads only its data, not its holes', async () => {
    const dir = tempDir();
    const source = (log: string) => ['[', 'nbdkit', '--filter=log', 'sparse-random', 'size=16M', 'seed=7', 'runlength=65536', `logfile=${log}`, ']'];
    const theirs = await run('nbdcopy', ['--', ...source(join(dir, 'theirs.log')), '-']);
    const ours = await nbdjs(['copy', '--', ...source(join(dir, 'ours.log')), '-']);
    expect(ours).toMatchObject({ code: 0, stderr: '' });
    expect(ours.stdout.length).toBe(16 * MiB);
    expect(ours.stdout === theirs.stdout).toBe(true);
    const data = await dataBytes(['nbdkit', 'sparse-random', 'size=16M', 'seed=7', 'runlength=65536']);
    expect(data).toBeGreaterThan(0);
    expect(data).toBeLessThan(4 * MiB);
    expect(sum(logged(join(dir, 'ours.log'), 'Read'))).toBe(data);
    expect(sum(logged(join(dir, 'theirs.log'), 'Read'))).toBe(data);
  });
});
