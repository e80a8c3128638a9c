// Callbacks that throw odd values or break their error argument
// (fixtures/odd-callback.js), and buffers that shrink or are detached while
// their read is in flight (fixtures/mid-read-buffer.js): each case in a child
// process of its own, so that a crash or a stall is a result, not the end of
// the test run.
import { collectStrayErrors } from './helpers/faults';
import { sleep } from '../helpers/wait';
import { CRASH, howItEnded, runFixture } from './helpers/child';

const stray = collectStrayErrors();

describe('a callback that throws an odd value or breaks its error argument', () => {
  const THROWN = ['error', 'symbol', 'undefined', 'stack-getter', 'proxy'];
  const CASES = [...THROWN, 'value-accessor'].flatMap((c) => [[c, 'completion'] as const, [c, 'chunk'] as const]);

  test.each(CASES)('%s, from a %s callback: it runs once, its command and the next one settle, nothing is thrown elsewhere', async (which, form) => {
    const r = await runFixture('odd-callback.js', [which, form], { timeoutMs: 10000 });
    const line = r.lines[0];
    expect({ ended: howItEnded(r), stalled: line?.stalled }).toEqual({ ended: 'exit 0', stalled: undefined });
    expect(r.stderr).not.toMatch(CRASH);
    expect(line).toMatchObject({ calls: 1, callsAfterClose: 1, next: 'ok', stray: [] });
    if (form === 'chunk') {
      // A throw fails the command with EPROTO, the thrown value its cause.
      if (THROWN.includes(which)) expect(line.outcome).toEqual({ code: 'EPROTO', causeIsThrown: true });
      else expect(line.outcome).toEqual({ code: expect.any(String), causeIsThrown: false });
    } else if (THROWN.includes(which)) {
      // The read succeeded: the throw is reported as a warning, never lost.
      expect(line.warnings).toEqual(['NbdCallbackWarning']);
    }
  });
});

describe('a buffer that shrinks or is detached while its read is in flight', () => {
  const CASES = ['resize', 'wasm-grow'].flatMap((c) => ['aio', 'pread', 'preadStructured'].map((f) => [c, f] as const));

  test.each(CASES)('%s under %s: refused up front, or the read settles once and the connection stays usable; no crash', async (which, form) => {
    const r = await runFixture('mid-read-buffer.js', [which, form], { timeoutMs: 10000 });
    const line = r.lines[0];
    expect({ ended: howItEnded(r), stalled: line?.stalled }).toEqual({ ended: 'exit 0', stalled: undefined });
    expect(r.stderr).not.toMatch(CRASH);
    expect(line.stray).toEqual([]);
    if (line.refused !== null) {
      // A buffer that can change size is refused like any bad argument.
      expect(line.refused).toEqual({ name: expect.stringMatching(/^(TypeError|RangeError)$/), code: expect.stringMatching(/^ERR_/) });
    } else {
      expect({ calls: line.calls, next: line.next }).toEqual({ calls: 1, next: 'ok' });
    }
  });
});

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
