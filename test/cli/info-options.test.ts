// nbdjs info's command line against the installed nbdinfo's: --can/--is and
// the versions' other spellings (libnbd's info/info-can*.sh,
// info-is-read-only.sh, info-cannot.sh), --size, --uri, --version,
// --long-options, --short-options, getopt's parsing and its errors, the
// combinations nbdinfo refuses; then what only nbdjs has to get right: its
// --help, Ctrl-C, and what it loads for --size.
import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { expectAsNbdinfo, NBDJS, nbdjs, run, startNbdjs, toolLines } from '../helpers/cli';
import { greeting, listenUnix, u32, u64, Wire } from '../helpers/nbd-wire';
import { silentServer, startNbdkit, tempFile, type Server } from '../helpers/servers';

let memory: Server;
/** An export with every flag false, read-only. */
let bare: Server;
let strict: Server;

beforeAll(async () => {
  memory = await startNbdkit('memory', 'size=1M');
  const script = tempFile('bare.sh', '#!/bin/sh\ncase "$1" in get_size) echo 1024 ;; pread) ;; can_cache|can_fua) echo none ;; can_*) exit 3 ;; *) exit 2 ;; esac\n');
  chmodSync(script, 0o755);
  bare = await startNbdkit('-r', 'sh', script);
  strict = await startNbdkit('--filter=exportname', 'memory', '1M', 'exportname=hello', 'exportname-strict=true', 'exportname-list=explicit');
});

// Every feature name of nbdinfo 1.14 and 1.22 (an older nbdinfo calls the newer ones unknown).
const features = [
  'connect',
  'read',
  'write',
  'read-only',
  'rotational',
  'tls',
  'structured-reply',
  'extended-headers',
  'block-status-payload',
  'cache',
  'df',
  'fast-zero',
  'flush',
  'fua',
  'multi-conn',
  'trim',
  'zero',
];

describe('nbdjs info --can answers as nbdinfo --can, in its exit status', () => {
  test.each(features)('--can %s, on an export that has everything and on one that has nothing', async (feature) => {
    const [a, b] = await Promise.all([expectAsNbdinfo(['--can', feature, memory.uri], {}), expectAsNbdinfo(['--can', feature, bare.uri], {})]);
    expect([a.ours.stdout, b.ours.stdout]).toEqual(['', '']);
    expect([0, 1, 2]).toContain(a.ours.code);
  });

  test('--is read-only on a read-only export exits 0, --can write 2', async () => {
    await expectAsNbdinfo(['--is', 'read-only', bare.uri], { code: 0 });
    await expectAsNbdinfo(['--can', 'write', bare.uri], { code: 2 });
  });

  test('feature names are matched without regard to case, in every spelling nbdinfo takes', async () => {
    const names = ['Structured Reply', 'structured_replies', 'SR', 'FAST_ZERO', 'fastzero', 'Multi_Conn', 'READONLY', 'read_only', 'extended header', 'EH', 'block_status_payload'];
    const runs = await Promise.all(names.map((name) => expectAsNbdinfo(['--can', name, memory.uri], {})));
    expect(runs.map((r) => r.ours.code)).toEqual(runs.map((r) => r.theirs.code));
  });

  test('an unknown feature: exit status 1 and the same message', async () => {
    const { ours } = await expectAsNbdinfo(['--is', 'frobnicated', memory.uri], { code: 1 });
    expect(ours.stderr).toMatch(/^nbdjs: info: unknown --can.* option: frobnicated\n$/);
  });

  test('--is tls is false (2) on a connection without TLS', async () => {
    await expectAsNbdinfo(['--is', 'tls', memory.uri], { code: 2 });
  });

  test('--has, --have, --cannot, --isnt, --hasnt: as the installed nbdinfo (an option, or a usage error)', async () => {
    const options = ['--has', '--have', '--cannot', '--can-not', '--cant', '--isnt', '--isnot', '--is-not', '--hasnt', '--hasnot', '--has-not', '--havent', '--havenot', '--have-not'];
    const runs = await Promise.all(options.map((option) => expectAsNbdinfo([option, 'zero', memory.uri], {})));
    expect(runs.map((r) => r.ours.code)).toEqual(runs.map((r) => r.theirs.code));
  });

  test('--can connect on an export the server refuses: as nbdinfo (1.22 answers while negotiating)', async () => {
    await expectAsNbdinfo(['--can', 'connect', strict.uri.replace(':///', ':///nosuch')], { stderr: 'any' });
  });
});

describe('nbdjs info --size and --uri print what nbdinfo prints', () => {
  test('--size prints the size alone (--json changes nothing)', async () => {
    const { ours } = await expectAsNbdinfo(['--size', '--json', '--', '[', 'nbdkit', 'memory', '2075312K', ']'], { code: 0 });
    expect(ours.stdout).toBe(`${2075312 * 1024}\n`);
  });

  test('--size of an export the server refuses fails as nbdinfo fails', async () => {
    const { ours } = await expectAsNbdinfo(['--size', strict.uri.replace(':///', ':///nosuch')], { code: 1, stderr: 'any' });
    expect(ours.stderr).toMatch(/^nbdjs: info: nbd_/);
  });

  test('--uri prints the URI (libnbd 1.20+), or is a usage error as it is for nbdinfo', async () => {
    await expectAsNbdinfo(['--uri', memory.uri], { stderr: 'any' });
  });

  test('--uri --json prints it as a JSON string', async () => {
    await expectAsNbdinfo(['--uri', '--json', memory.uri], { stderr: 'any' });
  });
});

describe('nbdjs info describes itself as nbdinfo does', () => {
  test('--version: nbdinfo and libnbd, at the version of the libnbd loaded', async () => {
    const { ours } = await expectAsNbdinfo(['--version'], { code: 0 });
    expect(ours.stdout).toMatch(/^nbdinfo 1\.\d+\.\d+\nlibnbd 1\.\d+\.\d+\n$/);
  });

  test('-V, also first in a cluster of short options', async () => {
    await expectAsNbdinfo(['-V'], { code: 0 });
    await expectAsNbdinfo(['-VL'], { code: 0 });
  });

  test('--long-options lists the long options of the installed version', async () => {
    const { ours } = await expectAsNbdinfo(['--long-options'], { code: 0 });
    expect(ours.stdout).toContain('--map\n');
  });

  test('--short-options lists -L and -V', async () => {
    const { ours } = await expectAsNbdinfo(['--short-options'], { code: 0 });
    expect(ours.stdout).toBe('-L\n-V\n');
  });

  test('--help exits 0 and names every long and short option', async () => {
    const help = await nbdjs(['info', '--help']);
    expect(help.code).toBe(0);
    const options = (await run('nbdinfo', ['--long-options'])).stdout.split('\n').filter(Boolean);
    expect(options.length).toBeGreaterThan(15);
    for (const o of [...options, '--long-options', '--short-options', '-L', '-V']) expect([o, help.stdout.includes(o)]).toEqual([o, true]);
  });

  test('--help wins over a bad option after it, as getopt acts on options in order', async () => {
    const [theirs, ours, help] = [await run('nbdinfo', ['--help', '--frobnicate']), await nbdjs(['info', '--help', '--frobnicate']), await nbdjs(['info', '--help'])];
    expect(theirs.code).toBe(0);
    expect({ code: ours.code, stdout: ours.stdout, stderr: ours.stderr }).toEqual({ code: 0, stdout: help.stdout, stderr: '' });
  });
});

describe("nbdjs info parses its command line as nbdinfo's getopt_long does", () => {
  test('long options may be abbreviated (--js, --tot, --si)', async () => {
    await expectAsNbdinfo(['--map', '--tot', '--js', memory.uri], { code: 0 });
    await expectAsNbdinfo(['--si', memory.uri], { code: 0 });
  });

  test('an ambiguous abbreviation is a usage error (exit status 1)', async () => {
    const { ours } = await expectAsNbdinfo(['--no-co', memory.uri], { code: 1 });
    expect(ours.stderr).toMatch(/^nbdjs: info: option '--no-co' is ambiguous; possibilities: '--no-color'/);
  });

  test('an unknown option is a usage error naming it', async () => {
    const { ours } = await expectAsNbdinfo(['--frobnicate', memory.uri], { code: 1 });
    expect(ours.stderr).toMatch(/^nbdjs: info: unrecognized option '--frobnicate'\n/);
  });

  test('an unknown short option is a usage error naming it', async () => {
    await expectAsNbdinfo(['-x', memory.uri], { code: 1 });
  });

  test('--can without its argument is a usage error', async () => {
    await expectAsNbdinfo(['--can'], { code: 1 });
  });

  test('--json=yes is a usage error (no argument allowed)', async () => {
    await expectAsNbdinfo(['--json=yes', memory.uri], { code: 1 });
  });

  test('--map CONTEXT: the context is an operand, --map=CONTEXT names it', async () => {
    await expectAsNbdinfo(['--map', 'base:allocation', memory.uri], { code: 1 });
    await expectAsNbdinfo(['--map=base:allocation', memory.uri], { code: 0 });
  });

  test('with POSIXLY_CORRECT set, options after the URI are operands', async () => {
    await expectAsNbdinfo([memory.uri, '--json'], { code: 1, env: { ...process.env, POSIXLY_CORRECT: '1' } });
  });

  test('no operand, or two, is a usage error', async () => {
    await expectAsNbdinfo(['--json'], { code: 1 });
    await expectAsNbdinfo([memory.uri, memory.uri], { code: 1 });
  });

  test('a server command needs -- before [ when it has options of its own', async () => {
    await expectAsNbdinfo(['--size', '[', 'nbdkit', '-r', 'memory', '1M', ']'], { code: 1 });
    await expectAsNbdinfo(['--size', '--', '[', 'nbdkit', '-r', 'memory', '1M', ']'], { code: 0 });
  });
});

describe('nbdjs info refuses what nbdinfo refuses', () => {
  test.each([
    [['--list', '--size']],
    [['--can', 'zero', '--map']],
    [['--list', '--map=base:allocation']],
    [['--content', '--no-content']],
    [['--totals']],
  ])('%j: exit status 1 and the same message', async (args) => {
    const { ours } = await expectAsNbdinfo([...args, memory.uri], { code: 1 });
    expect(toolLines(ours.stderr)).toHaveLength(1);
  });
});

describe('nbdjs info, on its own', () => {
  test('Ctrl-C while connecting ends it at once: exit status 130, nothing on stdout', async () => {
    const silent = await silentServer();
    const { child, done } = startNbdjs(['info', silent.uri]);
    for (let i = 0; i < 200 && silent.accepted() === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(silent.accepted()).toBe(1);
    const sent = Date.now();
    child.kill('SIGINT');
    const r = await done;
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 130, stdout: '' });
    expect(Date.now() - sent).toBeLessThan(2000);
  });

  test('Ctrl-C while the server leaves NBD_OPT_INFO unanswered ends it at once: exit status 130, nothing on stdout', async () => {
    let asked = false;
    const server = await listenUnix('mute.sock', async (sock) => {
      const w = new Wire(sock);
      await w.write(greeting());
      await w.read(4);
      for (;;) {
        const header = await w.read(16);
        const option = header.readUInt32BE(8);
        await w.read(header.readUInt32BE(12));
        // NBD_OPT_INFO, NBD_OPT_GO: no answer, ever. Anything else: unsupported.
        if (option === 6 || option === 7) asked = true;
        else await w.write(Buffer.concat([u64(0x3e889045565a9n), u32(option), u32(2 ** 31 + 1), u32(0)]));
      }
    });
    const { child, done } = startNbdjs(['info', server.uri]);
    for (let i = 0; i < 500 && !asked; i++) await new Promise((r) => setTimeout(r, 10));
    expect(asked).toBe(true);
    const sent = Date.now();
    child.kill('SIGINT');
    const r = await done;
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 130, stdout: '' });
    expect(Date.now() - sent).toBeLessThan(2000);
  });

  test('--version into a pipe its reader closed first ends by SIGPIPE, quietly', async () => {
    const child = spawn(process.execPath, [NBDJS, 'info', '--version'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, sig) => resolve([c, sig])));
    expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGPIPE', stderr: '' });
  });

  test('--size loads neither the Pool, copy nor child_process (start-up time)', async () => {
    const script = `
      const { main } = require(${JSON.stringify(NBDJS)});
      main(['info', '--size', process.argv[1]]).then((code) => {
        const loaded = Object.keys(require.cache).filter((f) => /[/]lib[/]io[/](pool|copy|connect)[.]js$|[/]bin[/]copy[.]js$/.test(f));
        if (process.moduleLoadList.some((m) => m === 'NativeModule child_process')) loaded.push('child_process');
        process.stderr.write(JSON.stringify({ code, loaded }));
      });`;
    const r = await run(process.execPath, ['-e', script, memory.uri]);
    expect(r.stdout).toBe('1048576\n');
    expect(JSON.parse(r.stderr)).toEqual({ code: 0, loaded: [] });
  });
});
