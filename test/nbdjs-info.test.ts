// nbdjs info against nbdinfo on the same servers: the JSON compared field by
// field, the text and the maps compared as printed.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nbdjs, run } from './helpers/cli';
import { spawnServer, startNbdkit, tempDir, type Server } from './helpers/servers';

async function both(args: string[]): Promise<[string, string]> {
  const [ours, theirs] = [await nbdjs(['info', ...args]), await run('nbdinfo', args)];
  expect(theirs.code).toBe(0);
  expect({ code: ours.code, stderr: ours.stderr }).toEqual({ code: 0, stderr: '' });
  return [ours.stdout, theirs.stdout];
}

/** Compares two nbdinfo JSON documents key by key, so that a failure names the field. */
function compareJson(ours: string, theirs: string): void {
  const a = JSON.parse(ours) as Record<string, unknown>;
  const b = JSON.parse(theirs) as Record<string, unknown>;
  expect(Object.keys(a)).toEqual(Object.keys(b));
  for (const k of Object.keys(b)) if (k !== 'exports') expect([k, a[k]]).toEqual([k, b[k]]);
  const ea = a.exports as Record<string, unknown>[];
  const eb = b.exports as Record<string, unknown>[];
  expect(ea.length).toBe(eb.length);
  eb.forEach((e, i) => {
    expect(Object.keys(ea[i])).toEqual(Object.keys(e));
    for (const k of Object.keys(e)) expect([i, k, ea[i][k]]).toEqual([i, k, e[k]]);
  });
  // No difference left, not even in layout.
  expect(ours).toBe(theirs);
}

let qemu: Server;
let qemuDir: string;

beforeAll(async () => {
  // A qcow2 image with a persistent dirty bitmap: 64 KiB written after the bitmap was added.
  qemuDir = tempDir();
  const image = join(qemuDir, 'disk.qcow2');
  const sh = (cmd: string, args: string[]) =>
    new Promise<void>((resolve, reject) =>
      spawn(cmd, args, { stdio: 'ignore' }).on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed`)))),
    );
  await sh('qemu-img', ['create', '-f', 'qcow2', image, '4M']);
  await sh('qemu-img', ['bitmap', '--add', image, 'b0']);
  await sh('qemu-io', ['-c', 'write -P 0xab 1M 64k', image]);
  const socket = join(qemuDir, 'qemu.sock');
  const { proc } = spawnServer('qemu-nbd', ['-f', 'qcow2', '-k', socket, '--persistent', '-x', 'disk', '-D', 'a qcow2 disk', '-B', 'b0', '-A', image]);
  // Until it answers.
  for (let i = 0; i < 100; i++) {
    if ((await run('nbdinfo', ['--size', `nbd+unix:///disk?socket=${socket}`], { timeout: 5000 })).code === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  qemu = { socket, uri: `nbd+unix:///disk?socket=${socket}`, process: proc, stop: () => proc.kill() };
});

describe('nbdjs info --json', () => {
  test("gives nbdinfo's fields and values for a read-only nbdkit export (URI)", async () => {
    const s = await startNbdkit('-r', 'pattern', 'size=3M');
    compareJson(...(await both(['--json', s.uri])));
  });

  test("gives nbdinfo's fields for an nbdkit [ command ] with the blocksize-policy filter, block sizes included", async () => {
    const [ours, theirs] = await both([
      '--json',
      '--',
      '[',
      'nbdkit',
      '--filter=blocksize-policy',
      'memory',
      '2075312K',
      'blocksize-minimum=4096',
      'blocksize-preferred=65536',
      'blocksize-maximum=1M',
      ']',
    ]);
    compareJson(ours, theirs);
    const e = JSON.parse(ours).exports[0];
    expect([e.block_size_minimum, e.block_size_preferred, e.block_size_maximum, e['export-size-str']]).toEqual([4096, 65536, 1048576, '2075312K']);
  });

  test("gives nbdinfo's fields for qemu-nbd's named export: description, bitmap and allocation-depth contexts", async () => {
    const [ours, theirs] = await both(['--json', qemu.uri]);
    compareJson(ours, theirs);
    expect(JSON.parse(ours).exports[0].contexts).toEqual(['base:allocation', 'qemu:allocation-depth', 'qemu:dirty-bitmap:b0']);
  });

  test('--list gives every export of nbdkit file dir= as nbdinfo does, and qemu-nbd lists its one export', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'exports'));
    writeFileSync(join(dir, 'exports', 'a'), Buffer.alloc(1 << 20, 1));
    copyFileSync(join(dir, 'exports', 'a'), join(dir, 'exports', 'b'));
    writeFileSync(join(dir, 'exports', 'c'), Buffer.alloc(4096));
    const s = await startNbdkit('file', `dir=${join(dir, 'exports')}`);
    const [ours, theirs] = await both(['--list', '--json', s.uri]);
    compareJson(ours, theirs);
    expect(JSON.parse(ours).exports.map((e: { 'export-name': string }) => e['export-name']).sort()).toEqual(['a', 'b', 'c']);
    compareJson(...(await both(['--list', '--json', `nbd+unix:///?socket=${qemu.socket}`])));
  });
});

describe('nbdjs info (text)', () => {
  test("prints nbdinfo's text for an export and for --list", async () => {
    const [a, b] = await both([qemu.uri]);
    expect(a).toBe(b);
    expect(a).toContain('\tdescription: a qcow2 disk\n');
    const s = await startNbdkit('-r', 'memory', 'size=1M');
    const [list, refList] = await both(['--list', s.uri]);
    expect(list).toBe(refList);
  });

  test('--size prints the size alone', async () => {
    const r = await nbdjs(['info', '--size', '--', '[', 'nbdkit', 'memory', '2075312K', ']']);
    expect(r).toMatchObject({ code: 0, stdout: `${2075312 * 1024}\n`, stderr: '' });
  });
});

describe('nbdjs info --map', () => {
  const sparse = ['--', '[', 'nbdkit', 'sparse-random', 'size=64M', 'seed=7', ']'];

  test('prints what nbdinfo --map prints (text and --json) for base:allocation', async () => {
    const [text, refText] = await both(['--map', ...sparse]);
    expect(text).toBe(refText);
    expect(text.split('\n').length).toBeGreaterThan(3);
    const [json, refJson] = await both(['--map', '--json', ...sparse]);
    expect(JSON.parse(json)).toEqual(JSON.parse(refJson));
    expect(json).toBe(refJson);
  });

  test('--map=qemu:dirty-bitmap:b0 and --map=qemu:allocation-depth match nbdinfo on qemu-nbd', async () => {
    for (const ctx of ['qemu:dirty-bitmap:b0', 'qemu:allocation-depth']) {
      const [text, ref] = await both([`--map=${ctx}`, qemu.uri]);
      expect(text).toBe(ref);
      const [json, refJson] = await both([`--map=${ctx}`, '--json', qemu.uri]);
      expect(JSON.parse(json)).toEqual(JSON.parse(refJson));
    }
    const bitmap = await nbdjs(['info', '--map=qemu:dirty-bitmap:b0', '--json', qemu.uri]);
    expect(JSON.parse(bitmap.stdout)).toContainEqual({ offset: 1 << 20, length: 65536, type: 1, description: 'dirty' });
  });

  test('a context the server lacks fails with exit status 1 and one line', async () => {
    const s = await startNbdkit('memory', 'size=1M');
    const r = await nbdjs(['info', '--map=qemu:dirty-bitmap:nope', s.uri]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nbdjs: info: .*qemu:dirty-bitmap:nope.*\n$/);
    expect(r.stdout).toBe('');
  });
});

describe('nbdjs info usage', () => {
  test('--help prints the usage and exits 0; a usage error exits 2 with the usage on stderr', async () => {
    const help = await nbdjs(['info', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: nbdjs info URI/);
    const bad = await nbdjs(['info', '--list', '--size', 'nbd://localhost']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^nbdjs: info: --list and --size cannot be used together\nusage: nbdjs info/);
    expect((await nbdjs(['info'])).code).toBe(2);
    expect((await nbdjs(['frobnicate'])).code).toBe(2);
  });

  test('a server that is not there: exit status 1, one line naming the cause and errno, no stack', async () => {
    const r = await nbdjs(['info', `nbd+unix:///?socket=${join(tempDir(), 'none.sock')}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nbdjs: info: nbd_connect_uri: .* \(ENOENT\)\n$/);
  });
});
