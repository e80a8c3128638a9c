// TLS with X.509 certificates, as libnbd's own tests do it
// (tests/connect-tls.c built with CERTS, connect-uri-nbds-certs,
// connect-uri-nbds-unix-certs): a CA, server and client certificates made
// here with certtool (helpers/certs.ts), nbdkit with --tls=require
// --tls-verify-peer --tls-certificates=DIR. Where a connect fails, the same
// scenario runs through libnbd's Python binding and the outcomes are
// compared: libnbd's errno and, where it does not depend on timing, its
// message.
import { createServer } from 'node:net';
import { Handle, TLS_ALLOW, TLS_REQUIRE } from '../../lib';
import { clientDir, makePki } from '../helpers/certs';
import { outcome } from '../helpers/outcome';
import { runPython } from '../helpers/python';
import { handle, nbdkit, pattern, startNbdkit, startNbdkitTcp } from '../helpers/servers';

/** What a connect ended with: ['ok', null] or ['err', code, message without its "nbd_<call>: "]. */
type ConnectOutcome = ['ok', null] | ['err', string, string];

/** A message without libnbd's "<api>: " context. */
const body = (message: string) => message.replace(/^nbd_\w+: /, '');

/** outcome() as the Python side below prints it. */
async function connectOutcome(connect: () => Promise<void>): Promise<ConnectOutcome> {
  const o = await outcome(connect);
  return o[0] === 'ok' ? ['ok', null] : ['err', o[1], body(o[2])];
}

// The Python side of a comparison: connect(h, how, target) as the test says,
// with the handle set up by `setup`; prints the outcome as JSON.
const PY_PRELUDE = `
import nbd, errno, json, re, sys
def outcome(f):
    try:
        f()
        return ['ok', None]
    except nbd.Error as e:
        code = errno.errorcode.get(e.errnum, 'E%d' % e.errnum) if e.errnum else 'UNKNOWN'
        return ['err', code, re.sub(r'^nbd_\\w+: ', '', e.string)]
`;

/** Runs `script` (after PY_PRELUDE) with libnbd's Python binding; resolves with the JSON it prints last. */
const python = <T>(script: string, ...args: string[]): Promise<T> => runPython<T>(PY_PRELUDE + script, { args, timeoutMs: 30000 });

/** A loopback port nobody listens on now (the kernel's pick; the server takes it right after). */
function freePort(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(String(port)));
    });
  });
}

/** The pattern plugin's first 4 KiB read through `h`. */
async function expectPatternRead(h: Handle): Promise<void> {
  const buf = Buffer.alloc(4096);
  await h.pread(buf, 8192);
  expect(buf.equals(pattern(8192, 4096))).toBe(true);
}

describe('TLS with X.509 certificates', () => {
  /** The test PKI: CA, server and client certificates in one directory, as libnbd's tests have it. */
  let pki: string;
  /** A client directory trusting another CA (with the right client certificate). */
  let wrongCa: string;
  /** A client directory with the right CA and no client certificate. */
  let noClientCert: string;
  let socket: string;
  let port: string;
  const serverArgs = () => ['--tls=require', '--tls-verify-peer', `--tls-certificates=${pki}`, 'pattern', 'size=1M'];

  beforeAll(async () => {
    pki = makePki();
    const other = makePki('Another');
    wrongCa = clientDir({ 'ca-cert.pem': other, 'client-cert.pem': pki, 'client-key.pem': pki });
    noClientCert = clientDir({ 'ca-cert.pem': pki });
    socket = (await startNbdkit(...serverArgs())).socket;
    port = await freePort();
    await startNbdkitTcp(port, ...serverArgs());
  });

  function certHandle(dir: string, tls = TLS_REQUIRE): Handle {
    const h = handle();
    h.setTls(tls);
    h.setTlsCertificates(dir);
    return h;
  }

  /** Python's outcome of connecting a handle with TLS_REQUIRE and `dir` (`verify`: setTlsVerifyPeer) to the Unix socket or TCP port. */
  function pythonConnect(how: 'unix' | 'tcp', dir: string, verify = true): Promise<ConnectOutcome> {
    return python<ConnectOutcome>(`
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates(sys.argv[2]); h.set_tls_verify_peer(sys.argv[3] == 'true')
if sys.argv[1] == 'unix':
    print(json.dumps(outcome(lambda: h.connect_unix(sys.argv[4]))))
else:
    print(json.dumps(outcome(lambda: h.connect_tcp('localhost', sys.argv[4]))))`, how, dir, String(verify), how === 'unix' ? socket : port);
  }

  test('connectCommand with the right CA and client certificate: TLS negotiated, the export read (libnbd\'s connect-tls-certs)', async () => {
    const h = certHandle(pki);
    h.setTlsUsername('alice');
    await h.connectCommand(nbdkit(...serverArgs()));
    expect(h.getTlsNegotiated()).toBe(true);
    expect(h.getSize()).toBe(1024 * 1024);
    await expectPatternRead(h);
    await h.shutdown();
  });

  test('connectUnix with the right CA and client certificate: TLS negotiated, the export read', async () => {
    const h = certHandle(pki);
    await h.connectUnix(socket);
    expect(h.getTlsNegotiated()).toBe(true);
    expect(h.getTlsVerifyPeer()).toBe(true);
    await expectPatternRead(h);
  });

  test('connectTcp to localhost: the server\'s certificate matches the host name, TLS negotiated', async () => {
    const h = certHandle(pki);
    await h.connectTcp('localhost', port);
    expect(h.getTlsNegotiated()).toBe(true);
    await expectPatternRead(h);
  });

  test('TLS_ALLOW with certificates upgrades to TLS', async () => {
    const h = certHandle(pki, TLS_ALLOW);
    await h.connectUnix(socket);
    expect(h.getTlsNegotiated()).toBe(true);
  });

  test('a CA that did not sign the server\'s certificate, over TCP: the handshake fails verifying it, as in Python', async () => {
    const h = certHandle(wrongCa);
    const js = await connectOutcome(() => h.connectTcp('localhost', port));
    expect(js[0]).toBe('err');
    expect(js[2]).toMatch(/^gnutls_handshake: .*certificate verification/);
    // libnbd has no errno for a GnuTLS failure: 0, whose code is 'UNKNOWN'.
    expect(js[1]).toBe('UNKNOWN');
    expect(js).toEqual(await pythonConnect('tcp', wrongCa));
    expect(h.aioIsReady()).toBe(false);
  });

  test('a CA that did not sign the server\'s certificate, over a Unix socket: what Python gets', async () => {
    // No host name to check the certificate against: libnbd 1.14 checks
    // nothing then and connects; newer libnbd checks the chain and fails.
    const h = certHandle(wrongCa);
    const js = await connectOutcome(() => h.connectUnix(socket));
    expect(js).toEqual(await pythonConnect('unix', wrongCa));
    expect(h.aioIsReady()).toBe(js[0] === 'ok');
  });

  test('setTlsVerifyPeer(false): a CA that did not sign the server\'s certificate connects over TCP, as in Python', async () => {
    const h = certHandle(wrongCa);
    h.setTlsVerifyPeer(false);
    expect(h.getTlsVerifyPeer()).toBe(false);
    const js = await connectOutcome(() => h.connectTcp('localhost', port));
    expect(js).toEqual(['ok', null]);
    expect(js).toEqual(await pythonConnect('tcp', wrongCa, false));
    expect(h.getTlsNegotiated()).toBe(true);
    await expectPatternRead(h);
  });

  test('no client certificate: the server (--tls-verify-peer) ends the session; the same errno as Python, a GnuTLS error', async () => {
    const h = certHandle(noClientCert);
    const js = await connectOutcome(() => h.connectUnix(socket));
    const py = await pythonConnect('unix', noClientCert);
    expect(js[0]).toBe('err');
    expect(py[0]).toBe('err');
    expect(js[1]).toBe(py[1]);
    // Whether libnbd meets the server's hang-up reading or writing is a race
    // (gnutls_record_recv or _send, and GnuTLS's wording with it): only the
    // kind of failure is compared.
    const gnutls = /^gnutls_(handshake|record_recv|record_send): /;
    expect(js[2]).toMatch(gnutls);
    expect(py[2]).toMatch(gnutls);
    expect(h.aioIsReady()).toBe(false);
  });

  test('TLS_REQUIRE against a server without TLS: libnbd\'s ENOTSUP, as in Python', async () => {
    const plain = await startNbdkit('pattern', 'size=1M');
    const h = certHandle(pki);
    const js = await connectOutcome(() => h.connectUnix(plain.socket));
    expect(js[0]).toBe('err');
    expect(js[1]).toBe('ENOTSUP');
    expect(js[2]).toMatch(/TLS/);
    const py = await python<ConnectOutcome>(`
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates(sys.argv[1])
print(json.dumps(outcome(lambda: h.connect_unix(sys.argv[2]))))`, pki, plain.socket);
    expect(js).toEqual(py);
  });

  test('an nbds:// URI with tls-certificates=: TLS over TCP, getUri as in Python', async () => {
    const uri = `nbds://localhost:${port}/?tls-certificates=${pki}`;
    const h = handle();
    h.setUriAllowLocalFile(true);
    await h.connectUri(uri);
    expect(h.getTlsNegotiated()).toBe(true);
    expect(h.getTls()).toBe(TLS_REQUIRE);
    await expectPatternRead(h);
    const py = await python<[ConnectOutcome, string]>(`
h = nbd.NBD(); h.set_uri_allow_local_file(True)
r = outcome(lambda: h.connect_uri(sys.argv[1]))
print(json.dumps([r, h.get_uri()]))`, uri);
    expect(py[0]).toEqual(['ok', null]);
    expect(h.getUri()).toBe(py[1]);
  });

  test('an nbds+unix:// URI with tls-certificates=: refused (EPERM) until setUriAllowLocalFile(true), then TLS, getUri as in Python', async () => {
    const uri = `nbds+unix://alice@/?tls-certificates=${pki}&socket=${socket}`;
    const refused = handle();
    const e = await connectOutcome(() => refused.connectUri(uri));
    expect(e[0]).toBe('err');
    expect(e[1]).toBe('EPERM');
    expect(e[2]).toMatch(/local file access \(tls-certificates\) is not allowed/);
    expect(refused.aioIsCreated()).toBe(true);

    const h = handle();
    h.setUriAllowLocalFile(true);
    await h.connectUri(uri);
    expect(h.getTlsNegotiated()).toBe(true);
    await expectPatternRead(h);
    const py = await python<[ConnectOutcome, ConnectOutcome, string]>(`
refused = nbd.NBD()
r1 = outcome(lambda: refused.connect_uri(sys.argv[1]))
h = nbd.NBD(); h.set_uri_allow_local_file(True)
r2 = outcome(lambda: h.connect_uri(sys.argv[1]))
print(json.dumps([r1, r2, h.get_uri()]))`, uri);
    expect(py[0]).toEqual(e);
    expect(py[1]).toEqual(['ok', null]);
    expect(h.getUri()).toBe(py[2]);
  });
});
