#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, then install the tarball into a
# throwaway app and use it there. Checks
#  - the tarball's contents: LICENSE, what the install-time build needs, no
#    dist/bench, dist/examples or test output, every source map's sources and
#    every relative Markdown link present;
#  - the prebuilt binary (prebuilds/linux-x64, built by `prepack` on this
#    machine): its symbol version needs (scripts/check-symbols.mjs);
#  - the install with --build-from-source: node-gyp builds the addon from the
#    tarball (offline but for the npm registry: Node's headers come from the
#    running Node's own include/node, as `nodedir`, else from node-gyp's
#    cache);
#  - the install without a compiler, from the prebuilt binary, with install
#    scripts on and off (--ignore-scripts): here with no compiler, make or
#    pkg-config on PATH, and in a minimal Debian 13 root (nodejs, libnbd0,
#    nbdkit; npm is this machine's); in each, the app connects to nbdkit,
#    reads, and `have` is checked against the loaded libnbd's release with
#    the newer calls it has run; in the Debian 13 root without libnbd.so.0,
#    install and require say in one line what to install;
#  - the typings: a strict app (skipLibCheck: false, module nodenext), as ESM
#    and as CommonJS, typechecks against the shipped .d.ts files;
#  - the runtime: require('libnbd'), ESM named imports (every CommonJS export
#    visible to Node's cjs-module-lexer) and the nbdjs command.
# Prints what it checked; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tsc=$root/node_modules/.bin/tsc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

ok() { echo "check-package: ok: $*"; }
fail() { echo "check-package: FAILED: $*" >&2; exit 1; }

# --- the tarball (npm pack runs "prepack": the prebuilt binary, "prepare": tsc) --
# Both compiles here (prepack's prebuildify, the --build-from-source install)
# run node-gyp, which needs Node's headers. The Node that runs here ships them
# (its prefix's include/node, as Debian's and nodejs.org's builds do): point
# node-gyp there so that nothing is downloaded; otherwise node-gyp's own cache
# (~/.cache/node-gyp; prebuildify's: /tmp/prebuildify) must have them.
prefix=$(node -p 'require("path").resolve(process.execPath, "../..")')
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$prefix/include/node/node_api.h" ] && [ -f "$prefix/include/node/common.gypi" ]; then
  export npm_config_nodedir=$prefix
fi
export JOBS=max   # node-gyp compiles the addon's files in parallel
t0=$SECONDS
npm pack --silent --pack-destination "$tmp" >"$tmp/pack.out" 2>"$tmp/pack.err" || { cat "$tmp/pack.out" "$tmp/pack.err" >&2; fail "npm pack"; }
tarball=$(ls "$tmp"/libnbd-*.tgz)
# The checkout keeps a build (prebuildify moves node-gyp's output; prepack copies it back) and no prebuilds/.
[ -f build/Release/nbd.node ] && [ ! -e prebuilds ] || fail "npm pack left the checkout without build/Release/nbd.node, or with prebuilds/"
mkdir "$tmp/contents"
tar -xzf "$tarball" -C "$tmp/contents"
pkg=$tmp/contents/package
ok "npm pack: $(basename "$tarball"), $(tar -tzf "$tarball" | wc -l) files, $(du -k "$tarball" | cut -f1) KiB ($((SECONDS - t0)) s with the prebuilt binary's build)"

prebuilt=prebuilds/linux-x64/libnbd.glibc.node
for f in LICENSE README.md package.json binding.gyp native/addon.cc native/generated/api_methods.cc $prebuilt scripts/install-check.js \
         bin/nbdjs dist/bin/nbdjs.js dist/lib/index.js dist/lib/index.d.ts dist/typings/native.d.ts docs/api.md; do
  [ -f "$pkg/$f" ] || fail "the tarball lacks $f"
done
grep -q 'GNU LESSER GENERAL PUBLIC LICENSE' "$pkg/LICENSE" || fail "LICENSE is not the LGPL text"
ok "contains LICENSE (LGPL), binding.gyp, native/ (with generated/), $prebuilt, bin/nbdjs, dist/lib, dist/bin, dist/typings, docs"
needs=$(node scripts/check-symbols.mjs "$pkg/$prebuilt") || { echo "$needs" >&2; fail "the prebuilt binary needs symbol versions past the limits"; }
ok "the prebuilt binary ($(du -k "$pkg/$prebuilt" | cut -f1) KiB, stripped) needs at most $(echo "$needs" | sed -n 's/^check-symbols: \([A-Z]*_[0-9.]*\) (limit.*/\1/p' | paste -sd' ')"

unwanted=$(cd "$pkg" && find . \( -path ./dist/bench -o -path ./dist/examples -o -path ./dist/test -o -path ./test \
  -o -path ./build -o -path ./build-cmake -o -path ./node_modules -o \( -name '*.node' ! -path "./$prebuilt" \) -o -name '*.tgz' \) -print)
[ -z "$unwanted" ] || fail "the tarball has what users do not need: $unwanted"
ok "no dist/bench, dist/examples, test output, build/ or node_modules"

node - "$pkg" <<'EOF' || fail "source maps or Markdown links point outside the tarball"
const fs = require('fs'), path = require('path');
const pkg = process.argv[2];
const files = [];
(function walk(d) { for (const e of fs.readdirSync(d, { withFileTypes: true })) {
  const p = path.join(d, e.name); e.isDirectory() ? walk(p) : files.push(p); } })(pkg);
let bad = [], maps = 0, links = 0;
for (const f of files) {
  const rel = path.relative(pkg, f);
  if (f.endsWith('.js')) {
    const m = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(fs.readFileSync(f, 'utf8'));
    if (m && !fs.existsSync(path.resolve(path.dirname(f), m[1]))) bad.push(`${rel}: sourceMappingURL ${m[1]} missing`);
  }
  if (f.endsWith('.map')) {
    maps++;
    const map = JSON.parse(fs.readFileSync(f, 'utf8'));
    map.sources.forEach((s, i) => {
      const src = path.resolve(path.dirname(f), map.sourceRoot || '', s);
      if (!fs.existsSync(src) && !(map.sourcesContent && map.sourcesContent[i] != null)) bad.push(`${rel}: source ${s} missing`);
    });
  }
  if (f.endsWith('.md')) {
    for (const m of fs.readFileSync(f, 'utf8').matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      if (/^[a-z]+:/i.test(m[1])) continue;
      links++;
      if (!fs.existsSync(path.resolve(path.dirname(f), m[1]))) bad.push(`${rel}: link ${m[1]} missing`);
    }
  }
}
if (bad.length) { console.error(bad.join('\n')); process.exit(1); }
console.log(`check-package: ok: ${maps} source maps, all their sources shipped; ${links} relative Markdown links, all resolve`);
EOF

# --- install into a fresh app -------------------------------------------------
app=$tmp/app
mkdir "$app"
cat >"$app/package.json" <<'EOF'
{ "name": "libnbd-check-app", "version": "0.0.0", "private": true }
EOF
# @types/node: the shipped declarations use Buffer, streams and EventEmitter,
# as any Node library's do; the repo's version, so npm's cache has it.
types_node=$(node -p 'require("./node_modules/@types/node/package.json").version')
t0=$SECONDS
(cd "$app" && npm install --build-from-source --prefer-offline --no-audit --no-fund --loglevel=error "$tarball" "@types/node@$types_node") \
  >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "npm install --build-from-source of the tarball"; }
[ -f "$app/node_modules/libnbd/build/Release/nbd.node" ] || fail "the install built no build/Release/nbd.node"
ok "npm install --build-from-source of the tarball into a fresh app built the addon (nodedir=${npm_config_nodedir:-node-gyp cache}, $((SECONDS - t0)) s)"

# --- the typings, strict, with the app's view of the package -----------------
cat >"$app/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "strict": true,
    "skipLibCheck": false,
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "target": "ES2022",
    "types": ["node"],
    "noEmit": true
  },
  "files": ["typed.mts", "typed.cts"]
}
EOF
cat >"$app/typed.mts" <<'EOF'
import { Handle, NbdError, AbortError, Pool, connect, copy, isZero, getVersion, errnoName,
  READ_DATA, READ_HOLE, CMD_FLAG_DF, SIZE_PREFERRED } from 'libnbd';
import type { ConnectOptions, CopyOptions, CopyStats, Extent, HandleOptions, ReadStreamOptions } from 'libnbd';
import type { Readable } from 'node:stream';

const version: string = getVersion();
const opts: HandleOptions = {};
const h = new Handle(opts);
h.setExportName('x');
const name: string | null = h.getExportName();
const flags: number = READ_DATA | READ_HOLE | CMD_FLAG_DF | SIZE_PREFERRED;
const zero: boolean = isZero(Buffer.alloc(16));
const o: ConnectOptions = { timeout: 1000, metaContexts: ['base:allocation'] };
const later: Promise<Handle> = connect('nbd+unix:///?socket=/nonexistent', o);
const copying: (o: CopyOptions) => Promise<CopyStats> = (co) =>
  Pool.connect('nbd://b', { connections: 2 }).then((pool) => copy('nbd://a', pool, co));
const stream = (ro: ReadStreamOptions): Readable => h.createReadStream(ro);
const e: Extent | undefined = undefined;
function describe(err: unknown): string {
  if (err instanceof NbdError) return `${err.code} ${errnoName(err.errno)}`;
  if (err instanceof AbortError) return 'aborted';
  return String(err);
}
h.close();
export { version, name, flags, zero, later, copying, stream, e, describe };
EOF
cat >"$app/typed.cts" <<'EOF'
import libnbd = require('libnbd');
import { Handle, NbdError } from 'libnbd';
const h: Handle = new libnbd.Handle({ bigint: false });
const v: string = libnbd.getVersion();
const isErr = (e: unknown): e is NbdError => e instanceof NbdError;
h.close();
export { v, isErr, Handle };
EOF
# The same code in a classic CommonJS app (module commonjs, node10 resolution).
cp "$app/typed.mts" "$app/typed.ts"
cat >"$app/tsconfig.commonjs.json" <<'EOF'
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "module": "commonjs", "moduleResolution": "node10", "esModuleInterop": true },
  "files": ["typed.ts"]
}
EOF
(cd "$app" && "$tsc" -p tsconfig.json) || fail "the strict app (module nodenext) does not typecheck against the shipped typings"
(cd "$app" && "$tsc" -p tsconfig.commonjs.json) || fail "the strict app (module commonjs) does not typecheck against the shipped typings"
ok "strict TypeScript (skipLibCheck: false; module nodenext with ESM and CommonJS files, and module commonjs) typechecks with tsc $("$tsc" -v | cut -d' ' -f2)"

# --- the runtime: CommonJS, ESM named imports, nbdjs ---------------------------
server=""
if command -v nbdkit >/dev/null; then server=nbdkit; fi
cat >"$app/cjs.cjs" <<'EOF'
const { Handle, NbdError, getVersion, READ_DATA } = require('libnbd');
(async () => {
  const h = new Handle();
  h.setHandleName('check-cjs');
  if (h.getHandleName() !== 'check-cjs') throw new Error('getHandleName');
  if (typeof READ_DATA !== 'number') throw new Error('READ_DATA');
  if (process.argv[2] === 'nbdkit') {
    await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'memory', 'size=1M']);
    await h.pwrite(Buffer.from('hello'), 0);
    const buf = Buffer.alloc(5);
    await h.pread(buf, 0);
    if (buf.toString() !== 'hello' || h.getSize() !== 1048576) throw new Error('pread after pwrite');
    await h.pread(Buffer.alloc(1), 2 << 20).then(() => { throw new Error('no error past the end'); },
      (e) => { if (!(e instanceof NbdError)) throw e; });
    await h.shutdown();
  }
  h.close();
  console.log(`libnbd ${getVersion()}`);
})().catch((e) => { console.error(e); process.exit(1); });
EOF
cat >"$app/esm.mjs" <<'EOF'
import { Handle, NbdError, Pool, connect, copy, isZero, getVersion, READ_DATA, CMD_FLAG_DF } from 'libnbd';
import * as ns from 'libnbd';
import libnbd from 'libnbd';
import { createRequire } from 'node:module';

const cjs = createRequire(import.meta.url)('libnbd');
const missing = Object.keys(cjs).filter((k) => !(k in ns));
if (missing.length) throw new Error(`not importable by name from ESM: ${missing.join(', ')}`);
if (libnbd !== cjs || Handle !== cjs.Handle) throw new Error('ESM and CommonJS see different modules');
for (const f of [NbdError, Pool, connect, copy, isZero]) if (typeof f !== 'function') throw new Error(`${f}`);
if (typeof READ_DATA !== 'number' || typeof CMD_FLAG_DF !== 'number') throw new Error('constants');
const h = new Handle();
if (process.argv[2] === 'nbdkit') {
  await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'memory', 'size=64K']);
  const chunks = [];
  for await (const c of h.createReadStream()) chunks.push(c);
  if (!isZero(Buffer.concat(chunks)) || Buffer.concat(chunks).length !== 65536) throw new Error('createReadStream');
  await h.shutdown();
}
h.close();
console.log(`${Object.keys(cjs).length} named exports, libnbd ${getVersion()}`);
EOF
what=${server:+, connected to nbdkit (pwrite, pread, an error)}
out=$(cd "$app" && node cjs.cjs $server) || fail "require('libnbd')"
ok "CommonJS require('libnbd'): new Handle(), setters, close$what: $out"
out=$(cd "$app" && node esm.mjs $server) || fail "ESM import { Handle, ... } from 'libnbd'"
ok "ESM named imports, every CommonJS export importable by name${server:+, createReadStream from nbdkit}: $out"
if [ -n "$server" ]; then
  size=$(cd "$app" && npx --no-install nbdjs info --size -- [ nbdkit memory 1M ]) || fail "nbdjs info"
  [ "$size" = 1048576 ] || fail "nbdjs info --size printed '$size'"
  ok "nbdjs (the package's bin): info --size of nbdkit memory 1M = $size"
else
  (cd "$app" && npx --no-install nbdjs --help >/dev/null) || fail "nbdjs --help"
  ok "nbdjs --help runs (no nbdkit here: no connection checks)"
fi

# --- without a compiler: the prebuilt binary ---------------------------------
# probe.cjs: from a fresh app, loads libnbd, checks `have` against the loaded
# release (every key is a call of 1.16-1.22: none on 1.14, all from 1.22),
# connects to nbdkit, writes and reads, runs the newer calls `have` reports
# (each absent one fails ENOTSUP), and prints what it saw.
cat >"$tmp/probe.cjs" <<'EOF'
const l = require('libnbd');
const assert = (ok, what) => { if (!ok) throw new Error(what); };
(async () => {
  const version = l.getVersion();
  const minor = Number(version.split('.')[1]);
  const keys = Object.keys(l.have);
  const present = keys.filter((k) => l.have[k]);
  if (minor <= 14) assert(present.length === 0, `have on ${version}: ${present}`);
  if (minor >= 22) assert(present.length === keys.length, `have on ${version} lacks ${keys.filter((k) => !l.have[k])}`);
  const h = new l.Handle();
  h.addMetaContext(l.CONTEXT_BASE_ALLOCATION);
  await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'memory', 'size=1M']);
  await h.pwrite(Buffer.from('prebuilt'), 4096);
  const buf = Buffer.alloc(8);
  await h.pread(buf, 4096);
  assert(buf.toString() === 'prebuilt', 'pread after pwrite');
  const ran = [];
  const check = (key, run) => {
    if (l.have[key]) { run(); ran.push(key); return; }
    let code;
    try { run(); } catch (e) { code = e.code; }
    assert(code === 'ENOTSUP', `${key} without the call: ${code}`);
  };
  check('getExtendedHeadersNegotiated', () => assert(typeof h.getExtendedHeadersNegotiated() === 'boolean', 'extended headers'));
  check('statsBytesSent', () => assert(h.statsBytesSent() > 0 && h.statsChunksReceived() > 0, 'stats'));
  check('isUri', () => assert(h.isUri('nbd+unix:///?socket=/s') === true && h.isUri('nothing') === false, 'isUri'));
  if (l.have.blockStatus64) {
    let extents = 0;
    await h.blockStatus64(1 << 20, 0, (ctx, offset, entries) => { extents += entries.length / 2; });
    assert(extents > 0, 'blockStatus64');
    ran.push('blockStatus64');
  } else {
    await h.blockStatus64(1 << 20, 0, () => 0).then(() => assert(false, 'blockStatus64 resolved'),
      (e) => assert(e.code === 'ENOTSUP', `blockStatus64: ${e.code}`));
  }
  await h.shutdown();
  h.close();
  console.log(`libnbd ${version}, have ${present.length}/${keys.length} true${ran.length ? `, ran ${ran.join(', ')}` : ''}`);
})().catch((e) => { console.error(e); process.exit(1); });
EOF
# install-and-probe.sh DIR TARBALL NPM [NPM_ARGS...]: a fresh app in DIR, the
# tarball installed with NPM_ARGS, no build/ made, the probe run; prints
# "SECONDS s: PROBE OUTPUT" (in whatever environment runs it).
cat >"$tmp/install-and-probe.sh" <<'EOF'
set -euo pipefail
dir=$1 tarball=$2 npm=$3; shift 3
rm -rf "$dir"; mkdir -p "$dir"; cp "$(dirname "$0")/probe.cjs" "$dir/"
echo '{ "name": "libnbd-prebuilt-app", "version": "0.0.0", "private": true }' >"$dir/package.json"
t0=$(date +%s%N)
(cd "$dir" && $npm install --prefer-offline --no-audit --no-fund --loglevel=error "$@" "$tarball") >"$dir.log" 2>&1 || { cat "$dir.log" >&2; exit 1; }
t1=$(date +%s%N)
[ ! -e "$dir/node_modules/libnbd/build" ] || { echo "the install compiled the addon" >&2; exit 1; }
out=$(cd "$dir" && node probe.cjs)
tenths=$(( (t1 - t0) / 100000000 ))
echo "installed in $((tenths / 10)).$((tenths % 10)) s; $out"
EOF
# Debian 12 without a compiler: a PATH of node, npm, a shell, a few tools and
# nbdkit (no cc, c++, make, pkg-config, python3), CXX and CC false.
nocc=$tmp/nocc-bin
mkdir "$nocc"
for t in node npm npx sh bash env nbdkit date sed cat cp rm mkdir dirname ls uname; do ln -s "$(command -v "$t")" "$nocc/$t"; done
for args in "" --ignore-scripts; do
  out=$(env PATH="$nocc" CXX=false CC=false bash "$tmp/install-and-probe.sh" "$tmp/nocc-app" "$tarball" npm $args) ||
    fail "Debian 12 without a compiler: npm install ${args:-(scripts on)} of the tarball and the probe"
  ok "Debian 12, no compiler on PATH, npm install ${args:-(install scripts on)}: $out"
done

# Debian 13: a minimal root (scripts/debian-root.sh, cached) with Debian's
# nodejs, libnbd0 and nbdkit only; npm is a copy of the one running here
# (Debian's npm package depends on g++ and make through node-gyp).
source scripts/debian-root.sh
root13=$(debian_root trixie "nodejs libnbd0 nbdkit")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
cp -r "$npm_dir" "$tmp/npm"
cp "$tarball" "$tmp/libnbd.tgz"
out=$(in_debian_root "$root13" "$tmp" bash -c '
  set -euo pipefail
  for t in cc gcc g++ c++ make pkg-config python3; do ! command -v $t >/dev/null || { echo "the root has $t" >&2; exit 1; }; done
  [ ! -e /usr/include/libnbd.h ] || { echo "the root has libnbd.h" >&2; exit 1; }
  echo "node $(node --version), libnbd0 $(dpkg-query -W -f="\${Version}" libnbd0), nbdkit $(dpkg-query -W -f="\${Version}" nbdkit); no cc, c++, make, pkg-config, python3 or libnbd.h"
  for args in "" --ignore-scripts; do
    echo "npm install ${args:-(install scripts on)}: $(bash /work/install-and-probe.sh /tmp/app /work/libnbd.tgz "node /work/npm/bin/npm-cli.js" $args)"
  done
  # Without libnbd.so.0 (hidden by an overlay in this mount namespace): install and require say what to install.
  mkdir /tmp/upper /tmp/overlay-work
  mount -t overlay overlay -o lowerdir=/usr/lib/x86_64-linux-gnu,upperdir=/tmp/upper,workdir=/tmp/overlay-work /usr/lib/x86_64-linux-gnu
  rm /usr/lib/x86_64-linux-gnu/libnbd.so.0*
  mkdir /tmp/nolib && cd /tmp/nolib && echo "{ \"name\": \"nolib\", \"version\": \"0.0.0\", \"private\": true }" >package.json
  if node /work/npm/bin/npm-cli.js install --prefer-offline --no-audit --no-fund --loglevel=error /work/libnbd.tgz >install.log 2>&1; then
    echo "the install succeeded without libnbd.so.0" >&2; exit 1
  fi
  grep -q "libnbd: the libnbd library (libnbd.so.0) is not installed: install libnbd0" install.log || { cat install.log >&2; exit 1; }
  node /work/npm/bin/npm-cli.js install --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error /work/libnbd.tgz >/dev/null 2>&1
  line=$(node -e "try { require(\"libnbd\") } catch (e) { console.log(e.message) }")
  [ "${line#libnbd: the libnbd library}" != "$line" ] || { echo "require without libnbd.so.0: $line" >&2; exit 1; }
  echo "without libnbd.so.0, npm install fails and require throws, both saying: $line"
') || fail "Debian 13 (minimal root): install of the tarball and the probe"
while IFS= read -r l; do ok "Debian 13: $l"; done <<<"$out"

echo "check-package: all checks passed ($((SECONDS - start)) s)"
