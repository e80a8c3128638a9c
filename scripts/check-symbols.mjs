#!/usr/bin/env node
// The symbol versions a built addon needs (objdump -T), checked against what
// the oldest systems the prebuilt binary is for provide: RHEL 9, Ubuntu
// 22.04, Debian 12 (glibc 2.34, GCC 11's libstdc++) with libnbd >= 1.14,
// whose calls newer than LIBNBD_1.12 are resolved at load time instead.
//
//   node scripts/check-symbols.mjs [FILE.node]   (default build/Release/nbd.node)
//
// Prints the newest version needed of each library; exits 1 when one is past
// its limit (and names the symbols that need it), or when a weak libnbd
// reference is found (linked against a newer libnbd it still records a hard
// version need).
import { execFileSync } from 'node:child_process';

export const LIMITS = { LIBNBD: '1.12', GLIBC: '2.34', GLIBCXX: '3.4.29', CXXABI: '1.3.13' };

const newer = (a, b) => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return false;
};

/** { library: { newest, symbols by version } } and weak libnbd references, from objdump -T's text. */
export function needs(objdump) {
  const libs = {};
  const weak = [];
  for (const line of objdump.split('\n')) {
    const m = /\s(w?)\s*D[FO]\s+\*UND\*\s+\S+\s+\(?([A-Z]+)_([0-9.]+)\)?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, w, lib, version, symbol] = m;
    if (w === 'w' && lib === 'LIBNBD') weak.push(symbol);
    const entry = (libs[lib] ??= { newest: version, symbols: {} });
    if (newer(version, entry.newest)) entry.newest = version;
    (entry.symbols[version] ??= []).push(symbol);
  }
  return { libs, weak };
}

function main() {
  const file = process.argv[2] ?? 'build/Release/nbd.node';
  const { libs, weak } = needs(execFileSync('objdump', ['-T', file], { encoding: 'utf8' }));
  let failed = false;
  for (const [lib, limit] of Object.entries(LIMITS)) {
    const entry = libs[lib];
    if (entry === undefined) continue;
    const over = Object.keys(entry.symbols).filter((v) => newer(v, limit));
    console.log(`check-symbols: ${lib}_${entry.newest} (limit ${lib}_${limit})${over.length ? ': TOO NEW' : ''}`);
    for (const v of over) {
      failed = true;
      console.log(`  ${lib}_${v}: ${entry.symbols[v].join(', ')}`);
    }
  }
  if (weak.length) {
    failed = true;
    console.log(`check-symbols: weak libnbd references (each records a hard version need): ${weak.join(', ')}`);
  }
  if (failed) process.exit(1);
  console.log(`check-symbols: ok: ${file}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
