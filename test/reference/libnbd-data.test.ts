// libnbd's data-command tests replayed against this binding, each scenario
// run step by step through libnbd's Python binding and through this one on
// the same kind of server, compared whole: the data read (its sha1), each
// chunk and completion callback's arguments, each call's errno and message.
// python/t/400-pread, 405-pread-structured, 410-pwrite, 500-aio-pread,
// 505-aio-pread-callback, 510-aio-pwrite; interop/structured-read.c; and
// the other commands (zero, trim, cache, flush) with each flag they take.
import { readFileSync, writeFileSync } from 'node:fs';
import { constants as os } from 'node:os';
import { join } from 'node:path';
import { CMD_FLAG_DF, CMD_FLAG_FAST_ZERO, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLAG_REQ_ONE, Handle, READ_DATA, isZero } from '../../lib';
import { python } from '../helpers/outcome';
import { sparseFile, tempDir } from '../helpers/servers';
import { expectSameAsLibnbd, short, type Step } from '../helpers/replay';
import { withKeptStderr } from '../helpers/output';

const { EPROTO, ENOMEM } = os.errno;
const pattern512 = { $nbdkit: ['pattern', 'size=512'] };

/** `steps` with each ['$wait', -1] pointing at the step before it. */
function resolveWaits(steps: Step[]): Step[] {
  return steps.map((s, i) => (s[0] === '$wait' && s[1] === -1 ? ['$wait', i - 1] : s));
}
const same = (steps: Step[]) => expectSameAsLibnbd(resolveWaits(steps));

describe('pread and pread_structured', () => {
  test('pread of the pattern plugin\'s 512 bytes gives libnbd\'s bytes (400-pread)', async () => {
    const js = await same([['connect_command', pattern512], ['pread', { $read: 512 }, 0]]);
    expect(js.outcomes[1][0]).toBe('ok');
  });

  test('a chunk callback that sets error.value and returns 0 does not fail the read; one READ_DATA chunk at 0 (405-pread-structured)', async () => {
    const js = await same([
      ['connect_command', pattern512],
      ['pread_structured', { $read: 512 }, 0, { $fn: 'chunk', set: EPROTO }],
      ['pread_structured', { $read: 512 }, 0, { $fn: 'chunk', set: EPROTO }, CMD_FLAG_DF],
    ]);
    expect(js.calls.map((c) => c.slice(0, 6))).toEqual([
      [1, 'chunk', 0, READ_DATA, 512, 0],
      [2, 'chunk', 0, READ_DATA, 512, 0],
    ]);
  });

  test('a chunk callback that fails with EPROTO fails the read EPROTO with libnbd\'s message (405-pread-structured)', async () => {
    const js = await same([['connect_command', pattern512], ['pread_structured', { $read: 512 }, 0, { $fn: 'chunk', set: EPROTO, ret: -1 }, CMD_FLAG_DF]]);
    expect(short(js.outcomes[1])).toEqual(['err', 'EPROTO']);
  });

  test('aioPread twice into one buffer, each waited for with aio_command_completed (500-aio-pread)', async () => {
    await same([
      ['connect_command', { $nbdkit: ['pattern', 'size=1024'] }],
      ['aio_pread', { $read: 512 }, 0],
      ['$wait', -1],
      ['$buffer', 1],
      ['aio_pread', { $read: 512 }, 512],
      ['$wait', -1],
      ['$buffer', 4],
    ]);
  });

  // 505-aio-pread-callback: [chunk fails?, completion fails?] and the read's outcome.
  const cases: [string, boolean, boolean][] = [
    ['neither callback fails: the read succeeds although the completion set ENOMEM', false, false],
    ['the completion fails with ENOMEM: the read fails ENOMEM', false, true],
    ['the chunk fails EPROTO and the completion fails with ENOMEM: ENOMEM replaces EPROTO', true, true],
    ['the chunk fails EPROTO, the completion sets ENOMEM and returns 0: EPROTO stays', true, false],
  ];
  test.each(cases)('aioPreadStructured with a completion: %s (505-aio-pread-callback)', async (_, chunkFails, completionFails) => {
    await same([
      ['connect_command', pattern512],
      [
        'aio_pread_structured',
        { $read: 512 },
        0,
        { $fn: 'chunk', set: EPROTO, ret: chunkFails ? -1 : 0 },
        { $fn: 'completion', set: ENOMEM, ret: completionFails ? -1 : 0 },
      ],
      ['$wait', -1],
      ['$buffer', 1],
      ['aio_in_flight'],
    ]);
  });

  test('structured reads over qemu-nbd\'s data and hole: chunks, with DF one chunk, a failing callback leaves the handle ready (interop structured-read)', async () => {
    const file = sparseFile(3072, [[0, 2048], [2560, 512]], 1);
    const qemu = ['qemu-nbd', '-f', 'raw', file];
    const js = await same([
      ['connect_systemd_socket_activation', qemu],
      ['get_size'],
      ['can_df'],
      ['pread_structured', { $read: 1024 }, 2048, { $fn: 'chunk' }],
      ['pread_structured', { $read: 1024 }, 2048, { $fn: 'chunk' }, CMD_FLAG_DF],
      ['pread_structured', { $read: 1024 }, 2048, { $fn: 'chunk', ret: -1, set: EPROTO }],
      ['aio_is_ready'],
      ['pread', { $read: 1 }, 0],
      ['shutdown'],
    ]);
    expect(js.outcomes[1]).toEqual(['ok', 3072]);
    expect(short(js.outcomes[5])).toEqual(['err', 'EPROTO']);
  });
});

describe('pwrite', () => {
  /** A 512-byte file of zeroes served by nbdkit's file plugin. */
  function dataFile(): string {
    const path = join(tempDir(), 'pwrite.data');
    writeFileSync(path, Buffer.alloc(512));
    return path;
  }

  test('pwrite with FUA, then pread gives it back and the file holds it (410-pwrite)', async () => {
    const file = dataFile();
    const js = await same([
      ['connect_command', { $nbdkit: ['file', file] }],
      ['pwrite', { $write: 512, fill: 0x55 }, 0, CMD_FLAG_FUA],
      ['pread', { $read: 512 }, 0],
    ]);
    expect(js.outcomes[1]).toEqual(['ok', null]);
    expect(readFileSync(file).equals(Buffer.alloc(512, 0x55))).toBe(true);
  });

  test('aioPwrite with FUA, waited for, then aioPread of it (510-aio-pwrite)', async () => {
    const file = dataFile();
    await same([
      ['connect_command', { $nbdkit: ['file', file] }],
      ['aio_pwrite', { $write: 512, fill: 0xaa }, 0, null, CMD_FLAG_FUA],
      ['$wait', -1],
      ['aio_pread', { $read: 512 }, 0],
      ['$wait', -1],
      ['$buffer', 3],
    ]);
  });

  test('pwrite on a read-only export fails as libnbd fails it (EPERM, before it is sent)', async () => {
    const js = await same([['connect_command', { $nbdkit: ['-r', 'memory', '1M'] }], ['pwrite', { $write: 512 }, 0], ['aio_pwrite', { $write: 512 }, 0]]);
    expect(short(js.outcomes[1])).toEqual(['err', 'EPERM']);
  });
});

describe('zero, trim, cache, flush', () => {
  const memory = { $nbdkit: ['memory', '1M'] };

  test('each command with each flag it takes, and with one it does not, as libnbd answers them', async () => {
    await same([
      ['connect_command', memory],
      ['pwrite', { $write: 65536, fill: 0xee }, 0],
      ['zero', 4096, 0],
      ['zero', 4096, 4096, CMD_FLAG_FUA],
      ['zero', 4096, 8192, CMD_FLAG_NO_HOLE],
      ['zero', 4096, 12288, CMD_FLAG_FAST_ZERO],
      ['zero', 4096, 16384, CMD_FLAG_DF],
      ['trim', 4096, 20480],
      ['trim', 4096, 24576, CMD_FLAG_FUA],
      ['trim', 4096, 28672, CMD_FLAG_NO_HOLE],
      ['cache', 4096, 32768],
      ['cache', 4096, 32768, CMD_FLAG_FUA],
      ['flush'],
      ['flush', CMD_FLAG_FUA],
      ['pread', { $read: 65536 }, 0],
      ['pread', { $read: 512 }, 0, CMD_FLAG_REQ_ONE],
    ]);
  });

  test('the aio forms complete with libnbd\'s cookies and completion calls', async () => {
    await same([
      ['connect_command', memory],
      ['aio_zero', 4096, 0, { $fn: 'completion' }],
      ['$wait', -1],
      ['aio_trim', 4096, 0, { $fn: 'completion' }],
      ['$wait', -1],
      ['aio_cache', 4096, 0, { $fn: 'completion' }],
      ['$wait', -1],
      ['aio_flush', { $fn: 'completion' }],
      ['$wait', -1],
      ['aio_in_flight'],
    ]);
  });

  test('a completion callback returning 1 auto-retires the command: aio_command_completed is then false', async () => {
    await same([
      ['connect_command', memory],
      ['aio_flush', { $fn: 'completion', ret: 1 }],
      ['$drain'],
      ['aio_command_completed', 1],
      ['aio_in_flight'],
    ]);
  });

  test('commands a server does not support (nbdkit null without trim, zero, cache) fail as libnbd fails them', async () => {
    await same([
      ['connect_command', { $nbdkit: ['--filter=nozero', '--filter=nocache', '--filter=notrim', 'memory', '1M'] }],
      ['can_zero'],
      ['can_trim'],
      ['can_cache'],
      ['zero', 512, 0],
      ['trim', 512, 0],
      ['cache', 512, 0],
      ['zero', 512, 0, CMD_FLAG_FAST_ZERO],
    ]);
  });

  test('reads and writes beyond the end of the export fail as libnbd fails them', async () => {
    await same([
      ['connect_command', memory],
      ['pread', { $read: 512 }, 1048576],
      ['pwrite', { $write: 512 }, 1048064 + 1],
      ['zero', 1024, 1048064],
      ['trim', 0, 0],
      ['cache', 1, 1048576],
    ]);
  });
});

test('the Promise forms of a read and of a write reject with libnbd\'s message as the sync call words it', async () => {
  // Written out without the replay: the same call, sync in Python, awaited here.
  const h = new Handle();
  try {
    await h.connectCommand(withKeptStderr(['nbdkit', '-s', '--exit-with-parent', '--filter=error', 'memory', '1M', 'error=EIO', 'error-rate=100%']));
    const e = await h.pread(Buffer.alloc(512), 0).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toMatchObject({ code: 'EIO', message: 'nbd_pread: read: command failed: Input/output error' });
  } finally {
    h.close();
  }
});

test('isZero answers as nbd.Buffer.is_zero for the buffers and ranges of python/t/580-aio-is-zero', async () => {
  const MiB = 2 ** 20;
  const mixed = Buffer.concat([Buffer.alloc(MiB, 0xff), Buffer.alloc(MiB)]);
  // [buffer name, offset, length]: the same slices on both sides.
  const cases: [string, number, number | undefined][] = [
    ['zeroes', 0, undefined],
    ...Array.from({ length: 7 }, (_, i): [string, number, number] => ['zeroes', i * 2 ** 17, 2 ** 17]),
    ['ones', 0, undefined],
    ...Array.from({ length: 15 }, (_, i): [string, number, number] => ['ones', i * 2 ** 16, 2 ** 16]),
    ['hello', 0, undefined],
    ['mixed', 0, undefined],
    ['mixed', 0, MiB],
    ['mixed', MiB, undefined],
    ['mixed', MiB / 2, undefined],
    ['mixed', MiB, MiB / 2],
    ['mixed', MiB - 1, 1],
    ['mixed', MiB, 1],
    ['mixed', 0, 1],
    ['mixed', 2 * MiB - 1, 1],
    ['empty', 0, undefined],
  ];
  const buffers: Record<string, Buffer> = { zeroes: Buffer.alloc(MiB), ones: Buffer.alloc(MiB, 0xff), hello: Buffer.from('Hello world'), mixed, empty: Buffer.alloc(0) };
  const js = cases.map(([name, offset, length]) => isZero(buffers[name].subarray(offset, length === undefined ? undefined : offset + length)));
  const py = await python<boolean[]>(
    `MiB = 2**20
bufs = {'zeroes': bytearray(MiB), 'ones': bytearray(b'\\xff') * MiB, 'hello': bytearray(b'Hello world'),
        'mixed': bytearray(b'\\xff') * MiB + bytearray(MiB), 'empty': bytearray()}
out = []
for name, offset, length in json.loads(sys.argv[1]):
    b = nbd.Buffer.from_bytearray(bufs[name])
    out.append(b.is_zero(offset) if length is None else b.is_zero(offset, length))
print(json.dumps(out))`,
    JSON.stringify(cases),
  );
  expect(js).toEqual(py);
});
