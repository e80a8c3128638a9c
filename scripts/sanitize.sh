#!/usr/bin/env bash
# The addon built with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/, cmake-js with -DNBDJS_SANITIZE=ON), then a subset of the jest
# suite against it, both drivers. Fails on any sanitizer report or test
# failure, and prints the reports. See docs/testing.md.
#
#   scripts/sanitize.sh [--no-build] [--summary FILE] [-- JEST_ARGS...]
#
#   --no-build      reuse build-asan/ (still compiles the TypeScript)
#   --summary FILE  write {"passed","failed","reports","status"} as JSON
#                   (failed counts failed tests, test files that did not run,
#                   and reports; .ci/run adds it to its totals). Not written
#                   when the script stops before the tests (build failure).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The tests run under the sanitizers: files, directories (their *.test.ts) or
# globs, relative to the repository root; missing entries are skipped. Every
# suite that drives the addon (all but reference/generated.test.ts, which checks
# generated files): 1.5-2 min under the sanitizers on the 2-core CI machine.
SUBSET=(
  test/core/lifetimes.test.ts
  test/core/pread-structured.test.ts
  test/core/buffer-lending.test.ts
  test/core/read-error.test.ts
  test/core/commands.test.ts
  test/core/data-commands.test.ts
  test/core/api-families.test.ts
  test/core/connect.test.ts
  test/reference/python-compare.test.ts
  test/core/reliability.test.ts
  test/core/drain.test.ts
  test/core/connection-events.test.ts
  test/core/poll.test.ts
  test/core/thread-reader.test.ts
  test/core/tls-certs.test.ts
  test/io
  test/faults
)

build=1
summary=""
jest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --summary) summary=$2; shift ;;
    --) shift; jest_args=("$@"); break ;;
    *) echo "usage: $0 [--no-build] [--summary FILE] [-- JEST_ARGS...]" >&2; exit 2 ;;
  esac
  shift
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/nbdjs-sanitize.XXXXXX")
binding=$root/build-asan/Release/nbd.node
if [ "$build" = 1 ]; then
  start=$SECONDS
  npm run --silent build:sanitize >"$logs/build.log" 2>&1 ||
    { cat "$logs/build.log"; echo "sanitize: build failed" >&2; exit 1; }
  echo "sanitize: built $binding in $((SECONDS - start)) s"
fi
npx tsc -p tsconfig.json
[ -f "$binding" ] || { echo "sanitize: $binding is missing (run without --no-build)" >&2; exit 1; }

files=()
shopt -s nullglob globstar
for entry in "${SUBSET[@]}"; do
  for match in $entry; do
    if [ -d "$match" ]; then
      files+=("$match"/**/*.test.ts)
    elif [ -f "$match" ]; then
      files+=("$match")
    fi
  done
done
shopt -u nullglob globstar
[ ${#files[@]} -gt 0 ] || { echo "sanitize: no test files in SUBSET" >&2; exit 1; }

results=$logs/jest.json
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$asan" "$ubsan"; do
  [ -e "$lib" ] || { echo "sanitize: $lib not found (gcc's sanitizer runtimes)" >&2; exit 1; }
done
# UBSan's log_path fix-up for a process with both runtimes (see the file).
ubsan_log=$logs/ubsan-log-path.so
gcc -shared -fPIC -O1 -Wall -Wextra -o "$ubsan_log" scripts/sanitize/ubsan-log-path.c -Wl,--no-as-needed "$ubsan"

# Node itself is not instrumented: the runtimes are preloaded so that they come
# first, as the instrumented addon needs. detect_leaks=0: LeakSanitizer would
# report Node's own never-freed allocations at exit. Reports go to files
# (report.PID, one prefix for both runtimes; NBDJS_UBSAN_LOG_PATH for
# ubsan-log-path.so) so that those of jest's workers and of fixture processes
# are kept; preload.js keeps LD_PRELOAD and the options out of the servers'
# environment.
#
# The run gets a process group of its own (setsid): a jest worker the
# sanitizer kills never runs its afterAll, and the servers it started
# (qemu-nbd has no --exit-with-parent) would outlive it, holding jest's pipes
# open; --forceExit and killing the group afterwards end them.
set +e
LD_PRELOAD="$asan $ubsan $ubsan_log" \
NBDJS_UBSAN_LOG_PATH="$logs/report" \
ASAN_OPTIONS="detect_leaks=0:log_path=$logs/report" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1:suppressions=$root/scripts/sanitize/ubsan.supp:log_path=$logs/report" \
NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--require=$root/scripts/sanitize/preload.js" \
LIBNBD_BINDING="$binding" \
setsid bash -c '
  node scripts/sanitize/check-env.js || exit 1
  exec node node_modules/jest/bin/jest.js --ci --forceExit --runTestsByPath "$@"
' sanitize --json --outputFile="$results" "${jest_args[@]}" "${files[@]}" &
group=$!
trap 'kill -TERM -- -$group 2>/dev/null; exit 130' INT TERM
wait "$group"
status=$?
trap - INT TERM
kill -TERM -- -"$group" 2>/dev/null
set -e

# Every report's summary line; the first few in full (a worker killed by a
# report is retried by jest, so one bug often leaves several).
nreports=0
for r in "$logs"/report.*; do
  [ -s "$r" ] || continue
  nreports=$((nreports + 1))
  if [ "$nreports" -le 3 ]; then
    echo "==================== sanitizer report $r"
    cat "$r"
  fi
done
if [ "$nreports" -gt 0 ]; then
  echo "==================== $nreports sanitizer reports in $logs:"
  for r in "$logs"/report.*; do
    [ -s "$r" ] || continue
    echo "$(basename "$r"): $(grep -m1 -h '^SUMMARY:' "$r" || grep -m1 -h 'ERROR\|runtime error' "$r" || head -1 "$r")"
  done
fi

counts=$(node -e '
  const fs = require("fs");
  let passed = 0, failed = 0;
  if (fs.existsSync(process.argv[1])) {
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    passed = r.numPassedTests;
    failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
  }
  console.log(passed, failed);
' "$results")
read -r passed failed <<<"$counts"
failed=$((failed + nreports))
if [ "$status" != 0 ] || [ "$nreports" != 0 ]; then
  [ "$failed" != 0 ] || failed=1
  status=1
fi
if [ -n "$summary" ]; then
  printf '{"passed":%d,"failed":%d,"reports":%d,"status":%d}\n' "$passed" "$failed" "$nreports" "$status" >"$summary"
fi
echo "sanitize: ${#files[@]} test files, $passed passed, $failed failed, $nreports sanitizer reports (logs: $logs)"
exit "$status"
