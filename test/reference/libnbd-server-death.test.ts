// libnbd's server-death test replayed against this binding, and the same
// death met by the other forms of a command: each scenario run step by step
// through libnbd's Python binding and through this one, outcomes (cookies,
// peek, in-flight counts, errno and message) and completion calls compared.
// tests/server-death.c; the sync calls' failure when the server dies under
// them (what nbd_pread and nbd_opt_go report).
import { chmodSync } from 'node:fs';
import { tempFile } from '../helpers/servers';
import { expectSameAsLibnbd, short, type Step } from '../helpers/replay';

/** An nbdkit sh plugin whose reads kill nbdkit itself (SIGKILL) mid-command. */
function suicidalReads(): string {
  const path = tempFile(
    'suicidal-reads.sh',
    `#!/bin/sh
case "$1" in
  get_size) echo 1M ;;
  can_write) exit 0 ;;
  pread) kill -9 $PPID; sleep 1 ;;
  pwrite) cat >/dev/null ;;
  *) exit 2 ;;
esac
`,
  );
  chmodSync(path, 0o755);
  return path;
}

test('a killed server with a read and an auto-retiring trim in flight: both complete ENOTCONN, peek and aioCommandCompleted answer as libnbd (server-death)', async () => {
  const steps: Step[] = [
    ['connect_command', { $nbdkit: ['--filter=delay', 'memory', 'size=1m', 'delay-read=15', 'delay-trim=15'] }],
    ['aio_pread', { $read: 512 }, 0],
    ['aio_trim', 512, 0, { $fn: 'completion', ret: 1 }],
    ['aio_peek_command_completed'],
    ['aio_command_completed', { $cookie: 1 }],
    ['kill_subprocess', 9],
    ['$drain'],
    ['$dead_or_closed'],
    ['aio_in_flight'],
    ['aio_peek_command_completed'],
    ['aio_command_completed', { $cookie: 1 }],
    ['aio_peek_command_completed'],
  ];
  const js = await expectSameAsLibnbd(steps);
  expect(js.outcomes[3]).toEqual(['ok', 0]);
  expect(js.outcomes[7]).toEqual(['ok', true]);
  expect(js.outcomes[9]).toEqual(js.outcomes[1]);
  expect(short(js.outcomes[10])).toEqual(['err', 'ENOTCONN']);
  expect(short(js.outcomes[11])).toEqual(['err', 'EINVAL']);
  expect(js.calls).toEqual([[2, 'completion', 107]]);
});

test('a read in flight when the server dies: aioCommandCompleted fails ENOTCONN with libnbd\'s message', async () => {
  const js = await expectSameAsLibnbd([
    ['connect_command', { $nbdkit: ['sh', suicidalReads()] }],
    ['aio_pread', { $read: 512 }, 0, { $fn: 'completion' }],
    ['$wait', 1],
    ['$dead_or_closed'],
    ['aio_in_flight'],
    ['pread', { $read: 512 }, 0],
  ]);
  expect(short(js.outcomes[2])).toEqual(['err', 'ENOTCONN']);
});

test('a server killed while the handle is idle: once the handle has seen it, the state and a write\'s refusal are libnbd\'s', async () => {
  const js = await expectSameAsLibnbd([
    ['connect_command', { $nbdkit: ['memory', 'size=1m'] }],
    ['kill_subprocess', 9],
    ['$dead_or_closed'],
    ['aio_is_closed'],
    ['aio_in_flight'],
    ['aio_pwrite', { $write: 512 }, 0],
    ['pread', { $read: 512 }, 0],
  ]);
  expect(js.outcomes[2]).toEqual(['ok', true]);
});

test.each([
  ['pread', ['pread', { $read: 512 }, 0]],
  ['pread_structured', ['pread_structured', { $read: 512 }, 0, { $fn: 'chunk' }]],
])('%s (the Promise form) on a server that dies serving it fails as the sync call fails, and the state is libnbd\'s', async (_, call) => {
  const js = await expectSameAsLibnbd([['connect_command', { $nbdkit: ['sh', suicidalReads()] }], call as Step, ['aio_is_dead'], ['aio_is_closed']]);
  expect(js.outcomes[1][0]).toBe('err');
});
