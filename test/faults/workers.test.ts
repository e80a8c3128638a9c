// worker_threads terminated at seeded random moments, mid-connect or with
// 1–64 commands kept in flight (fixtures/workers-midio.js, in a child
// process so that a crash cannot take the test runner down).
//
// Replay: LIBNBD_DRIVER=loop node --no-warnings test/faults/fixtures/workers-midio.js SEED 18
import { collectStrayErrors } from './helpers/faults';
import { sleep } from '../helpers/wait';
import { CRASH, howItEnded, runFixture, type ChildResult } from './helpers/child';

const SEED = 0x776f726b; // 'work'
const WORKERS = 18;

const stray = collectStrayErrors();

describe(`${WORKERS} workers terminated at seeded moments, mid-connect or mid-I/O`, () => {
  let run: ChildResult;
  let workers: any[];
  let summary: any;

  beforeAll(async () => {
    run = await runFixture('workers-midio.js', [String(SEED), String(WORKERS)], { timeoutMs: 30000 });
    workers = run.lines.filter((l) => 'worker' in l);
    summary = run.lines.find((l) => l.summary);
  }, 35000);

  /** The summary line, or a failure that says how the child ended instead. */
  function result(): any {
    if (summary === undefined) throw new Error(`seed ${SEED}: no summary (${howItEnded(run)})`);
    return summary;
  }

  test('the process does not crash and exits 0 on its own', () => {
    expect({ seed: SEED, ended: howItEnded(run) }).toEqual({ seed: SEED, ended: 'exit 0' });
    expect(run.stderr).not.toMatch(CRASH);
    expect(summary).toBeDefined();
  });

  test('every worker ends terminated (exit code 1), with no error event and no error of its own', () => {
    expect(workers).toHaveLength(WORKERS);
    const odd = workers.filter((w) => w.code !== 1 || w.errored !== null || w.messages.some((m: string) => m.startsWith('error')));
    expect(odd).toEqual([]);
  });

  test('most were terminated with commands in flight, some while connecting', () => {
    expect(result().midIo).toBeGreaterThanOrEqual(WORKERS / 2);
    expect(workers.some((w) => w.at === 'connecting')).toBe(true);
  });

  test('the terminated workers leave no fd and no child process behind, and the main thread still reads', () => {
    const s = result();
    expect({ extraFds: s.extraFds, childrenLeft: s.childrenLeft, mainReadOk: s.mainReadOk }).toEqual({
      extraFds: [],
      childrenLeft: [],
      mainReadOk: true,
    });
  });

  test('no unhandled rejection in the child process', () => {
    expect(result().unhandled).toEqual([]);
  });
});

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
