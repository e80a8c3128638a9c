// The tests' jest environment: Node's, with console output held back and
// shown only for a test that fails.
//
// The tests start real servers that are meant to complain (a client cut off
// mid-reply, injected errors); test/helpers/output.ts hands their stderr to
// console.error at the end of each test. Here each console call waits for
// the verdict of the test it belongs to: written to stderr under the test's
// name if the test failed, dropped if it passed. Output from outside any test (beforeAll,
// afterAll) goes with the next test's verdict, or is shown at the end of the
// file if a hook failed. A passing `npm test` thus prints jest's summary only.
'use strict';
const { format } = require('node:util');
const { TestEnvironment } = require('jest-environment-node');

class HeldOutputEnvironment extends TestEnvironment {
  /** Console calls not yet judged: [method, args]. */
  held = [];
  /** A hook of this file failed: show everything held at the end. */
  hookFailed = false;

  async setup() {
    await super.setup();
    const real = this.global.console;
    const held = this.held;
    const quiet = Object.create(real);
    for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir', 'table']) {
      if (typeof real[method] === 'function') quiet[method] = (...args) => void held.push([method, args]);
    }
    this.global.console = quiet;
  }

  show(title) {
    const calls = this.held.splice(0);
    if (calls.length === 0) return;
    const text = calls.map(([method, args]) => `console.${method}: ${format(...args)}\n`).join('');
    process.stderr.write(`\n---- output held back during ${title} ----\n${text}---- end ----\n`);
  }

  async handleTestEvent(event) {
    if (event.name === 'test_done') {
      if (event.test.errors.length > 0) this.show(`"${testName(event.test)}" (failed)`);
      else this.held.length = 0;
    } else if (event.name === 'hook_failure') {
      this.hookFailed = true;
      this.show(`a failed ${event.hook.type} hook`);
    } else if (event.name === 'run_finish') {
      if (this.hookFailed) this.show('the rest of the file');
      else this.held.length = 0;
    }
  }
}

function testName(test) {
  const names = [];
  for (let t = test; t && t.name !== 'ROOT_DESCRIBE_BLOCK'; t = t.parent) names.unshift(t.name);
  return names.join(' › ');
}

module.exports = HeldOutputEnvironment;
