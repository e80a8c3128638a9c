// libnbd's strict-mode checks replayed against this binding, each scenario
// compared with libnbd's Python binding: interop/strict-mode-auto-flag.sh
// (its two nbdsh scripts), and each STRICT_* bit set and cleared around a
// command the server did not advertise (read-only, no FUA, no DF, no cache).
// The bits' other checks (bounds, zero size, alignment, flags) are
// test/reference/libnbd-errors.test.ts's.
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CMD_FLAG_DF, CMD_FLAG_FUA, Handle, STRICT_COMMANDS } from '../../lib';
import { tempDir } from '../helpers/servers';
import { expectSameAsLibnbd, type Step, type Trace } from '../helpers/replay';

// libnbd.h's values (STRICT_AUTO_FLAG and CMD_FLAG_PAYLOAD_LEN are 1.18's; before, libnbd refuses them as unknown).
const STRICT_AUTO_FLAG = 0x40;
const CMD_FLAG_PAYLOAD_LEN = 0x20;

function defaultStrictMode(): number {
  const h = new Handle();
  try {
    return h.getStrictMode();
  } finally {
    h.close();
  }
}

/** Step `refused` failed before it was sent (libnbd's own check); step `sent` failed at the server ("command failed"). */
function expectRefusedThenSent(js: Trace, refused: number, sent: number): void {
  expect(js.outcomes[refused]).toEqual(['err', 'EINVAL', expect.stringMatching(/does not support/)]);
  expect(js.outcomes[sent]).toEqual(['err', 'EINVAL', expect.stringMatching(/command failed/)]);
}

function rawFile(): string {
  const file = join(tempDir(), 'strict.raw');
  writeFileSync(file, '');
  truncateSync(file, 1024 * 1024);
  return file;
}

test('without extended headers: PAYLOAD_LEN on a write is dropped by STRICT_AUTO_FLAG, refused without it, sent without STRICT_COMMANDS (strict-mode-auto-flag)', async () => {
  const d = defaultStrictMode();
  const steps: Step[] = [
    ['set_request_extended_headers', false],
    ['connect_systemd_socket_activation', ['qemu-nbd', '-f', 'raw', rawFile()]],
    ['get_extended_headers_negotiated'],
    ['get_strict_mode'],
    ['pwrite', { $write: 512, fill: 0x31 }, 0, 0],
    ['pwrite', { $write: 512, fill: 0x32 }, 0, CMD_FLAG_PAYLOAD_LEN],
    ['set_strict_mode', d & ~STRICT_AUTO_FLAG],
    ['pwrite', { $write: 512, fill: 0x33 }, 0, 0],
    ['stats_bytes_sent'],
    ['pwrite', { $write: 512, fill: 0x34 }, 0, CMD_FLAG_PAYLOAD_LEN],
    ['stats_bytes_sent'],
    ['set_strict_mode', d & ~STRICT_AUTO_FLAG & ~STRICT_COMMANDS],
    ['pwrite', { $write: 512, fill: 0x35 }, 0, 0],
    ['stats_bytes_sent'],
    ['pwrite', { $write: 512, fill: 0x36 }, 0, CMD_FLAG_PAYLOAD_LEN],
    ['stats_bytes_sent'],
    ['pread', { $read: 512 }, 0],
    ['shutdown'],
  ];
  await expectSameAsLibnbd(steps);
});

test('with extended headers where the server has them: PAYLOAD_LEN added by STRICT_AUTO_FLAG, a write without it refused without STRICT_AUTO_FLAG (strict-mode-auto-flag)', async () => {
  const d = defaultStrictMode();
  await expectSameAsLibnbd([
    ['connect_systemd_socket_activation', ['qemu-nbd', '-f', 'raw', rawFile()]],
    ['get_extended_headers_negotiated'],
    ['pwrite', { $write: 512, fill: 0x31 }, 0, 0],
    ['pwrite', { $write: 512, fill: 0x32 }, 0, CMD_FLAG_PAYLOAD_LEN],
    ['set_strict_mode', d & ~STRICT_AUTO_FLAG],
    ['pwrite', { $write: 512, fill: 0x33 }, 0, CMD_FLAG_PAYLOAD_LEN],
    ['stats_bytes_sent'],
    ['pwrite', { $write: 512, fill: 0x34 }, 0, 0],
    ['stats_bytes_sent'],
    ['set_strict_mode', d & ~STRICT_AUTO_FLAG & ~STRICT_COMMANDS],
    ['pwrite', { $write: 512, fill: 0x35 }, 0, CMD_FLAG_PAYLOAD_LEN],
    ['pwrite', { $write: 512, fill: 0x36 }, 0, 0],
    ['pread', { $read: 512 }, 0],
    ['shutdown'],
  ]);
});

describe('a command the server did not advertise, with the strict bit set and cleared', () => {
  test('a write to a read-only export: refused at once with STRICT_COMMANDS, sent and failed by the server without it', async () => {
    const d = defaultStrictMode();
    await expectSameAsLibnbd([
      ['connect_command', { $nbdkit: ['-r', 'memory', '1M'] }],
      ['pwrite', { $write: 512 }, 0],
      ['zero', 512, 0],
      ['trim', 512, 0],
      ['set_strict_mode', d & ~STRICT_COMMANDS],
      ['pwrite', { $write: 512 }, 0],
      ['zero', 512, 0],
      ['trim', 512, 0],
    ]);
  });

  test('FUA on a server without FUA: refused at once with STRICT_COMMANDS, sent without it', async () => {
    const d = defaultStrictMode();
    const js = await expectSameAsLibnbd([
      ['connect_command', { $nbdkit: ['eval', 'get_size=echo 1M', 'can_write=exit 0', 'can_fua=echo none', 'pwrite=cat >/dev/null'] }],
      ['can_fua'],
      ['pwrite', { $write: 512 }, 0, CMD_FLAG_FUA],
      ['set_strict_mode', d & ~STRICT_COMMANDS],
      ['pwrite', { $write: 512 }, 0, CMD_FLAG_FUA],
    ]);
    expectRefusedThenSent(js, 2, 4);
  });

  test('DF without structured replies: refused at once with STRICT_COMMANDS, sent without it', async () => {
    const d = defaultStrictMode();
    const js = await expectSameAsLibnbd([
      ['set_request_structured_replies', false],
      ['connect_command', { $nbdkit: ['memory', '1M'] }],
      ['can_df'],
      ['pread_structured', { $read: 512 }, 0, { $fn: 'chunk' }, CMD_FLAG_DF],
      ['set_strict_mode', d & ~STRICT_COMMANDS],
      ['pread_structured', { $read: 512 }, 0, { $fn: 'chunk' }, CMD_FLAG_DF],
      ['aio_is_ready'],
    ]);
    expectRefusedThenSent(js, 3, 5);
  });

  test('cache on a server without cache: refused at once with STRICT_COMMANDS, sent without it', async () => {
    const d = defaultStrictMode();
    const js = await expectSameAsLibnbd([
      ['connect_command', { $nbdkit: ['--filter=nocache', 'memory', '1M', 'cachemode=none'] }],
      ['can_cache'],
      ['cache', 512, 0],
      ['set_strict_mode', d & ~STRICT_COMMANDS],
      ['cache', 512, 0],
      ['aio_is_ready'],
    ]);
    expectRefusedThenSent(js, 2, 4);
  });
});
