#!/usr/bin/env bash
# libnbd's own tests of its tools, run with nbdjs standing in for them:
# info/*.sh (nbdinfo), copy/*.sh (nbdcopy) and, where the installed libnbd
# has it, dump/*.sh (nbddump), from Debian's source package of the libnbd
# installed here (fetched at run time; nothing of libnbd's is kept in the
# repository).
#
#   scripts/libnbd-tool-tests.sh [--summary FILE] [--real] [--keep] [--only TOOL[,TOOL]] [TEST.sh ...]
#
#   --summary FILE  write {"passed","failed","skipped":[...]} there (.ci/run adds them up)
#   --real          run libnbd's own tools instead of nbdjs (what the machine can pass)
#   --keep          keep the unpacked sources (their path is printed)
#   --only TOOLS    only these of info, copy, dump
#   TEST.sh ...     only these tests (by name, e.g. copy-sparse.sh)
#
# The source package comes through apt from the Debian mirror this machine's
# apt sources name (a temporary deb-src list; scripts/debian-root.sh's
# debian_mirror), unpacked in a temporary directory; tests/functions.sh is
# made from its .in by substitution (no ./configure), tests/pki by libnbd's
# make-pki.sh. Shims named nbdinfo, nbdcopy and nbddump (`node
# dist/bin/nbdjs.js info|copy|dump "$@"`) come first on PATH. A test that
# exits 77 (a requirement the machine lacks: root, the nbd kernel module,
# nbd-client) is skipped and listed. Needs a built checkout (npm ci).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/debian-root.sh

summary="" real=0 keep=0 only="info,copy,dump" picked=()
while [ $# -gt 0 ]; do
  case "$1" in
    --summary) summary=$2; shift ;;
    --real) real=1 ;;
    --keep) keep=1 ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "usage: $0 [--summary FILE] [--real] [--keep] [--only TOOLS] [TEST.sh ...]" >&2; exit 2 ;;
    *) picked+=("$1") ;;
  esac
  shift
done

nbdjs=$repo/dist/bin/nbdjs.js
if [ "$real" = 0 ] && [ ! -f "$nbdjs" ]; then echo "libnbd-tool-tests: $nbdjs is missing: build first (npm ci)" >&2; exit 1; fi

version=$(dpkg-query -W -f='${source:Version}' libnbd0) || { echo "libnbd-tool-tests: libnbd0 is not installed" >&2; exit 1; }
upstream=${version%-*}
upstream=${upstream#*:}
. /etc/os-release

work=$(mktemp -d "${TMPDIR:-/tmp}/libnbd-tool-tests.XXXXXX")
if [ "$keep" = 1 ]; then echo "libnbd-tool-tests: sources kept in $work"; else trap 'rm -rf "$work"' EXIT; fi

# Debian's source package of the installed version, through a temporary deb-src list.
mirror=$(debian_mirror) || exit 1
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
printf 'deb-src %s %s main\n' "$mirror" "$VERSION_CODENAME" >"$work/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o APT::Sandbox::User=root -qq)
echo "libnbd-tool-tests: libnbd $version: fetching its source package from $mirror ($VERSION_CODENAME)"
apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1 &&
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "libnbd=$version" >>"$work/apt.log" 2>&1) ||
  { tail -20 "$work/apt.log" >&2; echo "libnbd-tool-tests: apt-get source libnbd=$version failed" >&2; exit 1; }
tar -xzf "$work"/src/libnbd_"$upstream".orig.tar.gz -C "$work/src" || exit 1
src=$work/src/libnbd-$upstream
[ -d "$src" ] || { echo "libnbd-tool-tests: no $src in the source package" >&2; exit 1; }

# "Configure just enough": tests/functions.sh from its .in, the TLS keys.
sed -e "s|@abs_top_srcdir@|$src|; s|@abs_top_builddir@|$src|" \
  -e 's|@NBDKIT@|nbdkit|; s|@PYTHON@|python3|; s|@QEMU_NBD@|qemu-nbd|; s|@QEMU_STORAGE_DAEMON@|qemu-storage-daemon|' \
  -e 's|@CMP@|cmp|; s|@CUT@|cut|; s|@DD@|dd|; s|@REALPATH@|realpath|; s|@SED@|sed|; s|@STAT@|stat|; s|@TR@|tr|; s|@TRUNCATE@|truncate|' \
  -e 's|@[A-Za-z_]*@||g' "$src/tests/functions.sh.in" >"$src/tests/functions.sh"
if command -v certtool >/dev/null; then
  (cd "$src/tests" && SRCDIR=. CERTTOOL=certtool bash ./make-pki.sh pki-t >/dev/null 2>&1 && mv pki-t pki && touch pki/stamp-pki) ||
    echo "libnbd-tool-tests: no TLS certificates (make-pki.sh failed): TLS tests will skip"
fi

# The tools on PATH: nbdjs's subcommands, unless --real.
bin=$work/bin
mkdir -p "$bin"
if [ "$real" = 0 ]; then
  for t in info copy dump; do
    printf '#!/bin/sh\nexec node %q %s "$@"\n' "$nbdjs" "$t" >"$bin/nbd$t"
    chmod +x "$bin/nbd$t"
  done
fi
# nbdsh (some tests ask it whether URIs are supported) is Python's: let it
# find the system Python, which has libnbd's module, before any other.
if /usr/bin/python3 -c 'import nbd' 2>/dev/null && ! python3 -c 'import nbd' 2>/dev/null; then ln -s /usr/bin/python3 "$bin/python3"; fi
echo "libnbd-tool-tests: $([ "$real" = 1 ] && echo "libnbd's own tools" || echo "nbdjs ($nbdjs)") as nbdinfo, nbdcopy$([ -d "$src/dump" ] && echo ", nbddump")"

passed=0 failed=0 failures=() skipped=()
for tool in info copy dump; do
  case ",$only," in *",$tool,"*) ;; *) continue ;; esac
  [ -d "$src/$tool" ] || continue
  for path in "$src/$tool/$tool"-*.sh "$src/$tool"/test-*.sh; do
    [ -f "$path" ] || continue
    t=$(basename "$path")
    if [ ${#picked[@]} -gt 0 ] && [[ ! " ${picked[*]} " == *" $t "* ]]; then continue; fi
    log=$work/logs/$tool/$t.log
    mkdir -p "$(dirname "$log")"
    start=$SECONDS
    (cd "$src/$tool" && env srcdir=. abs_srcdir="$src/$tool" abs_top_srcdir="$src" abs_top_builddir="$src" \
      LIBNBD_DEBUG=1 EXPECTED_VERSION="$upstream" QEMU_NBD=qemu-nbd PSKTOOL="$(command -v psktool)" VG= \
      PATH="$bin:$PATH" timeout 300 bash "./$t") >"$log" 2>&1 </dev/null
    rc=$?
    case $rc in
      0) passed=$((passed + 1)); echo "PASS $tool/$t ($((SECONDS - start)) s)" ;;
      77) skipped+=("$tool/$t"); echo "SKIP $tool/$t: $(grep -m1 -E 'skipped|failed with error code|not running as root' "$log" | sed "s/^.*\.sh: //; s/'\$//")" ;;
      *) failed=$((failed + 1)); failures+=("$tool/$t"); echo "FAIL $tool/$t (exit $rc; log: $log)"; [ "$keep" = 1 ] || tail -15 "$log" | sed 's/^/    /' ;;
    esac
  done
done

echo "${passed} passed, ${failed} failed, ${#skipped[@]} skipped (libnbd $upstream)"
[ ${#skipped[@]} -eq 0 ] || echo "skipped: ${skipped[*]}"
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
if [ -n "$summary" ]; then
  node -e 'const [p, f, s] = process.argv.slice(1); process.stdout.write(JSON.stringify({ passed: Number(p), failed: Number(f), skipped: s === "" ? [] : s.split(" ") }) + "\n")' \
    "$passed" "$failed" "${skipped[*]:-}" >"$summary"
fi
[ "$failed" = 0 ]
