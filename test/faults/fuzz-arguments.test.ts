// Seeded argument fuzzing of every public Handle method on fresh, connected
// and closed handles (fixtures/fuzz-handle.js, in a child process so that a
// crash is a result, not the end of the test run), and callbacks that throw
// odd values or break their error argument (fixtures/odd-callback.js).
//
// Replay a run: LIBNBD_DRIVER=loop node --no-warnings test/faults/fixtures/fuzz-handle.js STATE SEED 2000
// (the "@batch:call method(args)" lines say what was called).
import { collectStrayErrors, sleep } from './helpers/faults';
import { CRASH, howItEnded, runFixture, type ChildResult } from './helpers/child';

const SEED = 0x66757a7a; // 'fuzz'
const CALLS = 2000;

const stray = collectStrayErrors();

const STATES = ['fresh', 'connected', 'closed'] as const;

describe.each(STATES)('fuzzing every Handle method with seeded arguments, on %s handles', (state) => {
  const seed = SEED + STATES.indexOf(state);
  let run: ChildResult;
  let summary: any;

  beforeAll(async () => {
    run = await runFixture('fuzz-handle.js', [state, String(seed), String(CALLS)], { timeoutMs: 40000 });
    summary = run.lines.find((l) => 'problems' in l);
  }, 45000);

  /** The fuzzer's summary, or a failure that says how the child ended instead. */
  function result(): any {
    if (summary === undefined) throw new Error(`seed ${seed}: no summary (${howItEnded(run)}; ${JSON.stringify(run.lines.find((l) => l.stalled))})`);
    return summary;
  }

  test('the process neither crashes nor stalls, and exits 0 on its own', () => {
    const stalled = run.lines.find((l) => l.stalled);
    expect({ seed, ended: howItEnded(run), stalled }).toEqual({ seed, ended: 'exit 0', stalled: undefined });
    expect(run.stderr).not.toMatch(CRASH);
  });

  test('every method of the Handle is called (all of them, walking the prototype chain)', () => {
    const s = result();
    expect(s.methods).toBeGreaterThan(100);
    expect(s.missed).toEqual([]);
    expect(s.gaveUp).toBe(false); // stopped early after batches with unsettled Promises
    expect(s.counts.calls).toBe(CALLS);
  });

  test('every synchronous throw is a TypeError/RangeError with an ERR_ code, or an NbdError with a numeric errno and a code', () => {
    const s = result();
    expect(s.counts.syncThrows).toBeGreaterThan(0);
    expect(s.problems.badThrows).toEqual([]);
  });

  test('every returned Promise settles within 2 s, and every rejection follows the same rule', () => {
    const s = result();
    expect(s.counts.returnedPromises).toBeGreaterThan(100);
    expect({ seed, unsettled: s.problems.unsettled }).toEqual({ seed, unsettled: [] });
    expect(s.problems.badRejections).toEqual([]);
  });

  test('the completion callback of each issued command runs exactly once (close() included), of a refused one never', () => {
    const s = result();
    expect(s.problems.completions).toEqual([]);
    if (state === 'connected') expect(s.counts.issuedWithCompletion).toBeGreaterThan(10);
  });

  test('no unhandled rejection or uncaught exception, and no warning but NbdCallbackWarning', () => {
    const s = result();
    expect(s.problems.stray).toEqual([]);
    expect(Object.keys(s.warnings).filter((w) => w !== 'NbdCallbackWarning')).toEqual([]);
  });
});

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
