// libnbd's block status and meta context tests replayed against this
// binding, each scenario run step by step through libnbd's Python binding
// and through this one, the extent callbacks' arguments and each call's
// outcome compared: python/t/460-block-status, 465-block-status-64;
// tests/meta-base-allocation.c; interop/dirty-bitmap.c, block-status-64.c,
// block-status-payload (its nbdsh part); and block status without a
// negotiated context (closure-lifetimes.c's client-side failure).
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { constants as os } from 'node:os';
import { CMD_FLAG_REQ_ONE, CONTEXT_BASE_ALLOCATION } from '../../lib';
import { tempDir, tempFile } from '../helpers/servers';
import { expectSameAsLibnbd, short, type Step } from '../helpers/replay';

const { EPROTO } = os.errno;

// 64K of zeroes whose extents are: 8K data, 8K hole, 16K hole+zero, 16K zero, 16K data.
const ALLOCATION_SCRIPT = `#!/bin/sh
case "$1" in
  thread_model) echo parallel ;;
  get_size) echo 65536 ;;
  pread) dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null ;;
  can_extents) exit 0 ;;
  extents)
    echo 0 8192
    echo 8192 8192 hole
    echo 16384 16384 hole,zero
    echo 32768 16384 zero
    echo 49152 16384 ;;
  *) exit 2 ;;
esac
`;

function allocationScript(): string {
  const path = tempFile('meta-base-allocation.sh', ALLOCATION_SCRIPT);
  chmodSync(path, 0o755);
  return path;
}

/** A qcow2 image made with qemu-img and qemu-io commands, in a temp dir. */
function qcow2(size: string, prepare: (file: string) => void): string {
  const file = join(tempDir(), 'image.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, size]);
  prepare(file);
  return file;
}
const qemuIo = (file: string, ...cmds: string[]) => execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file], { stdio: 'ignore' });
const bitmapAdd = (file: string, name: string) => execFileSync('qemu-img', ['bitmap', '--add', '--enable', '-f', 'qcow2', file, name]);

describe('base:allocation from an nbdkit sh plugin (460, 465, meta-base-allocation)', () => {
  test('blockStatus over the export, over 1K at 32256 and with REQ_ONE: libnbd\'s entries (460-block-status)', async () => {
    const js = await expectSameAsLibnbd([
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_command', { $nbdkit: ['sh', allocationScript()] }],
      ['block_status', 65536, 0, { $fn: 'extent' }],
      ['block_status', 1024, 32256, { $fn: 'extent' }],
      ['block_status', 1024, 32256, { $fn: 'extent' }, CMD_FLAG_REQ_ONE],
    ]);
    expect(js.calls.map((c) => c[4])).toEqual([
      [8192, 0, 8192, 1, 16384, 3, 16384, 2, 16384, 0],
      [512, 3, 16384, 2],
      [512, 3],
    ]);
  });

  test('blockStatus64 over the same ranges: libnbd\'s (length, flags) pairs (465-block-status-64)', async () => {
    await expectSameAsLibnbd([
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_command', { $nbdkit: ['sh', allocationScript()] }],
      ['block_status_64', 65536, 0, { $fn: 'extent64' }],
      ['block_status_64', 1024, 32256, { $fn: 'extent64' }],
      ['block_status_64', 1024, 32256, { $fn: 'extent64' }, CMD_FLAG_REQ_ONE],
    ]);
  });

  test('contexts requested are counted and read back; a bogus one is ignored by the server (meta-base-allocation)', async () => {
    const js = await expectSameAsLibnbd([
      ['get_nr_meta_contexts'],
      ['clear_meta_contexts'],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', 'x-libnbd:nosuch_context'],
      ['get_nr_meta_contexts'],
      ['get_meta_context', 1],
      ['get_meta_context', 2],
      ['connect_command', { $nbdkit: ['sh', allocationScript()] }],
      ['get_protocol'],
      ['get_structured_replies_negotiated'],
      ['can_meta_context', 'x-libnbd:nosuch_context'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['block_status', 65536, 0, { $fn: 'extent' }],
      ['block_status', 1024, 32768 - 512, { $fn: 'extent' }, CMD_FLAG_REQ_ONE],
      ['shutdown'],
    ]);
    expect(js.outcomes[4]).toEqual(['ok', 2]);
  });

  test('an extent callback that fails with EPROTO fails blockStatus EPROTO; the handle stays ready and reads', async () => {
    const js = await expectSameAsLibnbd([
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_command', { $nbdkit: ['sh', allocationScript()] }],
      ['block_status', 65536, 0, { $fn: 'extent', ret: -1, set: EPROTO }],
      ['aio_is_ready'],
      ['pread', { $read: 1 }, 0],
      ['aio_block_status', 65536, 0, { $fn: 'extent', ret: -1, set: EPROTO }, { $fn: 'completion' }],
      ['$wait', 5],
    ]);
    expect(short(js.outcomes[2])).toEqual(['err', 'EPROTO']);
  });

  test('setRequestMetaContext(false): connecting requests no context, canMetaContext and blockStatus answer as libnbd', async () => {
    await expectSameAsLibnbd([
      ['set_request_meta_context', false],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_command', { $nbdkit: ['sh', allocationScript()] }],
      ['get_request_meta_context'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['block_status', 65536, 0, { $fn: 'extent' }],
    ]);
  });

  test('blockStatus without a negotiated meta context fails before it is sent, as libnbd (closure-lifetimes)', async () => {
    await expectSameAsLibnbd([
      ['block_status', 512, 0, { $fn: 'extent' }],
      ['aio_block_status', 512, 0, { $fn: 'extent' }, { $fn: 'completion' }],
      ['connect_command', { $nbdkit: ['null', 'size=512'] }],
      ['block_status', 512, 0, { $fn: 'extent' }],
      ['aio_block_status', 512, 0, { $fn: 'extent' }, { $fn: 'completion' }],
    ]);
  });
});

describe('qemu-nbd dirty bitmaps (interop dirty-bitmap, block-status-64)', () => {
  test('base:allocation and qemu:dirty-bitmap:bitmap0 in one call, with REQ_ONE, and with a failing callback', async () => {
    const file = qcow2('1M', (f) => {
      qemuIo(f, 'w 0 64k');
      bitmapAdd(f, 'bitmap0');
      qemuIo(f, 'w 64k 64k', 'w -z 512k 64k');
    });
    const js = await expectSameAsLibnbd([
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', 'qemu:dirty-bitmap:bitmap0'],
      ['connect_systemd_socket_activation', ['qemu-nbd', '-f', 'qcow2', '-B', 'bitmap0', file]],
      ['get_size'],
      ['block_status', 1048576, 0, { $fn: 'extent' }],
      ['block_status', 1048576, 0, { $fn: 'extent' }, CMD_FLAG_REQ_ONE],
      ['block_status', 1048576, 0, { $fn: 'extent', ret: -1, set: EPROTO }],
      ['aio_is_ready'],
      ['pread', { $read: 1 }, 0],
      ['shutdown'],
    ]);
    expect(new Set(js.calls.map((c) => c[2]))).toEqual(new Set([CONTEXT_BASE_ALLOCATION, 'qemu:dirty-bitmap:bitmap0']));
  });

  test('a 5G image: blockStatus64 and blockStatus over the whole export (extents past 4G) as libnbd reports them', async () => {
    const file = qcow2('5G', (f) => {
      bitmapAdd(f, 'bitmap0');
      qemuIo(f, `w -z ${5 * 1024 * 1024 * 1024 - 64 * 1024} 64k`);
      execFileSync('qemu-img', ['bitmap', '--disable', '-f', 'qcow2', f, 'bitmap0']);
      qemuIo(f, 'w 0 64k');
    });
    await expectSameAsLibnbd([
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', 'qemu:dirty-bitmap:bitmap0'],
      ['connect_systemd_socket_activation', ['qemu-nbd', '-f', 'qcow2', '-B', 'bitmap0', file]],
      ['get_size'],
      ['get_extended_headers_negotiated'],
      ['block_status_64', 5 * 1024 * 1024 * 1024, 0, { $fn: 'extent64' }],
      ['block_status', 5 * 1024 * 1024 * 1024, 0, { $fn: 'extent' }],
      ['shutdown'],
    ]);
  });

  test('without extended headers, canBlockStatusPayload is false and blockStatusFilter is refused (block-status-payload)', async () => {
    const file = qcow2('1M', (f) => {
      bitmapAdd(f, 'bitmap0');
      bitmapAdd(f, 'bitmap1');
    });
    const steps: Step[] = [
      ['set_request_extended_headers', false],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', 'qemu:allocation-depth'],
      ['add_meta_context', 'qemu:dirty-bitmap:bitmap0'],
      ['add_meta_context', 'qemu:dirty-bitmap:bitmap1'],
      ['set_opt_mode', true],
      ['connect_systemd_socket_activation', ['qemu-nbd', '-f', 'qcow2', '-A', '-B', 'bitmap0', '-B', 'bitmap1', file]],
      ['aio_is_negotiating'],
      ['get_extended_headers_negotiated'],
      ['can_block_status_payload'],
      ['opt_info'],
      ['can_block_status_payload'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_go'],
      ['can_block_status_payload'],
      ['block_status_filter', 0, 512, [CONTEXT_BASE_ALLOCATION], { $fn: 'extent64' }],
      ['shutdown'],
    ];
    await expectSameAsLibnbd(steps);
  });
});
