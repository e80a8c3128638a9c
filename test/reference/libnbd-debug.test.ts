// libnbd's debug-callback and statistics tests replayed against this
// binding, compared with libnbd's Python binding: python/t/600-debug-callback
// and 620-stats, tests/debug.c. The binding drives libnbd through its aio
// calls (nbd_aio_connect_command and nbd_aio_notify_read where a C program's
// nbd_connect_command polls), so the API names of the messages differ by
// design; what the state machine says, and in which order, must not.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { systemPython } from '../helpers/python';
import { connected, nbdkit } from '../helpers/servers';
import { expectSameAsLibnbd, replayBoth, type CallRecord, type Step } from '../helpers/replay';

/** The state machine's own messages: without the API entry/exit lines and nbd_poll's (which the binding never calls). */
function stateMachineMessages(calls: CallRecord[]): string[] {
  return calls
    .filter((c) => c[1] === 'debug')
    .map((c) => String(c[3]))
    .filter((m) => !/^(enter:|leave:|poll (start|end):)/.test(m));
}

test('connect, flush and shutdown: the state machine\'s debug messages are libnbd\'s, in its order (600-debug-callback)', async () => {
  const steps: Step[] = [['set_debug', true], ['set_debug_callback', { $fn: 'debug' }], ['connect_command', { $nbdkit: ['null'] }], ['flush'], ['shutdown']];
  const { js, py } = await replayBoth(steps);
  expect(js.outcomes).toEqual(py.outcomes);
  const messages = stateMachineMessages(js.calls);
  expect(messages).toEqual(stateMachineMessages(py.calls));
  expect(messages).toContain('negotiated structured replies on this connection');
  expect(messages[messages.length - 1]).toBe('closing handle');
});

test('a call\'s debug messages come before those of the reply it caused, flush after flush, whichever thread reads the reply', async () => {
  // The thread driver's I/O thread may read the reply before the JS thread
  // has published the messages of the call that sent the request.
  const h = await connected(nbdkit('memory', '1M'));
  const messages: string[] = [];
  h.setDebug(true);
  h.setDebugCallback((_context, message) => {
    messages.push(message);
    return 0;
  });
  const traces: string[][] = [];
  for (let i = 0; i < 1000; i++) {
    messages.length = 0;
    await h.flush();
    traces.push(messages.slice());
  }
  // libnbd 1.14 names the state machine's events; 1.22 says only enter and
  // leave of the API call at this level (its reply is read silently).
  const statesNamed = traces.some((t) => t.some((m) => m.startsWith('event CmdIssue')));
  const [first, second] = statesNamed ? ['event CmdIssue', 'event NotifyRead'] : ['enter:', 'leave:'];
  const outOfOrder = traces.flatMap((t, i) => {
    const a = t.findIndex((m) => m.startsWith(first));
    const b = t.findIndex((m) => m.startsWith(second));
    return a === -1 || b < a ? [i] : [];
  });
  expect(outOfOrder).toEqual([]);
});

test('option mode: optInfo, optList and optAbort make the state machine say what libnbd\'s does', async () => {
  const steps: Step[] = [
    ['set_debug', true],
    ['set_debug_callback', { $fn: 'debug' }],
    ['set_opt_mode', true],
    ['connect_command', { $nbdkit: ['--filter=exportname', 'null', 'exportname-list=explicit', 'exportname=a'] }],
    ['opt_list', { $fn: 'list' }],
    ['opt_info'],
    ['opt_abort'],
  ];
  const { js, py } = await replayBoth(steps);
  expect(stateMachineMessages(js.calls)).toEqual(stateMachineMessages(py.calls));
});

test('with debug off, the debug callback gets nothing, as libnbd (debug)', async () => {
  const js = await expectSameAsLibnbd([
    ['set_debug', false],
    ['set_debug_callback', { $fn: 'debug' }],
    ['connect_command', { $nbdkit: ['null'] }],
    ['flush'],
    ['shutdown'],
  ]);
  expect(js.calls).toEqual([]);
});

test('stats count 0 before connecting, grow with the handshake, by 28 and 16 bytes (one message each way) for a flush, and one more message for shutdown (620-stats)', async () => {
  const stats: Step[] = [['stats_bytes_sent'], ['stats_chunks_sent'], ['stats_bytes_received'], ['stats_chunks_received']];
  const js = await expectSameAsLibnbd([...stats, ['connect_command', { $nbdkit: ['null'] }], ...stats, ['flush'], ...stats, ['shutdown'], ...stats]);
  if (js.outcomes[0][0] === 'missing') return; // libnbd < 1.16: no stats, on both sides (compared above)
  const at = (i: number) => js.outcomes.slice(i, i + 4).map((o) => o[1] as number);
  const [before, connected, flushed] = [at(0), at(5), at(10)];
  expect(before).toEqual([0, 0, 0, 0]);
  expect(flushed[0] - connected[0]).toBe(28);
  expect(flushed[1] - connected[1]).toBe(1);
  expect(flushed[2] - connected[2]).toBe(16);
  expect(flushed[3] - connected[3]).toBe(1);
});

describe('debug messages of the binding\'s own making: none', () => {
  test('with debug on and no debug callback, stderr gets the messages of the program\'s calls only, none of the binding\'s own state queries, as a C program\'s', async () => {
    const argv = JSON.stringify(['nbdkit', '-s', '--exit-with-parent', 'null']);
    const py = await debugApisOnStderr(systemPython, [
      '-c',
      `import nbd\nh = nbd.NBD()\nh.set_debug(True)\nh.connect_command(${argv})\nh.flush()\nh.shutdown()\ndel h`,
    ]);
    const js = await debugApisOnStderr(process.execPath, [
      '-e',
      `const { Handle } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'lib'))});
  (async () => { const h = new Handle(); h.setDebug(true); await h.connectCommand(${argv}); await h.flush(); await h.shutdown(); h.close(); })();`,
    ]);
    // The aio calls the binding makes where the sync calls poll: the same messages under their names.
    const driving = ['nbd_aio_connect_command', 'nbd_aio_notify_read', 'nbd_aio_notify_write', 'nbd_aio_flush', 'nbd_aio_disconnect'];
    expect(py).toEqual(expect.arrayContaining(['nbd_set_debug', 'nbd_flush', 'nbd_shutdown']));
    expect(js.filter((api) => !py.includes(api) && !driving.includes(api))).toEqual([]);
  });

  test('shutdown() hands the debug callback no message of a call nbd_shutdown does not make (nbd_aio_is_negotiating)', async () => {
    const { js, py } = await replayBoth([
      ['set_debug_callback', { $fn: 'debug' }],
      ['connect_command', { $nbdkit: ['null'] }],
      ['set_debug', true],
      ['shutdown'],
    ]);
    const contexts = (t: typeof js) => [...new Set(t.calls.map((c) => c[2]))].sort();
    expect(contexts(py)).not.toContain('nbd_aio_is_negotiating');
    // The binding drives libnbd through nbd_aio_disconnect and nbd_aio_notify_read where nbd_shutdown polls.
    expect(contexts(js).filter((c) => !['nbd_aio_disconnect', 'nbd_aio_notify_read', 'nbd_close'].includes(c as string))).toEqual(
      contexts(py).filter((c) => !['nbd_shutdown', 'nbd_close'].includes(c as string)),
    );
  });
});

/** The API names of the "libnbd: debug: HANDLE: API: ..." lines a child process wrote to stderr. */
function debugApisOnStderr(cmd: string, args: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30000 }, (err, _stdout, stderr) => {
      if (err) return reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`));
      const apis = new Set<string>();
      for (const m of stderr.matchAll(/^libnbd: debug: [^:]+: (nbd_[a-z0-9_]+): /gm)) apis.add(m[1]);
      resolve([...apis].sort());
    });
  });
}
