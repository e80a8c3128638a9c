// X.509 certificates for the TLS tests, made at test time with GnuTLS's
// certtool (Debian's gnutls-bin) as libnbd's own tests make theirs
// (tests/make-pki.sh): a CA, a server certificate for "localhost" (and
// 127.0.0.1, ::1) and a client certificate, each signed by the CA. libnbd
// and nbdkit both read a directory of fixed names: ca-cert.pem, then
// server-cert.pem/server-key.pem (nbdkit) or client-cert.pem/client-key.pem
// (libnbd; optional: without them libnbd offers no client certificate).
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './servers';

/** certtool, run without a terminal (a template answers its questions); fails with its stderr. */
function certtool(...args: string[]): Buffer {
  try {
    return execFileSync('certtool', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    const hint = err.code === 'ENOENT' ? " (install Debian's gnutls-bin: the TLS tests make their certificates with certtool)" : '';
    throw new Error(`certtool ${args.join(' ')} failed${hint}: ${err.message}\n${err.stderr?.toString() ?? ''}`);
  }
}

/** A private key in `path`, readable by its owner only (as make-pki.sh leaves it). */
function privateKey(path: string): void {
  writeFileSync(path, certtool('--generate-privkey'), { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** NAME-key.pem and NAME-cert.pem in `dir`: a new key and its certificate from `template`, signed by the CA in `dir`. */
function signedCertificate(dir: string, name: string, template: string): void {
  privateKey(join(dir, `${name}-key.pem`));
  writeFileSync(join(dir, `${name}.info`), template);
  certtool('--generate-certificate', '--load-ca-certificate', join(dir, 'ca-cert.pem'), '--load-ca-privkey', join(dir, 'ca-key.pem'),
    '--load-privkey', join(dir, `${name}-key.pem`), '--template', join(dir, `${name}.info`), '--outfile', join(dir, `${name}-cert.pem`));
}

/**
 * A public key infrastructure in one directory, as libnbd's tests use it
 * (both nbdkit's --tls-certificates and libnbd's setTlsCertificates point
 * at it): ca-cert.pem, ca-key.pem, server-cert.pem, server-key.pem,
 * client-cert.pem, client-key.pem. Returns the directory.
 */
export function makePki(commonName = 'Test'): string {
  const dir = join(tempDir(), 'pki');
  mkdirSync(dir);
  privateKey(join(dir, 'ca-key.pem'));
  writeFileSync(join(dir, 'ca.info'), `cn = ${commonName}\nca\ncert_signing_key\n`);
  certtool('--generate-self-signed', '--load-privkey', join(dir, 'ca-key.pem'), '--template', join(dir, 'ca.info'),
    '--outfile', join(dir, 'ca-cert.pem'));
  signedCertificate(dir, 'server',
    'organization = Test\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\nip_address = ::1\ntls_www_server\nencryption_key\nsigning_key\n');
  signedCertificate(dir, 'client',
    'country = US\nstate = New York\nlocality = New York\norganization = Test\ncn = localhost\ntls_www_client\nencryption_key\nsigning_key\n');
  return dir;
}

/**
 * A client's certificate directory made of files taken from PKI
 * directories: `files` maps each name (ca-cert.pem, client-cert.pem,
 * client-key.pem) to the directory it is copied from.
 */
export function clientDir(files: Record<string, string>): string {
  const dir = join(tempDir(), 'client');
  mkdirSync(dir);
  for (const [name, from] of Object.entries(files)) copyFileSync(join(from, name), join(dir, name));
  return dir;
}
