// Loaded into every Node process of a sanitizer run (scripts/sanitize.sh sets
// NODE_OPTIONS=--require=<this file>), before any other code. See
// docs/testing.md.
//
// Node runs with the gcc sanitizer runtimes in LD_PRELOAD (the instrumented
// addon needs them loaded first), but servers must not: nbdkit under the ASan
// runtime deadlocks at exit, and sanitizer reports of other programs are not
// ours. Servers are started by libnbd's connectCommand (fork + exec with the
// process's `environ`), by child_process with the default `process.env`, or
// by Python/other programs that inherit their environment. So this removes
// the variables from the real environment (Node's `delete process.env.X` is
// unsetenv(3), which updates `environ`), and gives them back only to the Node
// children this process spawns (jest workers, test fixtures), which run this
// file again.
//
// A jest setup file cannot do this: in a test file, `process.env` is a copy
// made by jest's environment, and deleting from it leaves `environ` alone.
'use strict';

const KEYS = ['LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS'];
const saved = [];
for (const key of KEYS) {
  if (process.env[key] !== undefined) {
    saved.push(`${key}=${process.env[key]}`);
    delete process.env[key];
  }
}

// Every asynchronous spawn (spawn, fork, execFile, exec) goes through
// ChildProcess.prototype.spawn with the final argv[0] file and envPairs.
const { ChildProcess } = require('node:child_process');
const spawn = ChildProcess.prototype.spawn;
ChildProcess.prototype.spawn = function spawnWithSanitizers(options) {
  if (saved.length && options && options.file === process.execPath && Array.isArray(options.envPairs)) {
    const envPairs = options.envPairs.filter((pair) => !KEYS.some((key) => pair.startsWith(`${key}=`)));
    options = { ...options, envPairs: [...envPairs, ...saved] };
  }
  return spawn.call(this, options);
};
