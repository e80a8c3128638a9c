// The families of libnbd calls beyond data commands: option negotiation (opt
// mode), TLS with pre-shared keys, URIs, connectSocket, the debug callback,
// killSubprocess, settings round trips, libnbd's enum/bitmask/name errors
// (tests/errors-*.c), disconnects, and the module functions. Where libnbd's
// behaviour is not obvious, the same scenario runs through libnbd's Python
// binding (python3-libnbd, /usr/bin/python3) and the outcomes are compared.
import { chmodSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  ALLOW_TRANSPORT_MASK,
  ALLOW_TRANSPORT_TCP,
  ALLOW_TRANSPORT_UNIX,
  HANDSHAKE_FLAG_FIXED_NEWSTYLE,
  HANDSHAKE_FLAG_MASK,
  HANDSHAKE_FLAG_NO_ZEROES,
  Handle,
  NbdError,
  SIZE_MAXIMUM,
  SIZE_MINIMUM,
  SIZE_PREFERRED,
  STRICT_BOUNDS,
  STRICT_MASK,
  STRICT_ZERO_SIZE,
  TLS_ALLOW,
  TLS_DISABLE,
  TLS_REQUIRE,
  getPackageName,
  getVersion,
  supportsTls,
  supportsUri,
  supportsVsock,
} from '../../lib';
import {
  connected,
  handle,
  nbdkit,
  startNbdkit,
  startQemuNbd,
  sparseFile,
  tempFile,
} from '../helpers/servers';
import { sleep, waitFor } from '../helpers/wait';
import { runPython } from '../helpers/python';
import { serverSocketFd, stopSocketFdServers } from '../helpers/socket-fd';
import { runNode } from '../helpers/node-child';
import { outcome, type Outcome } from '../helpers/outcome';

/** libnbd's minor version (1.x.y). */
const minor = Number(getVersion().split('.')[1]);

// ------------------------------------------------------------------ helpers

/** The NbdError a call threw or a Promise rejected with (fails the test if none). */
async function failure(f: () => unknown): Promise<NbdError> {
  let r: unknown;
  try {
    r = await f();
  } catch (e) {
    expect(e).toBeInstanceOf(NbdError);
    return e as NbdError;
  }
  throw new Error(`expected an NbdError, got the value ${String(r)}`);
}

const PY_PRELUDE = `
import nbd, errno, json, sys
def outcome(f):
    try:
        return ['ok', f()]
    except nbd.Error as e:
        return ['err', errno.errorcode.get(e.errnum, 'E%d' % e.errnum), e.string]
`;

/** Runs `script` (after PY_PRELUDE) with libnbd's Python binding; resolves with its last stdout line's JSON. */
const python = (script: string, ...args: string[]): Promise<any> => runPython(PY_PRELUDE + script, { args, timeoutMs: 20000 });

/** A message without libnbd's "<api>: " context (the binding may name the aio_ form of the call). */
const body = (message: string) => message.replace(/^nbd_\w+: /, '');

// ------------------------------------------------------------------ option negotiation

describe('option negotiation (opt mode)', () => {
  const exportnameFilter = [
    '--filter=exportname',
    'memory',
    'size=1M',
    'exportname=a',
    'exportname=b',
    'exportname-list=explicit',
    'exportdesc=fixed:hello',
  ];

  /** nbdkit eval: exports "small" (64K) and "big" (2M) with descriptions. */
  const twoExports = [
    'eval',
    "list_exports=printf 'INTERLEAVED\\nsmall\\nthe small one\\nbig\\nthe big one\\n'",
    'open=echo "$3"',
    'get_size=case $2 in small) echo 65536;; big) echo 2097152;; *) echo 512;; esac',
    'pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none',
    'export_description=echo "desc of $2"',
  ];

  async function negotiating(argv: string[]): Promise<Handle> {
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(argv);
    expect(h.aioIsNegotiating()).toBe(true);
    expect(h.connectionState()).toMatch(/^NEGOTIATING/);
    return h;
  }

  test('the first option command of a handle is issued like any other (it is not mistaken for a failure)', async () => {
    const h = await negotiating(nbdkit('memory', 'size=1M'));
    const first = await outcome(() => h.optListMetaContext(() => 0));
    expect(first).toEqual(['ok', 1]);
    await waitFor(() => h.aioIsNegotiating(), 'negotiating again');
    expect(await outcome(() => h.optListMetaContext(() => 0))).toEqual(['ok', 1]);
    await h.optGo();
    expect(h.aioIsReady()).toBe(true);
  });

  test('optList on the exportname filter: names and descriptions, resolves with the count, as Python sees it', async () => {
    const argv = nbdkit(...exportnameFilter);
    const h = await negotiating(argv);
    const seen: [string, string][] = [];
    const n = await h.optList((name, description) => {
      seen.push([name, description]);
    });
    expect(n).toBe(2);
    expect(seen).toEqual([
      ['a', 'hello'],
      ['b', 'hello'],
    ]);
    expect(h.aioIsNegotiating()).toBe(true); // still negotiating after a listing
    const py = await python(
      `
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(json.loads(sys.argv[1]))
seen = []
r = outcome(lambda: h.opt_list(lambda n, d: seen.append([n, d])))
print(json.dumps([r, seen]))`,
      JSON.stringify(argv),
    );
    expect(py).toEqual([['ok', n], seen]);
  });

  test('aioOptList: list callbacks, then the completion once with error 0', async () => {
    const h = await negotiating(nbdkit(...exportnameFilter));
    const events: string[] = [];
    await new Promise<void>((resolve) => {
      h.aioOptList(
        (name) => {
          events.push(`list ${name}`);
        },
        (err) => {
          events.push(`completion ${err.value}`);
          resolve();
          return 1;
        },
      );
    });
    await sleep(20);
    expect(events).toEqual(['list a', 'list b', 'completion 0']);
    expect(h.aioIsNegotiating()).toBe(true);
  });

  test('optList lists qemu-nbd\'s one export (-x NAME -D DESC) and optListMetaContext the contexts of the export named', async () => {
    const file = sparseFile(1024 * 1024, [[0, 4096]]);
    const srv = await startQemuNbd(file, '--shared=2', '-x', 'disk1', '-D', 'my disk');
    const h = handle();
    h.setOptMode(true);
    await h.connectUnix(srv.socket);
    const seen: [string, string][] = [];
    expect(await h.optList((n, d) => void seen.push([n, d]))).toBe(1);
    expect(seen).toEqual([['disk1', 'my disk']]);

    // Meta contexts of the default export "" (which qemu-nbd does not have):
    // the server's error; of disk1: base:allocation.
    const err = await failure(() => h.optListMetaContext(() => 0));
    expect(err.code).toBe('ENOTSUP');
    expect(h.aioIsNegotiating()).toBe(true);
    h.setExportName('disk1');
    const contexts: string[] = [];
    expect(await h.optListMetaContext((c) => void contexts.push(c))).toBe(contexts.length);
    expect(contexts).toContain('base:allocation');

    // An export that does not exist: the server's ENOENT in libnbd's words
    // (its Python binding's), still negotiating.
    h.setExportName('nope');
    const info = await failure(() => h.optInfo());
    const py = await python(`
h = nbd.NBD(); h.set_opt_mode(True); h.connect_unix(sys.argv[1]); h.set_export_name('nope')
print(json.dumps(outcome(h.opt_info)))`, srv.socket);
    expect(['err', info.code, info.message]).toEqual(py);
    expect(info.code).toBe('ENOENT');
    expect(h.aioIsNegotiating()).toBe(true);
    h.setExportName('disk1');
    await h.optGo();
    expect(h.aioIsReady()).toBe(true);
    expect(h.getSize()).toBe(1024 * 1024);
    const buf = Buffer.alloc(4096);
    await h.pread(buf, 0);
    expect(buf.every((b) => b === 0xab)).toBe(true);
  });

  test('optInfo after setExportName: size, canonical name and description of two exports in the negotiating state', async () => {
    const h = await negotiating(nbdkit(...twoExports));
    h.setFullInfo(true);
    const seen: [string, string][] = [];
    expect(await h.optList((n, d) => void seen.push([n, d]))).toBe(2);
    expect(seen).toEqual([
      ['small', 'the small one'],
      ['big', 'the big one'],
    ]);
    for (const [name, size] of [
      ['small', 65536],
      ['big', 2097152],
    ] as const) {
      h.setExportName(name);
      await h.optInfo();
      expect(h.aioIsNegotiating()).toBe(true);
      expect(h.getSize()).toBe(size);
      expect(h.getCanonicalExportName()).toBe(name);
      expect(h.getExportDescription()).toBe(`desc of ${name}`);
    }
    // Data commands need the transmission phase.
    const early = await failure(() => h.pread(Buffer.alloc(512), 0));
    expect(early.code).toBe('EINVAL');
    expect(early.message).toMatch(/invalid state: NEGOTIATING/);
    h.setExportName('small');
    await h.optGo();
    expect(h.aioIsReady()).toBe(true);
    expect(h.getSize()).toBe(65536);
    expect(h.getExportName()).toBe('small');
  });

  test('without setFullInfo nbdkit gives no description: libnbd\'s ENOTSUP', async () => {
    const h = await negotiating(nbdkit(...exportnameFilter));
    h.setExportName('a');
    await h.optInfo();
    expect(h.getSize()).toBe(1024 * 1024);
    expect((await failure(() => h.getExportDescription())).code).toBe('ENOTSUP');
    expect((await failure(() => h.getCanonicalExportName())).code).toBe('ENOTSUP');
  });

  test('optListMetaContext lists base:allocation; aioOptListMetaContext completes once', async () => {
    const h = await negotiating(nbdkit('memory', 'size=1M'));
    const contexts: string[] = [];
    expect(await h.optListMetaContext((c) => void contexts.push(c))).toBe(1);
    expect(contexts).toEqual(['base:allocation']);

    const events: string[] = [];
    await new Promise<void>((resolve) => {
      h.aioOptListMetaContext(
        (c) => void events.push(c),
        (err) => {
          events.push(`completion ${err.value}`);
          resolve();
          return 0;
        },
      );
    });
    expect(events).toEqual(['base:allocation', 'completion 0']);
  });

  test('optGo: the handle is ready and reads and writes work; aioOptGo completes once', async () => {
    const h = await negotiating(nbdkit('memory', 'size=1M'));
    h.addMetaContext('base:allocation');
    await h.optGo();
    expect(h.aioIsReady()).toBe(true);
    expect(h.aioIsNegotiating()).toBe(false);
    expect(h.canMetaContext('base:allocation')).toBe(true);
    const data = Buffer.alloc(4096, 0x5a);
    await h.pwrite(data, 8192);
    const back = Buffer.alloc(4096);
    await h.pread(back, 8192);
    expect(back.equals(data)).toBe(true);

    const h2 = await negotiating(nbdkit('memory', 'size=1M'));
    const errs: number[] = [];
    await new Promise<void>((resolve) =>
      h2.aioOptGo((err) => {
        errs.push(err.value);
        resolve();
        return 0;
      }),
    );
    await waitFor(() => h2.aioIsReady(), 'ready after aioOptGo');
    expect(errs).toEqual([0]);
    expect(h2.getSize()).toBe(1024 * 1024);
  });

  test('optAbort ends the connection: CLOSED, later data calls EINVAL', async () => {
    const h = await negotiating(nbdkit('memory', 'size=1M'));
    await h.optAbort();
    expect(h.aioIsClosed()).toBe(true);
    expect(h.connectionState()).toMatch(/^CLOSED/);
    const e = await failure(() => h.pread(Buffer.alloc(512), 0));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/invalid state: CLOSED/);

    const h2 = await negotiating(nbdkit('memory', 'size=1M'));
    h2.aioOptAbort();
    await waitFor(() => h2.aioIsClosed(), 'CLOSED after aioOptAbort');
  });

  test('opt calls outside negotiation: EINVAL when ready (errors-not-negotiating), ENOTCONN when created', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    expect(h.getOptMode()).toBe(false);
    for (const [name, call] of [
      ['opt_abort', () => h.optAbort()],
      ['opt_list', () => h.optList(() => 0)],
      ['opt_info', () => h.optInfo()],
      ['opt_go', () => h.optGo()],
      ['opt_list_meta_context', () => h.optListMetaContext(() => 0)],
      ['opt_abort', () => h.aioOptAbort()],
      ['opt_go', () => h.aioOptGo()],
    ] as const) {
      const e = await failure(call);
      expect([name, e.code]).toEqual([name, 'EINVAL']);
      expect(e.message).toMatch(new RegExp(`^nbd_(aio_)?${name}: invalid state: READY: the handle must be negotiating`));
    }
    expect(h.aioIsReady()).toBe(true); // nothing broke
    await h.pread(Buffer.alloc(512), 0);
    expect((await failure(() => h.setOptMode(true))).code).toBe('EINVAL');

    const c = handle();
    for (const call of [() => c.optAbort(), () => c.optList(() => 0), () => c.aioOptGo()]) {
      const e = await failure(call);
      expect(e.code).toBe('ENOTCONN');
      expect(e.message).toMatch(/invalid state: START/);
    }
  });
});

// ------------------------------------------------------------------ TLS with PSK

describe('TLS with pre-shared keys', () => {
  const hexKey = () => randomBytes(32).toString('hex');
  let psk: string;
  let wrong: string;
  let socket: string;

  beforeAll(async () => {
    psk = tempFile('keys.psk', `alice:${hexKey()}\n`);
    wrong = tempFile('wrong.psk', `alice:${hexKey()}\n`);
    const srv = await startNbdkit('--log=null', '--tls=require', `--tls-psk=${psk}`, 'memory', 'size=1M');
    socket = srv.socket;
  });

  function pskHandle(file = psk, user = 'alice', tls = TLS_REQUIRE): Handle {
    const h = handle();
    h.setTls(tls);
    h.setTlsPskFile(file);
    h.setTlsUsername(user);
    return h;
  }

  test('TLS_REQUIRE with the right key: negotiated, reads and writes work, getUri names it', async () => {
    const h = pskHandle();
    await h.connectUnix(socket);
    expect(h.getTlsNegotiated()).toBe(true);
    const data = Buffer.alloc(65536, 0x42);
    await h.pwrite(data, 4096);
    const back = Buffer.alloc(65536);
    await h.pread(back, 4096);
    expect(back.equals(data)).toBe(true);
    expect(h.getUri()).toBe(`nbds+unix://alice@/?socket=${socket}&tls-psk-file=${psk}`);
  });

  test('TLS_ALLOW with the key upgrades too', async () => {
    const h = pskHandle(psk, 'alice', TLS_ALLOW);
    await h.connectUnix(socket);
    expect(h.getTlsNegotiated()).toBe(true);
  });

  test('TLS_ALLOW against a server without TLS connects in the clear', async () => {
    const h = pskHandle(psk, 'alice', TLS_ALLOW);
    await h.connectCommand(nbdkit('memory', 'size=1M'));
    expect(h.getTlsNegotiated()).toBe(false);
    await h.pread(Buffer.alloc(512), 0);
  });

  test('without TLS the server refuses: libnbd\'s ENOTSUP, as Python', async () => {
    const h = handle();
    const e = await failure(() => h.connectUnix(socket));
    expect(e.code).toBe('ENOTSUP');
    expect(e.message).toMatch(/server requires TLS encryption first/);
    const py = await python(`
h = nbd.NBD()
print(json.dumps(outcome(lambda: h.connect_unix(sys.argv[1]))))`, socket);
    expect(py[1]).toBe('ENOTSUP');
    expect(body(e.message)).toBe(body(py[2]));
  });

  test('the wrong key fails the TLS handshake', async () => {
    const h = pskHandle(wrong);
    const e = await failure(() => h.connectUnix(socket));
    expect(e.message).toMatch(/gnutls_handshake/);
    expect(h.aioIsReady()).toBe(false);
    const py = await python(`
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_psk_file(sys.argv[2]); h.set_tls_username('alice')
print(json.dumps(outcome(lambda: h.connect_unix(sys.argv[1]))))`, socket, wrong);
    expect(py[0]).toBe('err');
    expect(body(e.message)).toBe(body(py[2]));
    // libnbd's nbd_get_errno() is 0 here, as Python's errnum is: kept, with
    // the code 'UNKNOWN' (an errno of 0 has no name).
    expect(e.errno).toBe(0);
    expect(e.code).toBe('UNKNOWN');
  });

  test('a user name that is not in the PSK file: EINVAL', async () => {
    const h = pskHandle(psk, 'bob');
    const e = await failure(() => h.connectUnix(socket));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('username bob was not found in PSK file');
  });

  test('nbds+unix URI with tls-psk-file: needs setUriAllowLocalFile(true)', async () => {
    const uri = `nbds+unix://alice@/?socket=${socket}&tls-psk-file=${psk}`;
    const refused = handle();
    const e = await failure(() => refused.connectUri(uri));
    expect(e.code).toBe('EPERM');
    expect(e.message).toMatch(/local file access \(tls-psk-file\) is not allowed/);
    expect(refused.aioIsCreated()).toBe(true);

    const h = handle();
    h.setUriAllowLocalFile(true);
    await h.connectUri(uri);
    expect(h.getTlsNegotiated()).toBe(true);
    expect(h.getTls()).toBe(TLS_REQUIRE);
    expect(h.getTlsUsername()).toBe('alice');
    expect(h.getUri()).toBe(uri);
    const back = Buffer.alloc(512, 1);
    await h.pread(back, 0);
  });

  test('a tls-username= query parameter: the same outcome as libnbd\'s Python binding', async () => {
    const uri = `nbds+unix:///?socket=${socket}&tls-psk-file=${psk}&tls-username=alice`;
    const h = handle();
    h.setUriAllowLocalFile(true);
    const js = await outcome(() => h.connectUri(uri));
    const py = await python(`
h = nbd.NBD(); h.set_uri_allow_local_file(True)
print(json.dumps(outcome(lambda: h.connect_uri(sys.argv[1]))))`, uri);
    expect(js[0]).toBe(py[0]);
    if (js[0] === 'err') {
      expect(js[1]).toBe(py[1]);
      expect(body(js[2])).toBe(body(py[2]));
    }
  });
});

// ------------------------------------------------------------------ URIs

describe('URIs', () => {
  let srv: Awaited<ReturnType<typeof startNbdkit>>;
  beforeAll(async () => {
    srv = await startNbdkit('--filter=exportname', 'memory', 'size=1M', 'exportname=a', 'exportname-list=explicit');
  });

  test('getUri after connecting by URI, by socket with an export name; ENOTCONN before connecting', async () => {
    const a = handle();
    await a.connectUri(`nbd+unix:///x?socket=${srv.socket}`);
    expect(a.getExportName()).toBe('x');
    expect(a.getUri()).toBe(`nbd+unix:///x?socket=${srv.socket}`);

    const b = handle();
    b.setExportName('b');
    await b.connectUnix(srv.socket);
    expect(b.getUri()).toBe(`nbd+unix:///b?socket=${srv.socket}`);

    const c = handle();
    const e = await failure(() => c.getUri());
    expect(e.code).toBe('ENOTCONN');
  });

  test('a connectCommand connection has no URI: EINVAL', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const e = await failure(() => h.getUri());
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/cannot construct a URI for this connection type/);
  });

  test('setUriAllowTransports(ALLOW_TRANSPORT_TCP) refuses nbd+unix: EPERM', async () => {
    const h = handle();
    h.setUriAllowTransports(ALLOW_TRANSPORT_TCP);
    const e = await failure(() => h.connectUri(srv.uri));
    expect(e.code).toBe('EPERM');
    expect(e.message).toMatch(/URI transport nbd\+unix is not permitted/);
    expect(h.aioIsCreated()).toBe(true);

    // The same handle, once UNIX is allowed again, connects.
    h.setUriAllowTransports(ALLOW_TRANSPORT_TCP | ALLOW_TRANSPORT_UNIX);
    await h.connectUri(srv.uri);
    expect(h.aioIsReady()).toBe(true);
  });

  test('setUriAllowTls: TLS_DISABLE refuses nbds://, TLS_REQUIRE refuses nbd:// (EPERM)', async () => {
    const h = handle();
    h.setUriAllowTls(TLS_DISABLE);
    const e = await failure(() => h.connectUri(`nbds+unix:///?socket=${srv.socket}`));
    expect(e.code).toBe('EPERM');
    expect(e.message).toMatch(/URI TLS setting nbds\+unix is not permitted/);

    const r = handle();
    r.setUriAllowTls(TLS_REQUIRE);
    const e2 = await failure(() => r.connectUri(srv.uri));
    expect(e2.code).toBe('EPERM');
    expect(e2.message).toMatch(/URI TLS setting nbd\+unix is not permitted/);
  });

  test('URI settings reject values outside libnbd\'s enum and mask (EINVAL)', async () => {
    const h = handle();
    const e = await failure(() => h.setUriAllowTransports(ALLOW_TRANSPORT_MASK + 1));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/^nbd_set_uri_allow_transports: mask: invalid value for flag/);
    const e2 = await failure(() => h.setUriAllowTls(7));
    expect(e2.code).toBe('EINVAL');
    expect(e2.message).toMatch(/^nbd_set_uri_allow_tls: tls: invalid value for parameter: 7/);
  });
});

// ------------------------------------------------------------------ connectSocket

describe('connectSocket', () => {
  afterAll(stopSocketFdServers);

  test('libnbd talks NBD over the fd; close() closes it and the server exits', async () => {
    const { fd, child } = await serverSocketFd('memory', 'size=1M');
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const h = new Handle();
    await h.connectSocket(fd);
    expect(h.aioIsReady()).toBe(true);
    expect(h.getSize()).toBe(1024 * 1024);
    expect(h.getProtocol()).toBe('newstyle-fixed');
    const data = Buffer.alloc(8192);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    await h.pwrite(data, 65536);
    const back = Buffer.alloc(8192);
    await h.pread(back, 65536);
    expect(back.equals(data)).toBe(true);
    expect((await failure(() => h.getUri())).code).toBe('EINVAL');
    await h.shutdown();
    expect(h.aioIsClosed()).toBe(true);
    h.close();
    expect(await exited).toBe(0);
  });

  test('several commands can be in flight over a socket fd', async () => {
    const { fd } = await serverSocketFd('pattern', 'size=1M');
    const h = handle();
    await h.connectSocket(fd);
    const bufs = Array.from({ length: 16 }, () => Buffer.alloc(4096));
    await Promise.all(bufs.map((b, i) => h.pread(b, i * 65536)));
    bufs.forEach((b, i) => expect(b.readBigUInt64BE(8)).toBe(BigInt(i * 65536 + 8)));
  });

  test('a bad fd is refused before C: RangeError', () => {
    const h = handle();
    expect(() => h.connectSocket(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(h.aioIsCreated()).toBe(true);
  });
});

// ------------------------------------------------------------------ debug callback

describe('debug callback', () => {
  test('setDebug + setDebugCallback: messages of the connect and of each call, in JS, before the call returns', async () => {
    const h = handle();
    const msgs: [string, string][] = [];
    h.setDebugCallback((context, message) => {
      expect(typeof context).toBe('string');
      expect(typeof message).toBe('string');
      msgs.push([context, message]);
    });
    expect(h.getDebug()).toBe(false);
    expect(msgs).toEqual([]); // nothing before debugging is on
    h.setDebug(true);
    expect(h.getDebug()).toBe(true);
    h.setHandleName('dbg');
    const argv = nbdkit('memory', 'size=1M');
    await h.connectCommand(argv);
    // The handshake's own messages (beside each call's enter/leave) are the
    // ones libnbd's Python binding collects for the same connect, apart from
    // its nbd_poll's: whatever this libnbd logs (1.14 logs each transition
    // of the state machine, 1.22 does not).
    const own = (m: string) => !/^(enter|leave):|^poll (start|end):/.test(m);
    const py: string[] = await python(`
h = nbd.NBD()
msgs = []
h.set_debug_callback(lambda context, message: msgs.append(message))
h.set_debug(True)
h.connect_command(sys.argv[1:])
print(json.dumps(msgs))`, ...argv);
    expect(py.filter(own).length).toBeGreaterThan(2);
    expect(msgs.map(([, m]) => m).filter(own)).toEqual(py.filter(own));
    expect(msgs.some(([c]) => /connect_command/.test(c))).toBe(true);
    // Messages produced while the driver runs libnbd's state machine (on the
    // I/O thread with the thread driver) reach JS too.
    expect(msgs.some(([c, m]) => c === 'nbd_aio_notify_read' && own(m))).toBe(true);

    // A getter made on the JS thread: its enter/leave messages are delivered
    // by the time it returns.
    let before = msgs.length;
    expect(h.getSize()).toBe(1024 * 1024);
    const sizeMsgs = msgs.slice(before).filter(([c]) => c === 'nbd_get_size');
    expect(sizeMsgs.length).toBeGreaterThan(0);
    expect(sizeMsgs[0][1]).toMatch(/enter/);

    // A command issued on the JS thread: "enter" by the time aioPread returns.
    before = msgs.length;
    let done = false;
    const cookie = h.aioPread(Buffer.alloc(512), 0, () => {
      done = true;
      return 1;
    });
    expect(cookie).toBeGreaterThanOrEqual(1);
    const readMsgs = msgs.slice(before).filter(([c]) => c === 'nbd_aio_pread');
    expect(readMsgs.length).toBeGreaterThan(0);
    expect(readMsgs[0][1]).toMatch(/enter:.*count=512/);
    await waitFor(() => done, 'the read');

    // A Promise-form read logs too.
    before = msgs.length;
    await h.pread(Buffer.alloc(512), 4096);
    expect(msgs.slice(before).some(([c]) => /pread/.test(c))).toBe(true);
  });

  test('close() hands the callback nbd_close\'s own last message, "closing handle", as libnbd\'s Python binding collects it', async () => {
    const argv = nbdkit('memory', 'size=1M');
    const py: [string, string][] = await python(`
h = nbd.NBD()
msgs = []
h.set_debug_callback(lambda context, message: msgs.append([context, message]))
h.set_debug(True)
h.connect_command(sys.argv[1:])
n = len(msgs)
del h  # nbd_close (h.close() is libnbd >= 1.16's)
print(json.dumps(msgs[n:]))`, ...argv);
    const h = await connected(argv);
    const msgs: [string, string][] = [];
    h.setDebugCallback((context, message) => void msgs.push([context, message]));
    h.setDebug(true);
    h.getSize();
    const n = msgs.length;
    h.close();
    expect(py).toEqual([['nbd_close', 'closing handle']]);
    expect(msgs.slice(n)).toEqual(py);
  });

  test('close() releases the debug callback and those of pending commands: they are collected while the Handle lives', async () => {
    const r = await runNode(['--expose-gc', join(__dirname, '..', 'fixtures', 'close-releases-callbacks.js')], { timeoutMs: 15000 });
    expect(r.lines).toEqual([{ collected: ['chunk', 'completion', 'debug'], handleClosed: true }]);
  });

  test('setDebug(false) stops the messages', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    const msgs: string[] = [];
    h.setDebugCallback((_c, m) => void msgs.push(m));
    h.setDebug(true);
    await h.pread(Buffer.alloc(512), 0);
    const n = msgs.length;
    expect(n).toBeGreaterThan(0);
    h.setDebug(false);
    await h.pread(Buffer.alloc(512), 0);
    h.getSize();
    await sleep(20);
    // set_debug(false) itself may log its own leave; nothing after it.
    const afterOff = msgs.length;
    expect(afterOff - n).toBeLessThanOrEqual(2);
    await h.pread(Buffer.alloc(512), 0);
    expect(msgs.length).toBe(afterOff);
  });

  test("clearDebugCallback stops delivery to JS: libnbd writes the messages to its stderr again", async () => {
    // In a child process, whose stderr is libnbd's and is kept here.
    const script = `
      const { Handle } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'lib'))});
      const h = new Handle();
      h.setHandleName('cleared');
      const msgs = [];
      h.setDebugCallback((context, m) => void msgs.push(context + ': ' + m));
      h.setDebug(true);
      h.getHandleName();
      h.clearDebugCallback();
      h.getExportName();
      h.setDebug(false);
      h.close();
      setTimeout(() => console.log(JSON.stringify({ msgs })), 20);`;
    const r = await runNode(['-e', script], { timeoutMs: 10000 });
    expect(r.code).toBe(0);
    expect(r.lines).toHaveLength(1);
    const msgs: string[] = r.lines[0].msgs;
    expect(msgs.some((m) => m.includes('nbd_get_handle_name'))).toBe(true);
    expect(msgs.filter((m) => m.includes('nbd_get_export_name'))).toEqual([]);
    expect(r.stderr).toMatch(/libnbd: debug: cleared: nbd_get_export_name/);
  });

  test('a debug callback that throws does not break the handle', async () => {
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const h = await connected(nbdkit('memory', 'size=1M'));
      let calls = 0;
      h.setDebugCallback(() => {
        calls++;
        throw new Error('debug boom');
      });
      h.setDebug(true);
      const data = Buffer.alloc(4096, 7);
      await h.pwrite(data, 0);
      const back = Buffer.alloc(4096);
      await h.pread(back, 0);
      expect(back.equals(data)).toBe(true);
      h.setDebug(false);
      expect(calls).toBeGreaterThan(0);
      expect(h.aioIsReady()).toBe(true);
      // The throws are not lost.
      expect(emitWarning.mock.calls.some((c) => String(c[0]).includes('debug boom'))).toBe(true);
    } finally {
      emitWarning.mockRestore();
    }
  });
});

// ------------------------------------------------------------------ killSubprocess

describe('killSubprocess', () => {
  test('killSubprocess(0) sends SIGTERM: pending reads fail (ENOTCONN, or nbdkit\'s ESHUTDOWN reply while it shuts down)', async () => {
    const h = await connected(nbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=5'));
    const reads = Array.from({ length: 4 }, (_, i) => outcome(() => h.pread(Buffer.alloc(512), i * 512)));
    h.killSubprocess(0);
    const results = await Promise.all(reads);
    // libnbd (checked with the Python binding) sees either: nbdkit, shutting
    // down, answers each read with ESHUTDOWN (errno 108) and the handle stays
    // READY; or the connection drops first, every read fails with ENOTCONN
    // and the handle is DEAD (or CLOSED).
    for (const r of results) {
      expect(r[0]).toBe('err');
      expect(['ENOTCONN', 'ESHUTDOWN', 'E108']).toContain(r[1]);
    }
    if (results.some((r) => r[1] === 'ENOTCONN')) expect(h.aioIsDead() || h.aioIsClosed()).toBe(true);
  });

  test('killSubprocess(9): every pending command fails with ENOTCONN, the handle is DEAD or CLOSED, later reads EINVAL', async () => {
    const h = await connected(nbdkit('--filter=delay', 'memory', 'size=1M', 'delay-read=5'));
    const reads = Array.from({ length: 4 }, (_, i) => outcome(() => h.pread(Buffer.alloc(512), i * 512)));
    h.killSubprocess(9);
    expect((await Promise.all(reads)).map((r) => r[1])).toEqual(['ENOTCONN', 'ENOTCONN', 'ENOTCONN', 'ENOTCONN']);
    await waitFor(() => h.aioIsDead() || h.aioIsClosed(), 'DEAD or CLOSED');
    expect(h.aioIsReady()).toBe(false);
    const later = await failure(() => h.pread(Buffer.alloc(512), 0));
    expect(later.code).toBe('EINVAL');
    expect(later.message).toMatch(/invalid state: (DEAD|CLOSED)/);
  });

  test('a server\'s ESHUTDOWN reply is named ESHUTDOWN, as Python\'s errno module names it', async () => {
    const argv = nbdkit('--filter=error', 'memory', 'size=1M', 'error-pread=ESHUTDOWN', 'error-pread-rate=1');
    const h = await connected(argv);
    const e = await failure(() => h.pread(Buffer.alloc(512), 0));
    const py = await python(`
h = nbd.NBD(); h.connect_command(json.loads(sys.argv[1]))
print(json.dumps(outcome(lambda: h.pread(512, 0))))`, JSON.stringify(argv));
    expect(e.errno).toBe(108);
    expect(e.code).toBe(py[1]);
    expect(e.code).toBe('ESHUTDOWN');
  });

  test('no subprocess: ESRCH; a bad signal: kill(2)\'s EINVAL (as libnbd)', async () => {
    const c = handle();
    const e = await failure(() => c.killSubprocess(0));
    expect(e.code).toBe('ESRCH');
    expect(e.message).toMatch(/^nbd_kill_subprocess: no subprocess exists/);
    const h = await connected(nbdkit('memory', 'size=1M'));
    const e2 = await failure(() => h.killSubprocess(99999));
    expect(e2.code).toBe('EINVAL');
    expect(e2.message).toMatch(/^nbd_kill_subprocess: kill: /);
    expect(h.aioIsReady()).toBe(true);
  });
});

// ------------------------------------------------------------------ settings

describe('settings: defaults and round trips', () => {
  test('the defaults of a new handle are libnbd\'s (compared with Python)', async () => {
    const h = handle();
    const js = {
      tls: h.getTls(),
      tlsVerifyPeer: h.getTlsVerifyPeer(),
      handshakeFlags: h.getHandshakeFlags(),
      requestStructuredReplies: h.getRequestStructuredReplies(),
      requestBlockSize: h.getRequestBlockSize(),
      fullInfo: h.getFullInfo(),
      exportName: h.getExportName(),
      optMode: h.getOptMode(),
      preadInitialize: h.getPreadInitialize(),
      strictMode: h.getStrictMode(),
      debug: h.getDebug(),
      nrMetaContexts: h.getNrMetaContexts(),
    };
    const py = await python(`
h = nbd.NBD()
print(json.dumps(dict(tls=h.get_tls(), tlsVerifyPeer=h.get_tls_verify_peer(), handshakeFlags=h.get_handshake_flags(),
  requestStructuredReplies=h.get_request_structured_replies(), requestBlockSize=h.get_request_block_size(),
  fullInfo=h.get_full_info(), exportName=h.get_export_name(), optMode=h.get_opt_mode(),
  preadInitialize=h.get_pread_initialize(), strictMode=h.get_strict_mode(), debug=h.get_debug(),
  nrMetaContexts=h.get_nr_meta_contexts())))`);
    expect(js).toEqual(py);
    expect(js.tls).toBe(TLS_DISABLE);
    expect(js.handshakeFlags).toBe(HANDSHAKE_FLAG_MASK);
    expect(h.getHandleName()).toMatch(/^nbd\d+$/);
  });

  test('every setter with a getter round-trips', () => {
    const h = handle();
    h.setTls(TLS_ALLOW);
    expect(h.getTls()).toBe(TLS_ALLOW);
    h.setTls(TLS_REQUIRE);
    expect(h.getTls()).toBe(TLS_REQUIRE);
    h.setTlsVerifyPeer(false);
    expect(h.getTlsVerifyPeer()).toBe(false);
    h.setTlsVerifyPeer(true);
    expect(h.getTlsVerifyPeer()).toBe(true);
    h.setTlsUsername('carol');
    expect(h.getTlsUsername()).toBe('carol');
    h.setHandshakeFlags(HANDSHAKE_FLAG_FIXED_NEWSTYLE);
    expect(h.getHandshakeFlags()).toBe(HANDSHAKE_FLAG_FIXED_NEWSTYLE);
    h.setHandshakeFlags(HANDSHAKE_FLAG_NO_ZEROES);
    expect(h.getHandshakeFlags()).toBe(HANDSHAKE_FLAG_NO_ZEROES);
    h.setHandshakeFlags(0);
    expect(h.getHandshakeFlags()).toBe(0);
    h.setRequestStructuredReplies(false);
    expect(h.getRequestStructuredReplies()).toBe(false);
    h.setRequestBlockSize(false);
    expect(h.getRequestBlockSize()).toBe(false);
    h.setFullInfo(true);
    expect(h.getFullInfo()).toBe(true);
    h.setExportName('disk/with spaces and ünïcode');
    expect(h.getExportName()).toBe('disk/with spaces and ünïcode');
    h.setExportName('');
    expect(h.getExportName()).toBe('');
    h.setHandleName('my handle');
    expect(h.getHandleName()).toBe('my handle');
    h.setOptMode(true);
    expect(h.getOptMode()).toBe(true);
    h.setOptMode(false);
    expect(h.getOptMode()).toBe(false);
    h.setPreadInitialize(false);
    expect(h.getPreadInitialize()).toBe(false);
    h.setStrictMode(STRICT_BOUNDS | STRICT_ZERO_SIZE);
    expect(h.getStrictMode()).toBe(STRICT_BOUNDS | STRICT_ZERO_SIZE);
    h.setStrictMode(0);
    expect(h.getStrictMode()).toBe(0);
    h.setDebugCallback(() => 0); // else libnbd writes the messages to stderr
    h.setDebug(true);
    expect(h.getDebug()).toBe(true);
    h.setDebug(false);
    expect(h.getDebug()).toBe(false);
    h.setFullInfo(false);
    expect(h.getFullInfo()).toBe(false);
  });

  test('meta contexts requested can be added, counted, read by index and cleared, as in libnbd', async () => {
    const h = handle();
    expect(h.getNrMetaContexts()).toBe(0);
    h.addMetaContext('base:allocation');
    h.addMetaContext('qemu:dirty-bitmap:b0');
    expect(h.getNrMetaContexts()).toBe(2);
    expect(h.getMetaContext(0)).toBe('base:allocation');
    expect(h.getMetaContext(1)).toBe('qemu:dirty-bitmap:b0');
    const e = await failure(() => h.getMetaContext(2));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/^nbd_get_meta_context: meta context request out of range/);
    h.clearMetaContexts();
    expect(h.getNrMetaContexts()).toBe(0);
    h.addMetaContext('base:allocation');
    await h.connectCommand(nbdkit('memory', 'size=1M'));
    expect(h.canMetaContext('base:allocation')).toBe(true);
    expect(h.canMetaContext('qemu:dirty-bitmap:b0')).toBe(false);
  });

  test('setters outside their permitted state: libnbd\'s EINVAL, value unchanged', async () => {
    const h = await connected(nbdkit('memory', 'size=1M'));
    for (const [name, call] of [
      ['nbd_set_tls', () => h.setTls(TLS_ALLOW)],
      ['nbd_set_export_name', () => h.setExportName('x')],
      ['nbd_add_meta_context', () => h.addMetaContext('base:allocation')],
      ['nbd_set_opt_mode', () => h.setOptMode(true)],
      ['nbd_set_request_block_size', () => h.setRequestBlockSize(false)],
      ['nbd_set_handshake_flags', () => h.setHandshakeFlags(0)],
    ] as const) {
      const e = await failure(call);
      expect([name, e.code]).toEqual([name, 'EINVAL']);
      expect(e.message).toMatch(new RegExp(`^${name}: invalid state: READY`));
    }
    expect(h.getTls()).toBe(TLS_DISABLE);
    expect(h.getExportName()).toBe('');
    expect(h.getNrMetaContexts()).toBe(0);
    // Settings allowed in any state still work when connected.
    h.setStrictMode(STRICT_MASK);
    expect(h.getStrictMode()).toBe(STRICT_MASK);
    h.setHandleName('late');
    expect(h.getHandleName()).toBe('late');
  });

  test('getBlockSize: the server\'s constraints, 0 when not requested; unknown SIZE_* is EINVAL', async () => {
    const argv = nbdkit('--filter=blocksize-policy', 'memory', 'size=1M', 'blocksize-minimum=512', 'blocksize-preferred=4096', 'blocksize-maximum=1M');
    const h = await connected(argv);
    expect([h.getBlockSize(SIZE_MINIMUM), h.getBlockSize(SIZE_PREFERRED), h.getBlockSize(SIZE_MAXIMUM)]).toEqual([512, 4096, 1048576]);
    const e = await failure(() => h.getBlockSize(9));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/^nbd_get_block_size: size_type: invalid value for parameter: 9/);

    const n = handle();
    n.setRequestBlockSize(false);
    await n.connectCommand(argv);
    expect([n.getBlockSize(SIZE_MINIMUM), n.getBlockSize(SIZE_PREFERRED), n.getBlockSize(SIZE_MAXIMUM)]).toEqual([0, 0, 0]);
  });
});

// ------------------------------------------------------------------ tests/errors-*.c

describe('libnbd\'s argument errors (tests/errors-*.c)', () => {
  test('errors-enum: setTls(TLS_REQUIRE + 1) is EINVAL and TLS stays as it was', async () => {
    const h = handle();
    const e = await failure(() => h.setTls(TLS_REQUIRE + 1));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/^nbd_set_tls: tls: invalid value for parameter: 3/);
    expect(h.getTls()).toBe(TLS_DISABLE);
    h.setTls(TLS_ALLOW);
    await failure(() => h.setTls(TLS_REQUIRE + 1));
    expect(h.getTls()).toBe(TLS_ALLOW);
  });

  test('errors-bitmask: setHandshakeFlags(HANDSHAKE_FLAG_MASK + 1) is EINVAL and the flags stay', async () => {
    const h = handle();
    const e = await failure(() => h.setHandshakeFlags(HANDSHAKE_FLAG_MASK + 1));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/^nbd_set_handshake_flags: flags: invalid value for flag: 0x4/);
    expect(h.getHandshakeFlags()).toBe(HANDSHAKE_FLAG_MASK);
    const s = await failure(() => h.setStrictMode(STRICT_MASK + 1));
    expect(s.code).toBe('EINVAL');
    expect(h.getStrictMode()).toBe(STRICT_MASK);
  });

  test('errors-name-too-long: an export name over 4096 bytes is ENAMETOOLONG', async () => {
    const h = handle();
    h.setExportName('keep');
    const e = await failure(() => h.setExportName('a'.repeat(4999)));
    expect(e.code).toBe('ENAMETOOLONG');
    expect(e.message).toMatch(/^nbd_set_export_name: export name too long for NBD protocol/);
    expect((await failure(() => h.setExportName('a'.repeat(4097)))).code).toBe('ENAMETOOLONG');
    h.setExportName('a'.repeat(4096));
    expect(h.getExportName()).toHaveLength(4096);
  });

  test('errors-multiple-disconnects: a second aioDisconnect is EINVAL; after shutdown a read is EINVAL', async () => {
    const witness = tempFile('witness', '');
    const script = tempFile(
      'plugin.sh',
      [
        'case $1 in',
        '  get_size) echo 128m || exit 1 ;;',
        '  thread_model) echo serialize_all_requests; exit 0 ;;',
        "  pread) printf 'ENOMEM ' >&2; exit 1 ;;",
        '  can_write) exit 0 ;;',
        '  pwrite)',
        `    while test -e ${witness}; do sleep 0.05; done`,
        '    exit 0;;',
        '  *) exit 2 ;;',
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(script, 0o700);
    const h = await connected(nbdkit('sh', script));

    const r = await failure(() => h.pread(Buffer.alloc(512), 0));
    expect(r.code).toBe('ENOMEM');
    expect(r.message).toMatch(/pread/);

    const big = Buffer.alloc(2 * 1024 * 1024);
    const writes = [outcome(() => h.pwrite(big, 0)), outcome(() => h.pwrite(big, 0))];
    h.aioDisconnect(0);
    const e = await failure(() => h.aioDisconnect(0));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/^nbd_aio_disconnect: cannot request more commands after NBD_CMD_DISC/);
    // New commands are refused as well.
    const refused = await failure(() => h.pread(Buffer.alloc(512), 0));
    expect(refused.code).toBe('EINVAL');

    unlinkSync(witness); // unblock the plugin's writes
    // Whether shutdown succeeds is a race with the server (as in libnbd's test).
    await outcome(() => h.shutdown());
    await Promise.all(writes);
    await waitFor(() => h.aioIsClosed() || h.aioIsDead(), 'CLOSED or DEAD');
    const after = await failure(() => h.pread(Buffer.alloc(512), 0));
    expect(after.code).toBe('EINVAL');
    expect(after.message).toMatch(/pread: invalid state: (CLOSED|DEAD)/);
  });

  test('shutdown after aioDisconnect waits for the close and succeeds, as nbd_shutdown does', async () => {
    const argv = nbdkit('memory', 'size=1M');
    const py = await python(`
h = nbd.NBD(); h.connect_command(json.loads(sys.argv[1]))
h.aio_disconnect(0)
r = outcome(lambda: h.shutdown(0))
print(json.dumps([r, h.aio_is_closed()]))`, JSON.stringify(argv));
    expect(py).toEqual([['ok', null], true]);

    const h = await connected(argv);
    h.aioDisconnect(0);
    expect(await outcome(() => h.shutdown())).toEqual(['ok', undefined]);
    expect(h.aioIsClosed()).toBe(true);
  });

  test('shutdown fails ENOTCONN before connecting and EINVAL once closed', async () => {
    const c = handle();
    expect((await failure(() => c.shutdown())).code).toBe('ENOTCONN');
    expect((await failure(() => c.aioDisconnect(0))).code).toBe('ENOTCONN');
    const h = await connected(nbdkit('memory', 'size=1M'));
    await h.shutdown();
    expect(h.aioIsClosed()).toBe(true);
    const e = await failure(() => h.shutdown());
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/invalid state: CLOSED/);
  });
});

// ------------------------------------------------------------------ module functions

describe('module functions', () => {
  test('package name, version, TLS and URI support are what the Python binding reports', async () => {
    expect(getPackageName()).toBe('libnbd');
    expect(getVersion()).toMatch(/^1\.\d+\.\d+/);
    expect(supportsTls()).toBe(true);
    expect(supportsUri()).toBe(true);
    const py = await python(`
h = nbd.NBD()
print(json.dumps([h.get_package_name(), h.get_version(), h.supports_tls(), h.supports_uri()]))`);
    expect([getPackageName(), getVersion(), supportsTls(), supportsUri()]).toEqual(py);
  });

  test('supportsVsock: ENOTSUP naming the C function before libnbd 1.16', async () => {
    if (minor < 16) {
      const e = await failure(() => supportsVsock());
      expect(e.code).toBe('ENOTSUP');
      expect(e.message).toMatch(/^nbd_supports_vsock: /);
    } else {
      expect(typeof supportsVsock()).toBe('boolean');
    }
  });

  test('calls added after the installed libnbd fail with ENOTSUP naming the C function', async () => {
    const h = handle();
    const later: [number, string, () => unknown][] = [
      [16, 'nbd_stats_bytes_sent', () => h.statsBytesSent()],
      [16, 'nbd_stats_chunks_received', () => h.statsChunksReceived()],
      [16, 'nbd_set_request_meta_context', () => h.setRequestMetaContext(true)],
      [16, 'nbd_get_request_meta_context', () => h.getRequestMetaContext()],
      [16, 'nbd_opt_starttls', () => h.optStarttls()],
      [16, 'nbd_aio_opt_starttls', () => h.aioOptStarttls()],
      [16, 'nbd_set_socket_activation_name', () => h.setSocketActivationName('x')],
      [18, 'nbd_set_request_extended_headers', () => h.setRequestExtendedHeaders(true)],
      [22, 'nbd_get_subprocess_pid', () => h.getSubprocessPid()],
    ];
    const expected: [string, string][] = [];
    const got: [string, string][] = [];
    for (const [since, name, call] of later) {
      if (minor >= since) continue;
      expected.push([name, 'ENOTSUP']);
      const r = await outcome(call);
      got.push([name, r[0] === 'err' ? r[1] : `returned ${String(r[1])}`]);
      if (r[0] === 'err') expect(r[2]).toMatch(new RegExp(`^nbd_(aio_)?${name.slice(4)}: `));
    }
    expect(got).toEqual(expected);
    // The handle is unharmed.
    expect(h.aioIsCreated()).toBe(true);
    h.setExportName('fine');
    expect(h.getExportName()).toBe('fine');
  });
});
