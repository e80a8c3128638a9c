// nbdjs info in its default mode against the installed nbdinfo on the same
// servers: stdout byte for byte, exit status, nbdinfo's own stderr lines.
// What each libnbd version prints differs (1.22: "extended", human block
// sizes, can_block_status_payload...); nbdinfo is the reference either way.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectAsNbdinfo, run, toolLines } from '../helpers/cli';
import { spawnServer, startNbdkit, tempDir, type Server } from '../helpers/servers';

let memory: Server;
let readOnly: Server;
let described: Server;
let strict: Server;
let tls: { uri: string };
let qemu: { uri: string };

function sh(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    spawn(cmd, args, { stdio: 'ignore' }).on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} failed`)))),
  );
}

beforeAll(async () => {
  memory = await startNbdkit('memory', 'size=1M');
  readOnly = await startNbdkit('-r', 'pattern', 'size=3M');
  described = await startNbdkit('--filter=exportname', 'memory', '1M', 'default-export=hello', 'exportdesc=fixed:world');
  strict = await startNbdkit('--filter=exportname', 'memory', '1M', 'exportname=hello', 'exportname-strict=true', 'exportname-list=explicit');
  const keys = join(tempDir(), 'keys.psk');
  writeFileSync(keys, `alice:${'0123456789abcdef'.repeat(4)}\n`);
  const secure = await startNbdkit('--tls=require', `--tls-psk=${keys}`, 'memory', '1M');
  tls = { uri: `nbds+unix://alice@/?socket=${secure.socket}&tls-psk-file=${keys}` };
  // A qcow2 image with a persistent dirty bitmap, 64 KiB written after it was added.
  const dir = tempDir();
  const image = join(dir, 'disk.qcow2');
  await sh('qemu-img', ['create', '-q', '-f', 'qcow2', image, '4M']);
  await sh('qemu-img', ['bitmap', '--add', image, 'b0']);
  await sh('qemu-io', ['-c', 'write -P 0xab 1M 64k', image]);
  const socket = join(dir, 'qemu.sock');
  spawnServer('qemu-nbd', ['-f', 'qcow2', '-k', socket, '--persistent', '-x', 'disk', '-D', 'a qcow2 disk', '-B', 'b0', '-A', image]);
  qemu = { uri: `nbd+unix:///disk?socket=${socket}` };
  for (let i = 0; i < 200 && (await run('nbdinfo', ['--size', qemu.uri], { timeout: 5000 })).code !== 0; i++) await new Promise((r) => setTimeout(r, 50));
});

describe('nbdjs info prints what nbdinfo prints', () => {
  test('for a writable nbdkit export named by URI', async () => {
    const { ours } = await expectAsNbdinfo([memory.uri], { code: 0 });
    expect(ours.stdout).toMatch(/^protocol: newstyle-fixed without TLS, using (structured|extended) packets\nexport="":\n\texport-size: 1048576 \(1M\)\n/);
  });

  test('for a read-only export as --json', async () => {
    const { ours } = await expectAsNbdinfo(['--json', readOnly.uri], { code: 0 });
    expect(JSON.parse(ours.stdout).exports[0]).toMatchObject({ is_read_only: true, 'export-size': 3 << 20, 'export-size-str': '3M' });
  });

  test('with the options after the URI', async () => {
    await expectAsNbdinfo([readOnly.uri, '--json', '--no-content'], { code: 0 });
  });

  test('for an export name and description the server gives', async () => {
    const { ours } = await expectAsNbdinfo([described.uri], { code: 0 });
    expect(ours.stdout).toContain('export="hello":\n\tdescription: world\n');
  });

  test("for qemu-nbd's named export with its description and meta contexts, as --json", async () => {
    const { ours } = await expectAsNbdinfo(['--json', qemu.uri], { code: 0 });
    expect(JSON.parse(ours.stdout).exports[0].contexts).toEqual(['base:allocation', 'qemu:allocation-depth', 'qemu:dirty-bitmap:b0']);
  });

  test("for qemu-nbd's named export as text", async () => {
    const { ours } = await expectAsNbdinfo([qemu.uri], { code: 0 });
    expect(ours.stdout).toContain('\tdescription: a qcow2 disk\n');
  });

  test('for a server command in brackets, with block sizes from the blocksize-policy filter', async () => {
    const filter = ['--filter=blocksize-policy', 'memory', '2075312K', 'blocksize-minimum=4096', 'blocksize-preferred=65536', 'blocksize-maximum=1M'];
    const { ours } = await expectAsNbdinfo(['--', '[', 'nbdkit', ...filter, ']'], { code: 0 });
    expect(ours.stdout).toMatch(/\tblock_size_preferred: 65536( \(64K\))?\n/);
    expect(ours.stdout).toContain('\texport-size: 2125119488 (2075312K)\n');
  });

  test('for the same server command as --json', async () => {
    const { ours } = await expectAsNbdinfo(['--json', '--', '[', 'nbdkit', '--filter=blocksize-policy', 'memory', '1M', 'blocksize-preferred=32K', ']'], { code: 0 });
    expect(JSON.parse(ours.stdout).exports[0].block_size_preferred).toBe(32768);
  });

  test('for a server without structured replies ("using simple packets")', async () => {
    const { ours } = await expectAsNbdinfo(['--', '[', 'nbdkit', '--no-sr', 'memory', '1M', ']'], { code: 0 });
    expect(ours.stdout).toMatch(/^protocol: newstyle-fixed without TLS, using simple packets\n/);
  });

  test('for a server without structured replies, as --json', async () => {
    const { ours } = await expectAsNbdinfo(['--json', '--', '[', 'nbdkit', '--no-sr', 'memory', '1M', ']'], { code: 0 });
    expect(JSON.parse(ours.stdout).structured).toBe(false);
  });

  test('for an oldstyle server', async () => {
    const { ours } = await expectAsNbdinfo(['--', '[', 'nbdkit', '--oldstyle', 'memory', '1M', ']'], { code: 0 });
    expect(ours.stdout).toMatch(/^protocol: oldstyle/);
  });

  test('for an empty export (file(1) says "empty")', async () => {
    const { ours } = await expectAsNbdinfo(['--', '[', 'nbdkit', 'null', ']'], { code: 0 });
    expect(ours.stdout).toContain('\texport-size: 0\n\tcontent: empty\n');
  });

  test('for an export of 2^63 - 1 bytes (sizes past 2^53 exact)', async () => {
    const { ours } = await expectAsNbdinfo(['--json', '--', '[', 'nbdkit', 'null', 'size=9223372036854775807', ']'], { code: 0 });
    expect(ours.stdout).toContain('\t"export-size": 9223372036854775807,\n');
  });

  test('for a TLS connection (PSK), with the URI as libnbd gives it', async () => {
    const { ours } = await expectAsNbdinfo([tls.uri], { code: 0 });
    expect(ours.stdout).toMatch(/^protocol: newstyle-fixed with TLS/);
  });

  test('for an export name and description with quotes, backslashes, a tab and a control character, as --json', async () => {
    const { ours } = await expectAsNbdinfo(
      ['--json', '--', '[', 'nbdkit', '--filter=exportname', 'memory', '1M', 'default-export=q"uo\\te\x01', 'exportdesc=fixed:a\ttab "and" \\ back', ']'],
      { code: 0 },
    );
    expect(ours.stdout).toContain('\t"export-name": "q\\"uo\\\\te\\u0001",\n');
  });

  test('for the same export as text (the description printed as it is)', async () => {
    const { ours } = await expectAsNbdinfo(
      ['--', '[', 'nbdkit', '--filter=exportname', 'memory', '1M', 'default-export=q"uo\\te\x01', 'exportdesc=fixed:a\ttab "and" \\ back', ']'],
      { code: 0 },
    );
    expect(ours.stdout).toContain('\tdescription: a\ttab "and" \\ back\n');
  });

  test('without content where the server fails the read', async () => {
    const { ours } = await expectAsNbdinfo(['--', '[', 'nbdkit', '--filter=error', 'memory', '1M', 'error-pread=EIO', 'error-pread-rate=1', ']'], { code: 0 });
    expect(ours.stdout).not.toContain('content:');
  });

  test('without the content probe (--no-content)', async () => {
    const { ours } = await expectAsNbdinfo(['--no-content', memory.uri], { code: 0 });
    expect(ours.stdout).not.toContain('content:');
  });

  test('with colours forced (--color)', async () => {
    const { ours } = await expectAsNbdinfo(['--color', qemu.uri], { code: 0 });
    expect(ours.stdout).toContain('\x1b[22;32m\tcan_cache: true\n\x1b[0m');
  });

  test('with colours on, by default, on a terminal', async () => {
    // script(1) gives the command a pty for stdout.
    const [theirs, ours] = [
      await run('script', ['-qec', `nbdinfo --no-content '${memory.uri}'`, '/dev/null']),
      await run('script', ['-qec', `'${process.execPath}' '${join(__dirname, '..', '..', 'dist', 'bin', 'nbdjs.js')}' info --no-content '${memory.uri}'`, '/dev/null']),
    ];
    expect(theirs.stdout).toContain('\x1b[');
    expect(ours.stdout).toBe(theirs.stdout);
  });
});

describe('nbdjs info fails where nbdinfo fails', () => {
  test('a server that is not there: exit status 1, one line naming the cause and errno', async () => {
    const { ours } = await expectAsNbdinfo([`nbd+unix:///?socket=${join(tempDir(), 'none.sock')}`], { code: 1 });
    expect(ours.stderr).toMatch(/^nbdjs: info: nbd_connect_uri: .* \(ENOENT\)\n$/);
  });

  test('an operand that is not a URI', async () => {
    const { ours } = await expectAsNbdinfo(['/not/a/uri'], { code: 1 });
    expect(ours.stderr).toMatch(/^nbdjs: info: nbd_connect_uri: /);
  });

  test('an export the server refuses: what was printed so far, exit status 1, and the suggestion to use --list', async () => {
    // libnbd 1.22's synchronous nbd_opt_go words the refusal after the server's reply; stderr is compared by shape.
    const { theirs, ours } = await expectAsNbdinfo([strict.uri.replace(':///', ':///nosuch')], { code: 1, stderr: 'any' });
    expect(ours.stdout).toMatch(/^protocol: /);
    const shape = (lines: string[]) => lines.map((l) => l.replace(/^(nbdjs: info: nbd_opt_go: ).*( for export: nosuch)$/, '$1...$2'));
    expect(shape(toolLines(ours.stderr))).toEqual(shape(toolLines(theirs.stderr)));
    expect(shape(toolLines(ours.stderr))).toEqual(['nbdjs: info: nbd_opt_go: ... for export: nosuch', 'nbdjs: info: suggestion: to list all exports on the server, use --list']);
  });

  test('an export the server refuses, as --json: the same partial document', async () => {
    const { ours } = await expectAsNbdinfo(['--json', strict.uri.replace(':///', ':///nosuch')], { code: 1, stderr: 'any' });
    expect(ours.stdout).toMatch(/^\{\n"protocol": /);
  });
});
