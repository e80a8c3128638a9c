// Seeded argument fuzzing of every public Handle method on fresh, connected
// and closed handles (fixtures/fuzz-handle.js, in a child process so that a
// crash is a result, not the end of the test run).
//
// Replay a run: LIBNBD_DRIVER=loop node --no-warnings test/faults/fixtures/fuzz-handle.js STATE SEED 2000
// (the "@batch:call method(args)" lines say what was called).
import { collectStrayErrors } from './helpers/faults';
import { sleep } from '../helpers/wait';
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
    expect({ stoppedEarly: s.gaveUp && 'after batches with unsettled Promises (see the Promise test)', missed: s.missed, calls: s.counts.calls }).toEqual({
      stoppedEarly: false,
      missed: [],
      calls: CALLS,
    });
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

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
