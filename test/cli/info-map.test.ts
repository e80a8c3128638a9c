// nbdjs info --map and --map --totals against the installed nbdinfo (the
// cases of libnbd's info/info-map-*.sh and info-cmd-map-totals.sh), and the
// end of the output through a pipe whose reader went away.
import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { expectAsNbdinfo, NBDJS, run } from '../helpers/cli';
import { spawnServer, startNbdkit, tempDir, tempFile, type Server } from '../helpers/servers';

/** 32 KiB of data at 0 and at 128 KiB in 1 MiB, holes elsewhere (nbdkit's data plugin allocates 32 KiB pages). */
let data: Server;

function sh(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    spawn(cmd, args, { stdio: 'ignore' }).on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} failed`)))),
  );
}

/** qemu-nbd serving a qcow2 image; resolves once it answers. */
async function qemuNbd(image: string, ...args: string[]): Promise<string> {
  const socket = join(tempDir(), 'qemu.sock');
  spawnServer('qemu-nbd', ['-t', '-k', socket, '-f', 'qcow2', ...args, image]);
  const uri = `nbd+unix://?socket=${socket}`;
  for (let i = 0; i < 200 && (await run('nbdinfo', ['--size', uri], { timeout: 5000 })).code !== 0; i++) await new Promise((r) => setTimeout(r, 50));
  return uri;
}

beforeAll(async () => {
  data = await startNbdkit('data', 'data=1 @131072 2', 'size=1M');
});

const sparse = ['--', '[', 'nbdkit', 'sparse-random', 'size=64M', 'seed=7', 'percent=30', 'runlength=262144', ']'];

let depthUri: Promise<string> | undefined;
/** qemu-nbd -A over a chain of four qcow2 files, made once: allocation depth per MiB 41233120. */
function allocationDepth(): Promise<string> {
  depthUri ??= (async () => {
    // f1 XXXX----, f2 --XXXX--, f3 -XX--XX-, f4 -X---X--
    const dir = tempDir();
    const f = [1, 2, 3, 4].map((i) => join(dir, `f${i}.qcow2`));
    await sh('qemu-img', ['create', '-q', '-f', 'qcow2', f[0], '8M']);
    await sh('qemu-io', ['-f', 'qcow2', '-c', 'w 0 4M', f[0]]);
    const writes = [['w 2M 4M'], ['w 1M 2M', 'w 5M 2M'], ['w 1M 1M', 'w 5M 1M']];
    for (let i = 1; i < 4; i++) {
      await sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', f[i - 1], '-F', 'qcow2', f[i]]);
      await sh('qemu-io', ['-f', 'qcow2', ...writes[i - 1].flatMap((w) => ['-c', w]), f[i]]);
    }
    return qemuNbd(f[3], '-A');
  })();
  return depthUri;
}

describe('nbdjs info --map prints what nbdinfo --map prints', () => {
  test('for base:allocation', async () => {
    const { ours } = await expectAsNbdinfo(['--map', data.uri], { code: 0 });
    expect(ours.stdout.replace(/ +/g, ' ')).toBe(' 0 32768 0 data\n 32768 98304 3 hole,zero\n 131072 32768 0 data\n 163840 884736 3 hole,zero\n');
  });

  test('as --json', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--json', data.uri], { code: 0 });
    expect(JSON.parse(ours.stdout)[3]).toEqual({ offset: 163840, length: 884736, type: 3, description: 'hole,zero' });
  });

  test('with --totals (percentages rounded as printf rounds: 6.25 is 6.2)', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--totals', data.uri], { code: 0 });
    expect(ours.stdout.replace(/ +/g, ' ')).toBe(' 65536 6.2% 0 data\n 983040 93.8% 3 hole,zero\n');
  });

  test('with --totals --json', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--totals', '--json', data.uri], { code: 0 });
    expect(JSON.parse(ours.stdout).map((t: { percent: number }) => t.percent)).toEqual([6.25, 93.75]);
  });

  test('with --totals for a server command in brackets, without --', async () => {
    await expectAsNbdinfo(['--map', '--total', '[', 'nbdkit', 'data', 'data=1 @131072 2', 'size=1M', ']'], { code: 0 });
  });

  test("with --totals for a share too small for %5.1f and printed by %g in e-notation", async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--totals', '--json', '--', '[', 'nbdkit', 'data', 'data=1', 'size=1T', ']'], { code: 0 });
    expect(ours.stdout).toContain('"percent": 2.98023e-06,');
  });

  test('with --totals as text for a 1 TiB export (0.0%, and a size wider than its column)', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--totals', '--', '[', 'nbdkit', 'data', 'data=1', 'size=1T', ']'], { code: 0 });
    expect(ours.stdout).toBe('     32768   0.0%   0 data\n1099511595008 100.0%   3 hole,zero\n');
  });

  test('for an 8 GiB export (more than one request of 4 GiB without extended headers)', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--', '[', 'nbdkit', 'data', 'data=1 @131072 2 @6442450944 3', 'size=8G', ']'], { code: 0 });
    expect(ours.stdout).toContain('6442483712  2147450880    3  hole,zero\n');
  });

  test('for a server that answers one byte per extent', async () => {
    const weird = tempFile(
      'weird.sh',
      `#!/bin/sh
case "$1" in
  get_size) echo 32 ;;
  pread) dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null ;;
  can_extents) exit 0 ;;
  extents) echo $4 1 \`[ $4 -ge 16 ] && [ $4 -le 19 ]; echo $?\` ;;
  *) exit 2 ;;
esac
`,
    );
    chmodSync(weird, 0o755);
    const { ours } = await expectAsNbdinfo(['--map', '--', '[', 'nbdkit', 'sh', weird, ']'], { code: 0 });
    expect(ours.stdout.replace(/ +/g, ' ')).toBe(' 0 16 1 hole\n 16 4 0 data\n 20 12 1 hole\n');
  });

  test('for an empty export: nothing', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--', '[', 'nbdkit', 'null', ']'], { code: 0 });
    expect(ours.stdout).toBe('');
  });

  test('for an empty export as --json', async () => {
    await expectAsNbdinfo(['--map', '--json', '--', '[', 'nbdkit', 'null', ']'], { code: 0 });
  });

  test('for an empty export with --totals --json', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--totals', '--json', '--', '[', 'nbdkit', 'null', ']'], { code: 0 });
    expect(ours.stdout).toBe('[]\n');
  });

  test('for sparse-random data', async () => {
    const { ours } = await expectAsNbdinfo(['--map', ...sparse], { code: 0 });
    expect(ours.stdout.split('\n').length).toBeGreaterThan(10);
  });

  test('for sparse-random data as --json', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--json', ...sparse], { code: 0 });
    expect(JSON.parse(ours.stdout).length).toBeGreaterThan(10);
  });

  test('in colour (--color)', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--color', data.uri], { code: 0 });
    expect(ours.stdout).toContain('\x1b[1;30m         0       32768    0  data\x1b[0m\n');
  });

  test('with --totals in colour (--colour)', async () => {
    const { ours } = await expectAsNbdinfo(['--map', '--totals', '--colour', data.uri], { code: 0 });
    expect(ours.stdout).toContain('\x1b[1;30m     65536   6.2%   0 data\x1b[0m\n');
  });

  test('for a qemu dirty bitmap', async () => {
    const image = join(tempDir(), 'bitmap.qcow2');
    await sh('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1M']);
    await sh('qemu-io', ['-f', 'qcow2', '-c', 'w 0 64k', image]);
    await sh('qemu-img', ['bitmap', '--add', '--enable', '-f', 'qcow2', image, 'bitmap0']);
    await sh('qemu-io', ['-f', 'qcow2', '-c', 'w 64k 64k', '-c', 'w -z 512k 64k', image]);
    const uri = await qemuNbd(image, '-B', 'bitmap0');
    const { ours } = await expectAsNbdinfo(['--map=qemu:dirty-bitmap:bitmap0', uri], { code: 0 });
    expect(ours.stdout.replace(/ +/g, ' ')).toBe(' 0 65536 0 clean\n 65536 65536 1 dirty\n 131072 393216 0 clean\n 524288 65536 1 dirty\n 589824 458752 0 clean\n');
  });

  test("for qemu's allocation depth over a chain of backing files", async () => {
    const { ours } = await expectAsNbdinfo(['--map=qemu:allocation-depth', await allocationDepth()], { code: 0 });
    expect(ours.stdout.replace(/ +/g, ' ')).toBe(
      ' 0 1048576 4 backing depth 4\n 1048576 1048576 1 local\n 2097152 1048576 2 backing depth 2\n 3145728 2097152 3 backing depth 3\n' +
        ' 5242880 1048576 1 local\n 6291456 1048576 2 backing depth 2\n 7340032 1048576 0 absent\n',
    );
  });

  test("for qemu's allocation depth with --totals --json", async () => {
    const { ours } = await expectAsNbdinfo(['--map=qemu:allocation-depth', '--totals', '--json', await allocationDepth()], { code: 0 });
    expect(JSON.parse(ours.stdout).map((t: { type: number }) => t.type)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('nbdjs info --map fails where nbdinfo fails', () => {
  test('a server that fails block status: exit status 1, the same message, nothing on stdout', async () => {
    // Not a [ command ]: nbdinfo 1.22 exits on this error without closing its handle, so the
    // socket-activated server would live on, holding nbdinfo's stderr open.
    const failing = await startNbdkit('--filter=error', 'memory', '1M', 'error-extents=EIO', 'error-extents-rate=1');
    const { ours } = await expectAsNbdinfo(['--map', failing.uri], { code: 1 });
    expect(ours.stderr).toMatch(/^nbdjs: info: nbd_block_status(_64)?: .* \(EIO\)\n$/);
    expect(ours.stdout).toBe('');
  });


  test('a context the server does not offer: exit status 1, the same message', async () => {
    const { ours } = await expectAsNbdinfo(['--map=qemu:dirty-bitmap:nope', data.uri], { code: 1 });
    expect(ours.stderr).toBe('nbdjs: info: --map: server does not support metadata context "qemu:dirty-bitmap:nope"\n');
  });
});

describe('nbdjs info --map through a pipe', () => {
  test('ends quietly, by SIGPIPE as nbdinfo, when the reader goes away after one line', async () => {
    // 65,536 extents: more than a pipe holds.
    const args = ['--map', '--', '[', 'nbdkit', 'sparse-random', 'size=256M', 'seed=1', 'percent=50', 'runlength=4096', ']'];
    const firstLine = (cmd: string, argv: string[]) =>
      new Promise<{ line: string; signal: NodeJS.Signals | null; code: number | null; stderr: string }>((resolve) => {
        const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        let line = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.stdout.once('data', (d: Buffer) => {
          line = d.toString().split('\n')[0];
          child.stdout.destroy();
        });
        child.on('close', (code, signal) => resolve({ line, signal, code, stderr }));
      });
    const theirs = await firstLine('nbdinfo', args);
    const ours = await firstLine(process.execPath, [NBDJS, 'info', ...args]);
    expect(theirs).toMatchObject({ signal: 'SIGPIPE', stderr: '' });
    expect(ours).toEqual(theirs);
  });
});
