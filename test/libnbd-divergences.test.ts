// Where this binding does not do what libnbd does: each test states C's
// behaviour (libnbd's answer through its Python binding on the same machine)
// and fails until the binding is fixed. Found by replaying libnbd's own
// tests (test/libnbd-*.test.ts), whose scenarios compare loosely only what
// these state:
// - optGo/optInfo resolve with 0 (lib/handle.ts _promiseOpt resolves every
//   option's Promise with its closure-call count);
// - option failures are worded after the API name ("opt_list request")
//   where nbd_opt_list says "list request" and the meta context options
//   "meta context request" ("list meta context request" before 1.16);
// - optGo on a connection that dies rejects ENOTCONN "server replied with
//   error" where nbd_opt_go reports the state machine's failure;
// - shutdown() calls the logging aioIsNegotiating(), a debug message for a
//   call nbd_shutdown does not make;
// - with debug on and no debug callback, libnbd writes the binding's own
//   state queries (native/quiet.h) to stderr: only the binding's debug
//   callback drops them;
// - aioConnectCommand([]) is queued (connecting) where C refuses it at once.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { CONTEXT_BASE_ALLOCATION } from '../lib';
import { systemPython } from './helpers/python';
import { sparseFile, startQemuNbd } from './helpers/servers';
import { expectSameAsLibnbd, replayBoth, type Step } from './helpers/replay';

describe('option negotiation', () => {
  test('optGo and optInfo resolve with nothing, as nbd_opt_go and nbd_opt_info return no value', async () => {
    const js = await expectSameAsLibnbd([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['memory', '1M'] }],
      ['opt_info'],
      ['opt_go'],
    ]);
    expect(js.outcomes.slice(2)).toEqual([
      ['ok', null],
      ['ok', null],
    ]);
  });

  test('a failed optList says "server replied with error to list request", nbd_opt_list\'s words', async () => {
    await expectSameAsLibnbd([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['eval', 'get_size=echo 512', 'list_exports=echo "EINVAL listing refused" >&2; exit 1'] }],
      ['opt_list', { $fn: 'list' }],
    ]);
  });

  test('a meta context option the server refuses fails with libnbd\'s words ("list meta context request" before 1.16, "meta context request" since)', async () => {
    const srv = await startQemuNbd(sparseFile(65536, []), '-x', 'disk1');
    const steps: Step[] = [
      ['set_opt_mode', true],
      ['set_export_name', 'nope'],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_unix', srv.socket],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['opt_list_meta_context_queries', [CONTEXT_BASE_ALLOCATION], { $fn: 'context' }],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['opt_set_meta_context_queries', [CONTEXT_BASE_ALLOCATION], { $fn: 'context' }],
    ];
    const js = await expectSameAsLibnbd(steps);
    expect(js.outcomes[4][0]).toBe('err');
  });

  test('optGo whose server hangs up (a non-fixed-newstyle server refusing the export) fails with the failure libnbd saw, not ENOTCONN "server replied with error"', async () => {
    await expectSameAsLibnbd([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['--mask-handshake', '0', 'eval', 'get_size=echo 512', 'open=[ "$3" = a ] || exit 1'] }],
      ['set_export_name', 'b'],
      ['opt_go'],
      ['aio_is_dead'],
    ]);
  });
});

describe('debug messages', () => {
  test('with debug on and no debug callback, stderr gets the messages of the program\'s calls only, none of the binding\'s own state queries, as a C program\'s', async () => {
    const argv = JSON.stringify(['nbdkit', '-s', '--exit-with-parent', 'null']);
    const py = await debugApisOnStderr(systemPython, [
      '-c',
      `import nbd\nh = nbd.NBD()\nh.set_debug(True)\nh.connect_command(${argv})\nh.flush()\nh.shutdown()\ndel h`,
    ]);
    const js = await debugApisOnStderr(process.execPath, [
      '-e',
      `const { Handle } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'lib'))});
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

describe('aio connects', () => {
  test('aioConnectCommand([]) fails EINVAL at once and leaves the handle created, so that another connect can follow, as nbd_aio_connect_command', async () => {
    const js = await expectSameAsLibnbd([
      ['aio_connect_command', []],
      ['aio_is_created'],
      ['aio_is_connecting'],
      ['aio_connect_command', { $nbdkit: ['null'] }],
      ['$settle'],
      ['aio_is_ready'],
    ]);
    expect(js.outcomes[0][0]).toBe('err');
    expect(js.outcomes[5]).toEqual(['ok', true]);
  });
});
