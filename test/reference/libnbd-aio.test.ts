// What libnbd's tests do with the aio calls' bookkeeping, replayed against
// this binding and compared with libnbd's Python binding: cookies,
// aio_peek_command_completed's order, aio_in_flight with a disconnect
// queued, retiring twice, auto-retire of a failed command (server-death.c,
// shutdown-flags.c and errors-multiple-disconnects.c lean on these), the aio
// option calls' completions (opt-*.c's aio forms), and the aio_is_* states
// and connection_state through a connection's life.
import { expectSameAsLibnbd, short, type Step } from '../helpers/replay';

const memory = { $nbdkit: ['memory', '1M'] };
// One server thread: replies in request order, so that the order in which
// commands complete (what aio_peek_command_completed gives) is the same for
// both clients.
const inOrder = { $nbdkit: ['--threads=1', 'memory', '1M'] };

test('three reads completed and not retired: peek gives the oldest each time, aioCommandCompleted retires each once', async () => {
  const js = await expectSameAsLibnbd([
    ['connect_command', inOrder],
    ['aio_pread', { $read: 512 }, 0],
    ['aio_pread', { $read: 512 }, 512],
    ['aio_pread', { $read: 512 }, 1024],
    ['$drain'],
    ['aio_in_flight'],
    ['aio_peek_command_completed'],
    ['aio_command_completed', { $cookie: 1 }],
    ['aio_command_completed', { $cookie: 1 }],
    ['aio_peek_command_completed'],
    ['aio_command_completed', { $cookie: 2 }],
    ['aio_peek_command_completed'],
    ['aio_command_completed', { $cookie: 3 }],
    ['aio_peek_command_completed'],
  ]);
  expect(js.outcomes[6]).toEqual(js.outcomes[1]);
  expect(short(js.outcomes[13])).toEqual(['err', 'EINVAL']);
});

test('a failed command whose completion returns 1 is retired with its error: aioCommandCompleted is false, nothing to peek', async () => {
  await expectSameAsLibnbd([
    ['connect_command', { $nbdkit: ['--filter=error', 'memory', '1M', 'error=EIO', 'error-pread-rate=100%'] }],
    ['aio_pread', { $read: 512 }, 0, { $fn: 'completion', ret: 1 }],
    ['$drain'],
    ['aio_command_completed', { $cookie: 1 }],
    ['aio_peek_command_completed'],
    ['aio_in_flight'],
  ]);
});

test('a failed command without auto-retire: peek gives it, aioCommandCompleted throws the server\'s EIO once, then false', async () => {
  const js = await expectSameAsLibnbd([
    ['connect_command', { $nbdkit: ['--filter=error', 'memory', '1M', 'error=EIO', 'error-pread-rate=100%'] }],
    ['aio_pread', { $read: 512 }, 0, { $fn: 'completion' }],
    ['$drain'],
    ['aio_peek_command_completed'],
    ['aio_command_completed', { $cookie: 1 }],
    ['aio_command_completed', { $cookie: 1 }],
  ]);
  expect(short(js.outcomes[4])).toEqual(['err', 'EIO']);
});

test('aioInFlight counts a queued disconnect as libnbd does, and the state after it is libnbd\'s', async () => {
  await expectSameAsLibnbd([
    // The read sleeps in the plugin, not in the delay filter: nbdkit aborts a filter's
    // sleep as soon as NBD_CMD_DISC arrives and closes at once, and the thread driver
    // would then see CLOSED before the second aioPread. A plugin's sleep holds the
    // connection open for the whole second, as a C caller's race window would be.
    ['connect_command', { $nbdkit: ['eval', 'get_size=echo 1M', 'pread=sleep 1; head -c $3 /dev/zero'] }],
    ['aio_pread', { $read: 512 }, 0],
    ['aio_disconnect', 0],
    ['aio_in_flight'],
    ['aio_is_processing'],
    ['aio_pread', { $read: 512 }, 0],
    ['$wait', 1],
    ['$dead_or_closed'],
    ['aio_in_flight'],
    ['aio_is_closed'],
  ]);
});

test('aio option calls run their completion once with libnbd\'s errors: aioOptInfo of a missing export, aioOptList, aioOptGo', async () => {
  const steps: Step[] = [
    ['set_opt_mode', true],
    ['connect_command', { $nbdkit: ['--filter=exportname', 'memory', '1M', 'exportname-list=explicit', 'exportname=a', 'exportname-strict=true'] }],
    ['set_export_name', 'nope'],
    ['aio_opt_info', { $fn: 'completion' }],
    ['$settle'],
    ['aio_is_negotiating'],
    ['aio_opt_list', { $fn: 'list' }, { $fn: 'completion' }],
    ['$settle'],
    ['set_export_name', 'a'],
    ['aio_opt_go', { $fn: 'completion' }],
    ['$settle'],
    ['aio_is_ready'],
    ['get_size'],
  ];
  const js = await expectSameAsLibnbd(steps);
  expect(js.calls.filter((c) => c[1] === 'completion').length).toBe(3);
});

test('the aio_is_* states and connectionState through created, connected, processing, shut down', async () => {
  const states: Step[] = [
    ['aio_is_created'],
    ['aio_is_connecting'],
    ['aio_is_negotiating'],
    ['aio_is_ready'],
    ['aio_is_processing'],
    ['aio_is_dead'],
    ['aio_is_closed'],
    ['connection_state'],
  ];
  await expectSameAsLibnbd([
    ...states,
    ['set_opt_mode', true],
    ['connect_command', memory],
    ...states,
    ['opt_go'],
    ...states,
    ['shutdown'],
    ...states,
  ]);
});
