// libnbd's connect tests replayed against this binding, each scenario run
// step by step through libnbd's Python binding and through this one, the
// outcomes (values, getUri's answer, errno and message) compared:
// tests/connect-unix.c, connect-tcp.c, connect-tcp6.c, connect-uri.c (the
// nbd://, nbd+unix:// and NBD+UNIX:// forms, nbds:// with a PSK file),
// aio-connect.c, connect-systemd-socket-activation.c,
// socket-activation-name.c, get-subprocess-pid.c, python/t/200; and the
// failures of each form (a refused or missing socket, URIs libnbd rejects).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { spawnServer, startNbdkit, startNbdkitTcp, tempDir, tempFile } from '../helpers/servers';
import { expectSameAsLibnbd, freePort, short, type Step } from '../helpers/replay';
import { waitFor } from '../helpers/wait';

/** Resolves once something accepts TCP connections on [::1]:port. */
async function untilListeningV6(port: number): Promise<void> {
  let up = false;
  await waitFor(() => {
    const s = netConnect({ host: '::1', port });
    s.once('connect', () => {
      up = true;
      s.destroy();
    });
    s.once('error', () => s.destroy());
    return up;
  }, `a server on [::1]:${port}`);
}

describe('connect-unix', () => {
  test('connectUnix, then getUri is nbd+unix:///?socket=PATH, then shutdown', async () => {
    const srv = await startNbdkit('null');
    const js = await expectSameAsLibnbd([['connect_unix', srv.socket], ['get_uri'], ['aio_is_ready'], ['shutdown'], ['aio_is_closed']]);
    expect(js.outcomes[1]).toEqual(['ok', `nbd+unix:///?socket=${srv.socket}`]);
  });

  test('connectUnix to a path where nothing listens fails as libnbd fails it, and the handle is dead', async () => {
    const missing = join(tempDir(), 'nothing-here.sock');
    const js = await expectSameAsLibnbd([['connect_unix', missing], ['aio_is_dead'], ['aio_is_created'], ['get_size']]);
    expect(short(js.outcomes[0])).toEqual(['err', 'ENOENT']);
  });
});

describe('connect-tcp', () => {
  test('connectTcp("localhost", port), then getUri is nbd://localhost:PORT/', async () => {
    const port = await freePort();
    await startNbdkitTcp(String(port), 'null');
    const js = await expectSameAsLibnbd([['connect_tcp', 'localhost', String(port)], ['get_uri'], ['shutdown']]);
    expect(js.outcomes[1]).toEqual(['ok', `nbd://localhost:${port}/`]);
  });

  test('connectTcp to a port where nothing listens fails ECONNREFUSED with libnbd\'s message', async () => {
    const port = await freePort();
    const js = await expectSameAsLibnbd([['connect_tcp', '127.0.0.1', String(port)], ['aio_is_dead']]);
    expect(short(js.outcomes[0])).toEqual(['err', 'ECONNREFUSED']);
  });

  test('connectUri("nbd://[::1]:PORT/") over IPv6, and getUri gives the same URI back (connect-tcp6)', async () => {
    const port = await freePort();
    spawnServer('nbdkit', ['-f', '--exit-with-parent', '-p', String(port), 'null']);
    await untilListeningV6(port);
    const uri = `nbd://[::1]:${port}/`;
    const js = await expectSameAsLibnbd([['connect_uri', uri], ['get_uri'], ['shutdown']]);
    expect(js.outcomes[1]).toEqual(['ok', uri]);
  });

  test('aioConnectTcp, then polling until ready (aio-connect)', async () => {
    const port = await freePort();
    await startNbdkitTcp(String(port), 'null');
    const js = await expectSameAsLibnbd([
      ['aio_connect_tcp', '127.0.0.1', String(port)],
      ['aio_is_created'],
      ['$until', 'aio_is_ready'],
      ['get_uri'],
      ['shutdown'],
    ]);
    expect(js.outcomes[3]).toEqual(['ok', `nbd://127.0.0.1:${port}/`]);
  });
});

describe('connect-uri', () => {
  test('nbd://localhost:PORT/ connects; isUri (1.22) and getUri answer as libnbd', async () => {
    const port = await freePort();
    await startNbdkitTcp(String(port), 'null');
    const uri = `nbd://localhost:${port}/`;
    const js = await expectSameAsLibnbd([['is_uri', uri], ['connect_uri', uri], ['get_uri'], ['get_tls_negotiated'], ['shutdown']]);
    expect(js.outcomes[2]).toEqual(['ok', uri]);
  });

  test('nbd+unix:///?socket=PATH connects and getUri gives it back', async () => {
    const srv = await startNbdkit('null');
    const uri = `nbd+unix:///?socket=${srv.socket}`;
    const js = await expectSameAsLibnbd([['connect_uri', uri], ['get_uri'], ['shutdown']]);
    expect(js.outcomes[1]).toEqual(['ok', uri]);
  });

  test('the upper-case spelling NBD+UNIX:///?SOCKET=PATH is taken or refused as libnbd decides (1.22 takes it)', async () => {
    const srv = await startNbdkit('null');
    await expectSameAsLibnbd([['connect_uri', `NBD+UNIX:///?SOCKET=${srv.socket}`], ['get_uri'], ['aio_is_ready']]);
  });

  test('nbds://alice@localhost:PORT/?tls-psk-file=FILE negotiates TLS with a PSK (connect-uri-nbds-psk)', async () => {
    const psk = tempFile('keys.psk', `alice:${randomBytes(32).toString('hex')}\n`);
    const port = await freePort();
    await startNbdkitTcp(String(port), '--tls=require', '--tls-verify-peer', `--tls-psk=${psk}`, 'null');
    const uri = `nbds://alice@localhost:${port}/?tls-psk-file=${psk}`;
    const js = await expectSameAsLibnbd([['set_uri_allow_local_file', true], ['connect_uri', uri], ['get_tls_negotiated'], ['get_uri'], ['shutdown']]);
    expect(js.outcomes[2]).toEqual(['ok', true]);
  });

  test('nbds+unix://alice@/?tls-psk-file=FILE&socket=PATH negotiates TLS (connect-uri-nbds-unix-psk)', async () => {
    const psk = tempFile('keys.psk', `alice:${randomBytes(32).toString('hex')}\n`);
    const srv = await startNbdkit('--tls=require', '--tls-verify-peer', `--tls-psk=${psk}`, 'null');
    const uri = `nbds+unix://alice@/?tls-psk-file=${psk}&socket=${srv.socket}`;
    const js = await expectSameAsLibnbd([['set_uri_allow_local_file', true], ['connect_uri', uri], ['get_tls_negotiated'], ['get_uri'], ['shutdown']]);
    expect(js.outcomes[2]).toEqual(['ok', true]);
  });

  test('without setUriAllowLocalFile, a tls-psk-file= URI is refused as libnbd refuses it', async () => {
    const psk = tempFile('keys.psk', `alice:${randomBytes(32).toString('hex')}\n`);
    const srv = await startNbdkit('--tls=require', `--tls-psk=${psk}`, 'null');
    const js = await expectSameAsLibnbd([['connect_uri', `nbds+unix://alice@/?tls-psk-file=${psk}&socket=${srv.socket}`], ['aio_is_created']]);
    expect(short(js.outcomes[0])).toEqual(['err', 'EPERM']);
  });

  // URIs libnbd refuses before connecting (or cannot connect to), each on a new handle.
  const bad = [
    'http://localhost/',
    'nbd+unix:///',
    'nbd+unix://localhost/?socket=/x',
    'nbd://localhost:notaport/',
    'nbd://[::1/',
    'nbd+unix:///?socket=/nonexistent/socket',
    'nbd+vsock:///',
    'nbd://localhost/?tls-certificates=/x',
    'nbd+unix:///export?socket=/nonexistent&socket=/again',
    '',
    'not a uri',
  ];
  test.each(bad)('connectUri(%j) fails as libnbd fails it, the handle left as libnbd leaves it', async (uri) => {
    const js = await expectSameAsLibnbd([['is_uri', uri], ['connect_uri', uri], ['aio_is_created'], ['aio_is_dead']]);
    expect(js.outcomes[1][0]).toBe('err');
  });
});

describe('URIs with export names that need quoting (info-uri-quoting)', () => {
  test.each(['%%', 'hello world', 'リソース', 'a/b?c&d=e#f'])('export %j: connectUri with the name percent-encoded, getExportName and getUri as libnbd', async (name) => {
    const dir = tempDir();
    writeFileSync(join(dir, name.replace(/\//g, '_')), Buffer.alloc(512));
    const srv = await startNbdkit('-r', 'file', `dir=${dir}`);
    const exportName = name.replace(/\//g, '_');
    const js = await expectSameAsLibnbd([
      ['connect_uri', `nbd+unix:///${encodeURIComponent(exportName)}?socket=${srv.socket}`],
      ['get_export_name'],
      ['get_uri'],
      ['get_size'],
    ]);
    expect(js.outcomes[1]).toEqual(['ok', exportName]);
  });

  test('setExportName with characters to quote, connectUnix: getUri quotes them as libnbd does', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'hello world'), Buffer.alloc(512));
    const srv = await startNbdkit('-r', 'file', `dir=${dir}`);
    await expectSameAsLibnbd([['set_export_name', 'hello world'], ['connect_unix', srv.socket], ['get_uri']]);
  });
});

describe('connect-command and socket activation', () => {
  test('connectCommand to nbdkit -s null: ready, size and protocol as libnbd sees them (200-connect-command)', async () => {
    await expectSameAsLibnbd([['connect_command', { $nbdkit: ['null', 'size=1M'] }], ['aio_is_ready'], ['get_size'], ['get_protocol'], ['shutdown']]);
  });

  test('connectCommand of a program that exits at once fails as libnbd fails it', async () => {
    const js = await expectSameAsLibnbd([['connect_command', ['false']], ['aio_is_dead']]);
    expect(js.outcomes[0][0]).toBe('err');
  });

  test('connectSystemdSocketActivation to nbdkit: the size of its export (connect-systemd-socket-activation)', async () => {
    const js = await expectSameAsLibnbd([
      ['connect_systemd_socket_activation', ['nbdkit', '--exit-with-parent', 'null', '1024']],
      ['get_size'],
      ['shutdown'],
    ]);
    expect(js.outcomes[1]).toEqual(['ok', 1024]);
  });

  test('getSocketActivationName defaults to "" and takes a name (socket-activation-name)', async () => {
    await expectSameAsLibnbd([['get_socket_activation_name'], ['set_socket_activation_name', 'hello'], ['get_socket_activation_name']]);
  });

  test('getSubprocessPid after connectCommand is a pid, before it fails as libnbd (get-subprocess-pid)', async () => {
    const steps: Step[] = [['get_subprocess_pid'], ['connect_command', { $nbdkit: ['memory', 'size=1m'] }]];
    await expectSameAsLibnbd(steps);
  });
});

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
