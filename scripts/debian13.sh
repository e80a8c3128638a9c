#!/usr/bin/env bash
# The suite on Debian 13 "trixie" (libnbd 1.22, nbdkit 1.42, qemu-nbd 10,
# Node 20.19 from Debian), in a debootstrap root on this machine
# (scripts/debian-root.sh: cached, keyed by its packages). A copy of this
# checkout (the files git knows: tracked, and untracked but not ignored) goes
# into the root, where a new user's two steps run: `bash scripts/setup.sh`,
# then the README's test command.
#
#   scripts/debian13.sh [--summary FILE] [--tools-summary FILE] [--shell] [-- JEST_ARGS...]
#
#   --summary FILE  write jest's JSON results there (.ci/run adds them up)
#   --tools-summary FILE  after the suite, libnbd's own tests of nbdinfo,
#                   nbdcopy and nbddump with nbdjs standing in
#                   (scripts/libnbd-tool-tests.sh); its summary goes to FILE
#   --shell         an interactive shell in the root instead, at the copy
#   JEST_ARGS       go to `npm test --` (e.g. test/cli/info.test.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/debian-root.sh

summary="" tools_summary="" shell=0 jest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --summary) summary=$2; shift ;;
    --tools-summary) tools_summary=$2; shift ;;
    --shell) shell=1 ;;
    --) shift; jest_args=("$@"); break ;;
    *) echo "usage: $0 [--summary FILE] [--tools-summary FILE] [--shell] [-- JEST_ARGS...]" >&2; exit 2 ;;
  esac
  shift
done

start=$SECONDS
# What a new user installs by hand before the README's steps, and what
# setup.sh would install (cached in the root, so setup.sh finds it there).
packages="nodejs npm libnode-dev git sudo file $(bash scripts/setup.sh --print-packages)"
root=$(debian_root trixie "$packages")

work=$(mktemp -d "${TMPDIR:-/tmp}/nbdjs-debian13.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/nbdjs"
git ls-files -z --cached --others --exclude-standard |
  tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -x -C "$work/nbdjs"

if [ "$shell" = 1 ]; then
  in_debian_root "$root" "$work" bash -c 'cd /work/nbdjs && exec bash -i'
  exit
fi

echo "debian13: $(in_debian_root "$root" "" sh -c 'echo "libnbd $(dpkg-query -W -f="\${Version}" libnbd0), nbdkit $(dpkg-query -W -f="\${Version}" nbdkit), node $(node --version)"')"
set +e
in_debian_root "$root" "$work" bash -c '
  tools=$1; shift
  cd /work/nbdjs
  bash scripts/setup.sh >/work/setup.log 2>&1 || { tail -30 /work/setup.log; echo "debian13: setup.sh failed" >&2; exit 1; }
  npm test -- --json --outputFile=/work/jest.json "$@"
  rc=$?
  if [ "$tools" = 1 ]; then bash scripts/libnbd-tool-tests.sh --summary /work/tools.json || rc=1; fi
  exit $rc
' _ "$([ -n "$tools_summary" ] && echo 1 || echo 0)" "${jest_args[@]}"
rc=$?
set -e
if [ -n "$summary" ] && [ -f "$work/jest.json" ]; then cp "$work/jest.json" "$summary"; fi
if [ -n "$tools_summary" ] && [ -f "$work/tools.json" ]; then cp "$work/tools.json" "$tools_summary"; fi
echo "debian13: exit $rc after $((SECONDS - start)) s"
exit "$rc"
