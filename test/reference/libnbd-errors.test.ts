// libnbd's errors-* tests replayed against this binding: each scenario run
// step by step through libnbd's Python binding and through this one on the
// same kind of server, outcomes (errno, message, values) compared. Client-
// side checks (tests/errors-client-*.c, errors-not-connected.c,
// errors-pread-structured.c, pread-initialize.c, pwrite-extended.c), the
// server's refusals of what the client let through (errors-server-*.c),
// connect misuse (errors-connect-null.c, errors-connect-twice.c),
// errors-bad-cookie.c, errors-multiple-disconnects.c, python/t/610-exception.
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import {
  CMD_FLAG_MASK,
  Handle,
  STRICT_ALIGN,
  STRICT_BOUNDS,
  STRICT_COMMANDS,
  STRICT_FLAGS,
  STRICT_ZERO_SIZE,
} from '../../lib';
import { failure } from '../helpers/outcome';
import { handle, tempDir, tempFile } from '../helpers/servers';
import { expectSameAsLibnbd, short, type Step } from '../helpers/replay';

/** A new handle's strict mode (libnbd's default), with bits set or cleared. */
function strict(set: number, clear = 0): number {
  const h = new Handle();
  try {
    return (h.getStrictMode() | set) & ~clear;
  } finally {
    h.close();
  }
}

const memory = { $nbdkit: ['memory', '1048576'] };
/** A read of `count` bytes at `offset` sent as C's aio call (no completion), then C's polling loop for it. */
const aioRead = (count: number, offset: unknown, flags = 0): Step[] => [['aio_pread', { $read: count }, offset, null, flags], ['$wait', -1]];

/** `steps` with each ['$wait', -1] pointing at the step before it. */
function resolveWaits(steps: Step[]): Step[] {
  return steps.map((s, i) => (s[0] === '$wait' && s[1] === -1 ? ['$wait', i - 1] : s));
}

const same = (steps: Step[]) => expectSameAsLibnbd(resolveWaits(steps));

describe('client-side checks (errors-client-*)', () => {
  test('a read of 65 MiB fails ERANGE before it is sent (errors-client-oversize)', async () => {
    const js = await same([
      ['connect_command', { $nbdkit: ['memory', '68157440', '--filter=blocksize-policy', 'blocksize-maximum=32M', 'blocksize-error-policy=error'] }],
      ['pread', { $read: 68157440 }, 0],
      ['aio_pwrite', { $write: 68157440 }, 0, null, 0],
    ]);
    expect(short(js.outcomes[1])).toEqual(['err', 'ERANGE']);
    expect(short(js.outcomes[2])).toEqual(['err', 'ERANGE']);
  });

  test('a 33 MiB write to a server whose maximum is 32 MiB: refused by the client or by the server, as libnbd does it (errors-client-oversize)', async () => {
    await same([
      ['connect_command', { $nbdkit: ['memory', '68157440', '--filter=blocksize-policy', 'blocksize-maximum=32M', 'blocksize-error-policy=error'] }],
      ['get_block_size', 2],
      ['aio_pwrite', { $write: 33 * 1024 * 1024 }, 0, null, 0],
      ['$wait', -1],
    ]);
  });

  test('with STRICT_COMMANDS, a trim the server did not advertise fails EINVAL at once (errors-client-unadvertised-cmd)', async () => {
    const js = await same([
      ['connect_command', { $nbdkit: ['eval', 'get_size=echo 512', 'can_write=exit 0'] }],
      ['set_strict_mode', strict(STRICT_COMMANDS)],
      ['can_trim'],
      ['aio_trim', 512, 0, null, 0],
    ]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('with STRICT_ALIGN, a read unaligned to the server\'s minimum block size fails EINVAL at once (errors-client-unaligned)', async () => {
    const js = await same([
      ['connect_command', { $nbdkit: ['memory', '1024', '--filter=blocksize-policy', 'blocksize-minimum=512'] }],
      ['set_strict_mode', strict(STRICT_ALIGN)],
      ['get_block_size', 0],
      ['aio_pread', { $read: 1 }, 1, null, 0],
    ]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('with STRICT_FLAGS, CMD_FLAG_MASK + 1 and 0x10000 as a read\'s flags fail EINVAL at once (errors-client-unknown-flags)', async () => {
    const js = await same([
      ['connect_command', memory],
      ['set_strict_mode', strict(STRICT_FLAGS)],
      ['aio_pread', { $read: 512 }, 0, null, CMD_FLAG_MASK + 1],
      ['aio_pread', { $read: 512 }, 0, null, 0x10000],
    ]);
    expect(short(js.outcomes[2])).toEqual(['err', 'EINVAL']);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('with STRICT_ZERO_SIZE, a read of 0 bytes fails EINVAL at once (errors-client-zerosize)', async () => {
    const js = await same([['connect_command', memory], ['set_strict_mode', strict(STRICT_ZERO_SIZE)], ['aio_pread', { $read: 0 }, 0, null, 0]]);
    expect(short(js.outcomes[2])).toEqual(['err', 'EINVAL']);
  });

  test('with STRICT_BOUNDS, a read at offset 2**64 - 1 fails EINVAL at once (pread-initialize, errors-pread-structured)', async () => {
    const js = await same([
      ['connect_command', memory],
      ['set_strict_mode', strict(STRICT_BOUNDS)],
      ['aio_pread', { $read: 512 }, { $u64: 'max' }, null, 0],
      ['aio_pread_structured', { $read: 512 }, { $u64: 'max' }, { $fn: 'chunk' }, { $fn: 'completion' }, 0],
    ]);
    expect(short(js.outcomes[2])).toEqual(['err', 'EINVAL']);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
    expect(js.calls).toEqual([]);
  });

  test('CMD_FLAG_PAYLOAD_LEN is refused on a read and accepted (or not) on a write as libnbd decides (pwrite-extended)', async () => {
    await same([
      ['connect_command', memory],
      ['get_strict_mode'],
      ['aio_pread', { $read: 512 }, 0, null, 0x20],
      ['aio_pwrite', { $write: 512 }, 0, null, 0x20],
      ['aio_pwrite', { $write: 512 }, 0, null, 0],
    ]);
  });
});

describe('what the server refuses (errors-server-*)', () => {
  test('without STRICT_COMMANDS, the unadvertised trim is sent and fails with the server\'s EINVAL (errors-server-unadvertised-cmd)', async () => {
    const js = await same([
      ['connect_command', { $nbdkit: ['eval', 'get_size=echo 512', 'can_write=exit 0'] }],
      ['set_strict_mode', strict(0, STRICT_COMMANDS)],
      ['aio_trim', 512, 0, null, 0],
      ['$wait', -1],
    ]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('without STRICT_ALIGN, the unaligned read is sent and fails with the server\'s EINVAL (errors-server-unaligned)', async () => {
    const js = await same([
      ['connect_command', { $nbdkit: ['memory', '1024', '--filter=blocksize-policy', 'blocksize-minimum=512', 'blocksize-error-policy=error'] }],
      ['set_strict_mode', strict(0, STRICT_ALIGN)],
      ...aioRead(1, 1),
    ]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('without STRICT_FLAGS, a read with CMD_FLAG_MASK + 1 is sent and fails with the server\'s EINVAL (errors-server-unknown-flags)', async () => {
    const js = await same([['connect_command', memory], ['set_strict_mode', strict(0, STRICT_FLAGS)], ...aioRead(512, 0, CMD_FLAG_MASK + 1)]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('without STRICT_ZERO_SIZE, a read of 0 bytes is sent and fails with the server\'s EINVAL (errors-server-zerosize)', async () => {
    const js = await same([['connect_command', memory], ['set_strict_mode', strict(0, STRICT_ZERO_SIZE)], ...aioRead(0, 0)]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });

  test('without STRICT_BOUNDS, a read at 2**64 - 1 is sent and fails with the server\'s EINVAL (errors-server-invalid-offset)', async () => {
    const js = await same([['connect_command', memory], ['set_strict_mode', strict(0, STRICT_BOUNDS)], ...aioRead(512, { $u64: 'max' })]);
    expect(short(js.outcomes[3])).toEqual(['err', 'EINVAL']);
  });
});

describe('wrong states and cookies', () => {
  test('a read on a handle never connected fails ENOTCONN with libnbd\'s message (errors-not-connected, 610-exception)', async () => {
    const js = await same([['pread', { $read: 512 }, 0], ['pread', { $read: 0 }, 0]]);
    expect(short(js.outcomes[0])).toEqual(['err', 'ENOTCONN']);
  });

  test('with pread initialization on (the default), a read that fails before it is sent leaves the buffer zeroed (errors-not-connected)', async () => {
    const h = handle();
    expect(h.getPreadInitialize()).toBe(true);
    const buf = Buffer.alloc(512, '1');
    const e = await failure(() => h.pread(buf, 0));
    expect(e.code).toBe('ENOTCONN');
    expect(buf.equals(Buffer.alloc(512))).toBe(true);
  });

  test('with pread initialization off, a read refused by STRICT_BOUNDS leaves the buffer untouched (pread-initialize)', async () => {
    const h = handle();
    await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'memory', '1048576']);
    h.setPreadInitialize(false);
    h.setStrictMode(h.getStrictMode() | STRICT_BOUNDS);
    const buf = Buffer.alloc(512, '1');
    expect(() => h.aioPread(buf, 2n ** 64n - 1n)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(buf.equals(Buffer.alloc(512, '1'))).toBe(true);
  });

  test('an empty argv for connectCommand fails EINVAL as libnbd (errors-connect-null)', async () => {
    const js = await same([['connect_command', []], ['aio_is_created']]);
    expect(short(js.outcomes[0])).toEqual(['err', 'EINVAL']);
  });

  test('a second connectCommand on a connected handle fails EINVAL (errors-connect-twice)', async () => {
    const js = await same([['connect_command', memory], ['connect_command', memory], ['aio_is_ready']]);
    expect(short(js.outcomes[1])).toEqual(['err', 'EINVAL']);
  });

  test('aioCommandCompleted(0) fails EINVAL with libnbd\'s message (errors-bad-cookie)', async () => {
    const js = await same([['connect_command', memory], ['aio_command_completed', 0], ['aio_command_completed', 12345]]);
    expect(short(js.outcomes[1])).toEqual(['err', 'EINVAL']);
    expect(js.outcomes[2]).toEqual(['ok', false]);
  });

  test('aioPeekCommandCompleted and aioInFlight on an idle handle answer as libnbd', async () => {
    await same([['aio_in_flight'], ['aio_peek_command_completed'], ['connect_command', memory], ['aio_in_flight'], ['aio_peek_command_completed']]);
  });

  test('a second aioDisconnect fails EINVAL; after shutdown a read fails EINVAL (errors-multiple-disconnects)', async () => {
    const dir = tempDir();
    const witness = join(dir, 'witness');
    const script = tempFile(
      'multiple-disconnects.sh',
      `#!/bin/sh
case "$1" in
  get_size) echo 128m ;;
  thread_model) echo serialize_all_requests ;;
  pread) printf 'ENOMEM ' >&2; exit 1 ;;
  can_write) exit 0 ;;
  pwrite) cat >/dev/null; while test -e ${witness}; do sleep 0.1; done ;;
  *) exit 2 ;;
esac
`,
    );
    chmodSync(script, 0o755);
    const js = await same([
      ['$touch', witness],
      ['connect_command', { $nbdkit: ['sh', script] }],
      ['pread', { $read: 512 }, 0],
      ['aio_pwrite', { $write: 2 * 1024 * 1024 }, 0, null, 0],
      ['aio_pwrite', { $write: 2 * 1024 * 1024 }, 0, null, 0],
      ['aio_disconnect', 0],
      ['aio_disconnect', 0],
      ['$unlink', witness],
      ['shutdown'],
      ['pread', { $read: 512 }, 0],
    ]);
    expect(short(js.outcomes[2])).toEqual(['err', 'ENOMEM']);
    expect(short(js.outcomes[6])).toEqual(['err', 'EINVAL']);
    expect(short(js.outcomes[9])).toEqual(['err', 'EINVAL']);
  });
});
