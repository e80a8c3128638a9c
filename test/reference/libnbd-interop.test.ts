// libnbd's interop tests replayed against this binding with the servers of
// this machine, each compared with libnbd's Python binding:
// interop/interop.c (qemu-nbd and nbdkit, plain and with TLS PSK: size,
// read, write, flush, zero, the backing file after each),
// interop/opt-extended-headers.c (the four orders of asking for structured
// replies and extended headers), interop/socket-activation.c.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TLS_ALLOW, TLS_REQUIRE } from '../../lib';
import { tempDir } from '../helpers/servers';
import { expectSameAsLibnbd, type Step } from '../helpers/replay';

const SIZE = 1024 * 1024;

/** A sparse file of SIZE bytes, rewritten to zeroes before each side runs. */
function backingFile(): string {
  const file = join(tempDir(), 'interop.raw');
  writeFileSync(file, Buffer.alloc(SIZE));
  return file;
}

/** A PSK file for user alice, in a directory of its own (qemu-nbd's tls-creds-psk wants dir/keys.psk). */
function pskDir(): { dir: string; file: string } {
  const dir = tempDir();
  const file = join(dir, 'keys.psk');
  writeFileSync(file, `alice:${randomBytes(32).toString('hex')}\n`);
  return { dir, file };
}

/** interop.c's checks after connecting: size, a read, a write, flush, zero of everything, flush. */
const EXERCISE: Step[] = [
  ['get_tls_negotiated'],
  ['get_size'],
  ['pread', { $read: 512 }, 0],
  ['is_read_only'],
  ['pwrite', { $write: 512, fill: 0x5a }, 0],
  ['can_flush'],
  ['flush'],
  ['can_zero'],
  ['zero', SIZE, 0],
  ['flush'],
  ['pread', { $read: 512 }, 0],
  ['shutdown'],
];

describe('interop with qemu-nbd and nbdkit (interop.c)', () => {
  test('qemu-nbd by socket activation: size, read, write, flush and zero as libnbd sees them; the file zeroed', async () => {
    const file = backingFile();
    await expectSameAsLibnbd([['connect_systemd_socket_activation', ['qemu-nbd', '-f', 'raw', '-t', file]], ...EXERCISE]);
    expect(readFileSync(file).equals(Buffer.alloc(SIZE))).toBe(true);
  });

  test('qemu-nbd with TLS PSK, TLS_REQUIRE and TLS_ALLOW: negotiated, and the same checks', async () => {
    const psk = pskDir();
    for (const tls of [TLS_REQUIRE, TLS_ALLOW]) {
      const file = backingFile();
      const js = await expectSameAsLibnbd([
        ['set_tls', tls],
        ['set_tls_username', 'alice'],
        ['set_tls_psk_file', psk.file],
        [
          'connect_systemd_socket_activation',
          ['qemu-nbd', '-f', 'raw', '-t', '--object', `tls-creds-psk,id=tls0,endpoint=server,dir=${psk.dir}`, '--tls-creds', 'tls0', file],
        ],
        ...EXERCISE,
      ]);
      expect(js.outcomes[4]).toEqual(['ok', true]);
    }
  });

  test('nbdkit file plugin with TLS PSK required: negotiated, and the same checks', async () => {
    const psk = pskDir();
    const file = backingFile();
    const js = await expectSameAsLibnbd([
      ['set_tls', TLS_REQUIRE],
      ['set_tls_username', 'alice'],
      ['set_tls_psk_file', psk.file],
      ['connect_command', { $nbdkit: ['--tls=require', `--tls-psk=${psk.file}`, 'file', file] }],
      ...EXERCISE,
    ]);
    expect(js.outcomes[4]).toEqual(['ok', true]);
  });

  test('the wrong PSK fails the connect as libnbd fails it', async () => {
    const server = pskDir();
    const client = pskDir();
    await expectSameAsLibnbd([
      ['set_tls', TLS_REQUIRE],
      ['set_tls_username', 'alice'],
      ['set_tls_psk_file', client.file],
      ['connect_command', { $nbdkit: ['--tls=require', `--tls-psk=${server.file}`, 'memory', '1M'] }],
      ['aio_is_dead'],
    ]);
  });
});

describe('opt-extended-headers (qemu-nbd)', () => {
  const prep = (sr: boolean, eh: boolean, file: string): Step[] => [
    ['set_opt_mode', true],
    ['set_request_structured_replies', sr],
    ['set_request_extended_headers', eh],
    ['connect_systemd_socket_activation', ['qemu-nbd', '-r', '-f', 'raw', file]],
  ];

  test('asking for both: extended headers and structured replies negotiated, asking again changes nothing', async () => {
    const file = backingFile();
    await expectSameAsLibnbd(
      [
        ...prep(true, true, file),
        ['stats_bytes_sent'],
        ['get_extended_headers_negotiated'],
        ['get_structured_replies_negotiated'],
        ['opt_extended_headers'],
        ['opt_structured_reply'],
        ['get_extended_headers_negotiated'],
        ['get_structured_replies_negotiated'],
        ['opt_abort'],
      ],
    );
  });

  test('structured replies only, then neither (extended headers are not asked for without structured replies), then each asked in option mode', async () => {
    const file = backingFile();
    await expectSameAsLibnbd([...prep(true, false, file), ['stats_bytes_sent'], ['get_extended_headers_negotiated'], ['get_structured_replies_negotiated'], ['opt_abort']]);
    await expectSameAsLibnbd([...prep(false, true, file), ['get_extended_headers_negotiated'], ['get_structured_replies_negotiated'], ['opt_abort']]);
    await expectSameAsLibnbd(
      [
        ...prep(false, false, file),
        ['get_extended_headers_negotiated'],
        ['get_structured_replies_negotiated'],
        ['opt_structured_reply'],
        ['get_extended_headers_negotiated'],
        ['get_structured_replies_negotiated'],
        ['opt_extended_headers'],
        ['get_extended_headers_negotiated'],
        ['get_structured_replies_negotiated'],
        ['opt_abort'],
      ],
    );
  });
});
