// Run by scripts/sanitize.sh before the tests, in the sanitizer environment
// (LD_PRELOAD, ASAN_OPTIONS, UBSAN_OPTIONS, NODE_OPTIONS=--require=preload.js,
// LIBNBD_BINDING=the instrumented build). Checks what preload.js promises:
//  - this process has the ASan runtime and the instrumented addon loaded, and
//    no sanitizer variable left in its environment;
//  - a server forked by connectCommand (both drivers) and a program started
//    by child_process have none of them;
//  - a Node child gets them back (and has the runtime loaded).
'use strict';
const { readFileSync, readdirSync } = require('node:fs');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const path = require('node:path');
const { Handle } = require(path.join(__dirname, '../../dist/lib'));

const KEYS = ['LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS'];
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};
const sanitizerVars = (environ) => environ.filter((e) => KEYS.some((k) => e.startsWith(`${k}=`)));
const environOf = (pid) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');

function childrenOf(pid) {
  const kids = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // Fields after "(comm) ": state ppid ...
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] === String(pid)) kids.push(d);
    } catch {
      // gone meanwhile
    }
  }
  return kids;
}

(async () => {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  check(/libasan\.so/.test(maps), 'this process has no libasan mapped (LD_PRELOAD not applied?)');
  check(maps.includes(path.resolve(process.env.LIBNBD_BINDING || '?')), `the addon in use is not ${process.env.LIBNBD_BINDING}`);
  check(sanitizerVars(Object.keys(process.env).map((k) => `${k}=`)).length === 0, 'sanitizer variables left in process.env');

  for (const driver of ['loop', 'thread']) {
    const h = new Handle({ driver });
    await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'memory', 'size=1M']);
    const servers = childrenOf(process.pid).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('nbdkit\0'));
    check(servers.length === 1, `${driver}: expected one nbdkit child, found ${servers.length}`);
    for (const pid of servers) {
      const leaked = sanitizerVars(environOf(pid));
      check(leaked.length === 0, `${driver}: connectCommand'd nbdkit (pid ${pid}) has ${leaked.join(' ')}`);
      console.log(`check-env: ${driver}: nbdkit pid ${pid} started by connectCommand: ${leaked.length ? leaked.join(' ') : 'no sanitizer variables'}`);
    }
    await h.pread(Buffer.alloc(4096), 0);
    await h.shutdown();
    h.close();
  }

  const run = promisify(execFile);
  const other = (await run('/usr/bin/env', [])).stdout.split('\n');
  check(sanitizerVars(other).length === 0, `child_process child has ${sanitizerVars(other).join(' ')}`);

  const probe = `process.stdout.write(JSON.stringify({ asan: /libasan/.test(require('fs').readFileSync('/proc/self/maps', 'utf8')),
    environ: require('fs').readFileSync('/proc/self/environ', 'utf8').split('\\0').filter((e) => /^(LD_PRELOAD|ASAN_OPTIONS|UBSAN_OPTIONS)=/.test(e)).length,
    env: ${JSON.stringify(KEYS)}.filter((k) => process.env[k] !== undefined).length }))`;
  const node = JSON.parse((await run(process.execPath, ['-e', probe])).stdout);
  check(node.asan, 'a Node child has no libasan mapped');
  check(node.environ === KEYS.length, `a Node child started with ${node.environ} of the ${KEYS.length} sanitizer variables`);
  check(node.env === 0, 'a Node child kept sanitizer variables in process.env (preload not run?)');

  if (failures.length) {
    for (const f of failures) console.error(`check-env: FAILED: ${f}`);
    process.exit(1);
  }
  console.log('check-env: ok (servers start without the sanitizer runtime; Node children with it)');
})().catch((e) => {
  console.error('check-env:', e);
  process.exit(1);
});
