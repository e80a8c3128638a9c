// nbdjs info --list against the installed nbdinfo (the cases of libnbd's
// info/info-list*.sh, info-null.sh, info-uri-quoting.sh, and an export that
// is listed but refused): stdout byte for byte, exit status.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectAsNbdinfo, run, toolLines } from '../helpers/cli';
import { spawnServer, startNbdkit, tempDir, tempFile, type Server } from '../helpers/servers';

let named: Server;
let refusing: Server;
/** qemu-nbd serving one export, "hello" (description "world"); the URI names none. */
let qemuUri: string;

/** An nbdkit sh plugin script. */
function shPlugin(name: string, body: string): string {
  const path = tempFile(name, `#!/bin/sh\n${body}`);
  chmodSync(path, 0o755);
  return path;
}

beforeAll(async () => {
  named = await startNbdkit(
    '-e',
    'nosuch',
    '--filter=exportname',
    'memory',
    '1M',
    'exportname=hello',
    'exportname=goodbye',
    'exportname-strict=true',
    'exportname-list=explicit',
    'exportdesc=fixed:world',
  );
  // Lists three exports and refuses to open the second. Connections in
  // parallel: nbdinfo 1.22 keeps its first one open while --content probes
  // each export over another (a server taking one at a time hangs it, and nbdjs).
  const refuse = shPlugin(
    'refuse.sh',
    `case "$1" in
  list_exports) printf 'INTERLEAVED\\ngood\\nthe good one\\nbad\\nrefused\\nalso\\n\\n' ;;
  open) if [ "$3" = bad ]; then echo "EACCES refused" >&2; exit 1; fi; echo handle ;;
  get_size) echo 1048576 ;;
  pread) dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null ;;
  thread_model) echo parallel ;;
  *) exit 2 ;;
esac
`,
  );
  refusing = await startNbdkit('sh', refuse);
  const dir = tempDir();
  const image = join(dir, 'disk.img');
  writeFileSync(image, Buffer.alloc(1 << 20));
  const socket = join(dir, 'qemu.sock');
  spawnServer('qemu-nbd', ['-f', 'raw', '-t', '-k', socket, '-x', 'hello', '-D', 'world', image]);
  qemuUri = `nbd+unix://?socket=${socket}`;
  for (let i = 0; i < 200 && (await run('nbdinfo', ['--size', `nbd+unix:///hello?socket=${socket}`], { timeout: 5000 })).code !== 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
});

describe('nbdjs info --list prints what nbdinfo --list prints', () => {
  test('for every export a server lists, with descriptions and meta contexts', async () => {
    const { ours } = await expectAsNbdinfo(['--list', named.uri], { code: 0 });
    expect(ours.stdout).toContain('export="hello":\n\tdescription: world\n');
    expect(ours.stdout).toContain('export="goodbye":');
  });

  test('as --json', async () => {
    const { ours } = await expectAsNbdinfo(['--list', '--json', named.uri], { code: 0 });
    expect(JSON.parse(ours.stdout).exports.map((e: { 'export-name': string }) => e['export-name'])).toEqual(['hello', 'goodbye']);
  });

  test('whatever export the URI names', async () => {
    await expectAsNbdinfo(['--list', named.uri.replace(':///', ':///hello')], { code: 0 });
  });

  test('with --content, probing each export over a connection of its own', async () => {
    const { ours } = await expectAsNbdinfo(['--list', '--content', named.uri], { code: 0 });
    expect(ours.stdout.match(/\tcontent: /g)).toHaveLength(2);
  });

  test('going on past an export the server refuses, then exit status 1', async () => {
    const { theirs, ours } = await expectAsNbdinfo(['--list', refusing.uri], { code: 1, stderr: 'any' });
    expect(ours.stdout).toContain('export="good":\n\tdescription: the good one\n');
    expect(ours.stdout).toContain('export="also":');
    const shape = (stderr: string) => toolLines(stderr).map((l) => l.replace(/^(nbdjs: info: nbd_opt_go: ).*( for export: bad)$/, '$1...$2'));
    expect(shape(ours.stderr)).toEqual(shape(theirs.stderr));
    expect(shape(ours.stderr)).toEqual(['nbdjs: info: nbd_opt_go: ... for export: bad']);
  });

  test('going on past a refused export with --content --json', async () => {
    const { ours } = await expectAsNbdinfo(['--list', '--content', '--json', refusing.uri], { code: 1, stderr: 'any' });
    expect(JSON.parse(ours.stdout).exports).toHaveLength(2);
  });

  test('for an export of size 0', async () => {
    const { ours } = await expectAsNbdinfo(['--list', '--', '[', 'nbdkit', 'null', ']'], { code: 0 });
    expect(ours.stdout).toContain('\texport-size: 0\n');
  });

  test('for a server that lists no export, as --json', async () => {
    const none = shPlugin('none.sh', 'case "$1" in list_exports) echo NAMES ;; get_size) echo 1024 ;; *) exit 2 ;; esac\n');
    const { ours } = await expectAsNbdinfo(['--list', '--json', '--', '[', 'nbdkit', 'sh', none, ']'], { code: 0 });
    expect(ours.stdout).toMatch(/\n"exports": \[\]\n\}\n$/);
  });

  test("for nbdkit's file plugin over a directory, export names that URIs must quote", async () => {
    // nbdkit 1.42 refuses the default export "" of dir= (nbdinfo 1.22 asks for it first and goes on).
    const dir = join(tempDir(), 'exports');
    mkdirSync(dir);
    for (const name of ['%%', 'hello world', 'リソース']) writeFileSync(join(dir, name), Buffer.alloc(4096, 1));
    const files = await startNbdkit('-r', 'file', `dir=${dir}`);
    const { ours } = await expectAsNbdinfo(['--list', '--json', files.uri], { code: 0 });
    const uris = JSON.parse(ours.stdout).exports.map((e: { uri: string }) => e.uri);
    expect(uris).toContainEqual(expect.stringMatching(/^nbd\+unix:\/\/\/%25%25\?socket=/));
    expect(uris).toContainEqual(expect.stringMatching(/^nbd\+unix:\/\/\/%E3%83%AA%E3%82%BD%E3%83%BC%E3%82%B9\?socket=/));
  });

  test("for qemu-nbd's one export", async () => {
    const { ours } = await expectAsNbdinfo([qemuUri, '--list'], { code: 0 });
    expect(ours.stdout).toContain('export="hello":\n\tdescription: world\n\texport-size: 1048576 (1M)\n');
  });

  test("for qemu-nbd's one export, as --json", async () => {
    const { ours } = await expectAsNbdinfo([qemuUri, '--list', '--json'], { code: 0 });
    expect(JSON.parse(ours.stdout).exports[0].description).toBe('world');
  });
});
