// libnbd's own tests of a handle's defaults and settings, replayed against
// this binding and compared with libnbd's answer through its Python binding
// on the same machine: python/t/100-handle, 105-with-handle, 110-defaults,
// 120-set-non-defaults; tests/debug.c, debug-environment.c, export-name.c,
// errors-enum.c, errors-bitmask.c, errors-name-too-long.c, get-version.c.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Handle, HANDSHAKE_FLAG_MASK, TLS_ALLOW, TLS_DISABLE, TLS_REQUIRE, getPackageName, getVersion } from '../../lib';
import { python } from '../helpers/outcome';
import { systemPython } from '../helpers/python';
import { labelled, replayBoth, type Step } from '../helpers/replay';

/** Every getter 110-defaults asks, plus the others a fresh handle answers. */
const DEFAULT_GETTERS: Step[] = [
  ['get_export_name'],
  ['get_full_info'],
  ['get_tls'],
  ['get_request_extended_headers'],
  ['get_request_structured_replies'],
  ['get_request_meta_context'],
  ['get_request_block_size'],
  ['get_pread_initialize'],
  ['get_handshake_flags'],
  ['get_opt_mode'],
  ['get_strict_mode'],
  ['get_debug'],
  ['get_nr_meta_contexts'],
  ['get_tls_verify_peer'],
  ['get_tls_username'],
  ['get_socket_activation_name'],
  ['get_tls_hostname'],
  ['get_protocol'],
  ['get_size'],
  ['get_uri'],
  ['aio_is_created'],
  ['aio_is_connecting'],
  ['connection_state'],
];

test('a new handle answers every getter as libnbd does (110-defaults)', async () => {
  const { js, py } = await replayBoth(DEFAULT_GETTERS);
  expect(labelled(DEFAULT_GETTERS, js)).toEqual(labelled(DEFAULT_GETTERS, py));
  // What 110-defaults asserts, where the call exists.
  expect(js.outcomes[2]).toEqual(['ok', TLS_DISABLE]);
  expect(js.outcomes[8]).toEqual(['ok', HANDSHAKE_FLAG_MASK]);
  expect(js.outcomes[9]).toEqual(['ok', false]);
});

/** 120-set-non-defaults, each setter followed by its getter. */
const NON_DEFAULTS: Step[] = [
  ['set_export_name', 'name'],
  ['get_export_name'],
  ['set_full_info', true],
  ['get_full_info'],
  ['set_tls', TLS_ALLOW],
  ['get_tls'],
  ['set_request_extended_headers', false],
  ['get_request_extended_headers'],
  ['set_request_structured_replies', false],
  ['get_request_structured_replies'],
  ['set_request_meta_context', false],
  ['get_request_meta_context'],
  ['set_request_block_size', false],
  ['get_request_block_size'],
  ['set_pread_initialize', false],
  ['get_pread_initialize'],
  ['set_handshake_flags', 0],
  ['get_handshake_flags'],
  ['set_opt_mode', true],
  ['get_opt_mode'],
  ['set_handle_name', 'my handle'],
  ['get_handle_name'],
  ['set_tls_username', 'alice'],
  ['get_tls_username'],
  ['set_tls_verify_peer', false],
  ['get_tls_verify_peer'],
  ['set_socket_activation_name', 'hello'],
  ['get_socket_activation_name'],
  ['set_tls_hostname', 'example.com'],
  ['get_tls_hostname'],
];

test('every setter of 120-set-non-defaults takes and its getter gives back the value, as libnbd', async () => {
  const { js, py } = await replayBoth(NON_DEFAULTS);
  expect(labelled(NON_DEFAULTS, js)).toEqual(labelled(NON_DEFAULTS, py));
  expect(js.outcomes[1]).toEqual(['ok', 'name']);
  expect(js.outcomes[17]).toEqual(['ok', 0]);
});

test('setTls(TLS_REQUIRE + 1) fails with libnbd\'s EINVAL and message and leaves TLS_DISABLE (errors-enum)', async () => {
  const steps: Step[] = [['set_tls', TLS_REQUIRE + 1], ['get_tls']];
  const { js, py } = await replayBoth(steps);
  expect(js).toEqual(py);
  expect(js.outcomes[0][0]).toBe('err');
  expect(js.outcomes[0][1]).toBe('EINVAL');
  expect(js.outcomes[1]).toEqual(['ok', TLS_DISABLE]);
});

test('setHandshakeFlags(HANDSHAKE_FLAG_MASK + 1) fails EINVAL and the flags stay (errors-bitmask)', async () => {
  const steps: Step[] = [['set_handshake_flags', HANDSHAKE_FLAG_MASK + 1], ['get_handshake_flags']];
  const { js, py } = await replayBoth(steps);
  expect(js).toEqual(py);
  expect(js.outcomes[0].slice(0, 2)).toEqual(['err', 'EINVAL']);
  expect(js.outcomes[1]).toEqual(['ok', HANDSHAKE_FLAG_MASK]);
});

test('setStrictMode with a bit outside STRICT_MASK fails as libnbd fails it', async () => {
  const steps: Step[] = [['get_strict_mode'], ['set_strict_mode', 0x10000], ['get_strict_mode']];
  const { js, py } = await replayBoth(steps);
  expect(js).toEqual(py);
  expect(js.outcomes[1][0]).toBe('err');
});

test('an export name of 4999 bytes fails ENAMETOOLONG with libnbd\'s message (errors-name-too-long)', async () => {
  const steps: Step[] = [['set_export_name', 'a'.repeat(4999)], ['get_export_name']];
  const { js, py } = await replayBoth(steps);
  expect(js).toEqual(py);
  expect(js.outcomes[0].slice(0, 2)).toEqual(['err', 'ENAMETOOLONG']);
  expect(js.outcomes[1]).toEqual(['ok', '']);
});

test('export names "/", "123" and "" round-trip (export-name)', async () => {
  const steps: Step[] = ['/', '123', ''].flatMap((n): Step[] => [['set_export_name', n], ['get_export_name']]);
  const { js, py } = await replayBoth(steps);
  expect(js).toEqual(py);
  expect(js.outcomes.filter((_, i) => i % 2 === 1)).toEqual([['ok', '/'], ['ok', '123'], ['ok', '']]);
});

test('setDebug(true) then setDebug(false): getDebug follows (debug)', async () => {
  const steps: Step[] = [['set_debug_callback', { $fn: 'debug' }], ['set_debug', true], ['get_debug'], ['set_debug', false], ['get_debug']];
  const { js, py } = await replayBoth(steps);
  expect(js.outcomes).toEqual(py.outcomes);
  expect(js.outcomes[2]).toEqual(['ok', true]);
  expect(js.outcomes[4]).toEqual(['ok', false]);
});

test('a new handle\'s name starts with "nbd" and differs from the previous handle\'s (105-with-handle)', async () => {
  const a = new Handle();
  const b = new Handle();
  try {
    const py = await python<string[]>('print(json.dumps([nbd.NBD().get_handle_name(), nbd.NBD().get_handle_name()]))');
    for (const name of [...py, a.getHandleName(), b.getHandleName()]) expect(name).toMatch(/^nbd\d+$/);
    expect(a.getHandleName()).not.toBe(b.getHandleName());
  } finally {
    a.close();
    b.close();
  }
});

test('getVersion and getPackageName are what libnbd reports (get-version)', async () => {
  const py = await python<[string, string]>('h = nbd.NBD()\nprint(json.dumps([h.get_package_name(), h.get_version()]))');
  expect([getPackageName(), getVersion()]).toEqual(py);
  expect(getPackageName()).toBe('libnbd');
});

/** getDebug() of a new handle in a process started with LIBNBD_DEBUG=value (unset when undefined). */
function debugDefault(which: 'node' | 'python', value: string | undefined): Promise<string> {
  const env = { ...process.env };
  delete env.LIBNBD_DEBUG;
  if (value !== undefined) env.LIBNBD_DEBUG = value;
  const [cmd, args] =
    which === 'node'
      ? [process.execPath, ['-e', `const { Handle } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'lib'))}); const h = new Handle(); h.setDebugCallback(() => 0); console.log(JSON.stringify(h.getDebug())); h.close();`]]
      : [systemPython, ['-c', 'import nbd, json\nh = nbd.NBD()\nh.set_debug_callback(lambda c, m: 0)\nprint(json.dumps(h.get_debug()))']];
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, encoding: 'utf8', timeout: 20000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`));
      else resolve(stdout.trim().split('\n').pop()!);
    });
  });
}

test('LIBNBD_DEBUG=1 makes new handles debug, "0", "" and unset do not (debug-environment)', async () => {
  const values = ['1', '0', '', undefined];
  const js: string[] = [];
  const py: string[] = [];
  for (const v of values) {
    js.push(await debugDefault('node', v));
    py.push(await debugDefault('python', v));
  }
  expect(js).toEqual(py);
  expect(js).toEqual(['true', 'false', 'false', 'false']);
});
