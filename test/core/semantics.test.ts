// lib/semantics.ts without a server: libnbd's error rules for a command's
// callbacks, one rule a test. The same rules run end to end (and against
// libnbd's Python binding) in read-error, python-compare and
// pread-structured; here each is pinned on its own, so a regression names
// the rule it breaks.
import { constants as os } from 'node:os';
import { READ_DATA, READ_ERROR, READ_HOLE } from '../../lib';
import { READ_ERROR_MARKER } from '../../lib/generated/event-wire';
import {
  adoptLibnbdError,
  applyChunkResult,
  applyCompletionResult,
  chunkErrorOnEntry,
  errnoValue,
  finalError,
  type CommandErrorState,
} from '../../lib/semantics';

const { EIO, ENOMEM, ENOSPC, EPROTO, EINVAL } = os.errno;

/** A command as libnbd starts it: no error recorded. */
function fresh(): CommandErrorState {
  return { error: 0, replaced: false, deferredReadError: undefined };
}

/** A command that has already recorded `error`. */
function failed(error: number): CommandErrorState {
  return { error, replaced: false, deferredReadError: undefined };
}

test('the READ_ERROR marker is no errno a server or the host could report', () => {
  expect(Object.values(os.errno)).not.toContain(READ_ERROR_MARKER);
  expect(READ_ERROR_MARKER).toBeGreaterThan(0xffff);
});

describe('adoptLibnbdError', () => {
  test("adopts libnbd's recorded server error while the command has none", () => {
    const cmd = fresh();
    adoptLibnbdError(cmd, EIO);
    expect(cmd.error).toBe(EIO);
  });

  test('keeps the first error: a later one from libnbd does not replace it', () => {
    const cmd = failed(ENOMEM);
    adoptLibnbdError(cmd, EIO);
    expect(cmd.error).toBe(ENOMEM);
  });

  test('records nothing for 0 or for the marker when no READ_ERROR is pending', () => {
    const cmd = fresh();
    adoptLibnbdError(cmd, 0);
    adoptLibnbdError(cmd, READ_ERROR_MARKER);
    expect(cmd).toEqual(fresh());
  });

  test("settles a pending READ_ERROR as the server's errno when the marker follows and its callback returned 0", () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, 0, ENOMEM);
    adoptLibnbdError(cmd, READ_ERROR_MARKER);
    expect(cmd.error).toBe(ENOSPC);
    expect(cmd.deferredReadError).toBeUndefined();
  });

  test('settles a pending READ_ERROR as the errno its callback chose with -1 and a non-zero value', () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, ENOMEM);
    adoptLibnbdError(cmd, READ_ERROR_MARKER);
    expect(cmd.error).toBe(ENOMEM);
  });

  test("settles a pending READ_ERROR as the server's errno when its callback returned -1 with value 0", () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, 0);
    adoptLibnbdError(cmd, READ_ERROR_MARKER);
    expect(cmd.error).toBe(ENOSPC);
  });

  test("drops a pending READ_ERROR for libnbd's earlier error when the next event carries that error instead of the marker", () => {
    // A plain error reply before the READ_ERROR chunk left no event of its
    // own: the next event's error is how JS learns of it.
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, ENOMEM);
    adoptLibnbdError(cmd, EIO);
    expect(cmd.error).toBe(EIO);
    expect(cmd.deferredReadError).toBeUndefined();
  });

  test('settles a pending READ_ERROR once: a second marker changes nothing', () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, 0, 0);
    adoptLibnbdError(cmd, READ_ERROR_MARKER);
    adoptLibnbdError(cmd, READ_ERROR_MARKER);
    adoptLibnbdError(cmd, EIO);
    expect(cmd.error).toBe(ENOSPC);
  });
});

describe('chunkErrorOnEntry', () => {
  test("gives a READ_ERROR chunk its own server errno, whatever the command recorded before", () => {
    const cmd = failed(ENOMEM);
    expect(chunkErrorOnEntry(cmd, READ_ERROR, ENOSPC)).toBe(ENOSPC);
    expect(cmd.error).toBe(ENOMEM);
  });

  test('does not record the errno a READ_ERROR chunk sees on entry', () => {
    const cmd = fresh();
    chunkErrorOnEntry(cmd, READ_ERROR, ENOSPC);
    expect(cmd.error).toBe(0);
  });

  test("gives a DATA or HOLE chunk the command's error, adopting libnbd's record first", () => {
    const cmd = fresh();
    expect(chunkErrorOnEntry(cmd, READ_DATA, EIO)).toBe(EIO);
    expect(cmd.error).toBe(EIO);
    expect(chunkErrorOnEntry(cmd, READ_HOLE, 0)).toBe(EIO);
  });

  test("gives a DATA chunk after a failed chunk callback that callback's errno, not libnbd's later record", () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_DATA, 0, -1, ENOMEM);
    expect(chunkErrorOnEntry(cmd, READ_DATA, EIO)).toBe(ENOMEM);
  });

  test('gives a DATA chunk after a READ_ERROR chunk the errno that READ_ERROR settled on', () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, ENOMEM);
    expect(chunkErrorOnEntry(cmd, READ_DATA, READ_ERROR_MARKER)).toBe(ENOMEM);
  });

  test('gives a DATA chunk 0 while nothing failed', () => {
    expect(chunkErrorOnEntry(fresh(), READ_DATA, 0)).toBe(0);
  });
});

describe('applyChunkResult', () => {
  test('records the value a DATA or HOLE callback set when it returns -1', () => {
    const data = fresh();
    applyChunkResult(data, READ_DATA, 0, -1, ENOMEM);
    expect(data.error).toBe(ENOMEM);
    const hole = fresh();
    applyChunkResult(hole, READ_HOLE, 0, -1, EINVAL);
    expect(hole.error).toBe(EINVAL);
  });

  test('records EPROTO when a DATA callback returns -1 without setting a value', () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_DATA, 0, -1, 0);
    expect(cmd.error).toBe(EPROTO);
  });

  test('does not replace an earlier error with a failed DATA callback', () => {
    const cmd = failed(EIO);
    applyChunkResult(cmd, READ_DATA, EIO, -1, ENOMEM);
    expect(cmd.error).toBe(EIO);
  });

  test.each([[0], [1], [-2], ['-1'], [undefined], [null], [true]])(
    'counts only -1 as a failure: a DATA callback returning %p records nothing, whatever value it set',
    (ret) => {
      const cmd = fresh();
      applyChunkResult(cmd, READ_DATA, 0, ret, ENOMEM);
      expect(cmd).toEqual(fresh());
    },
  );

  test('defers a READ_ERROR chunk (nothing recorded yet) until the next event tells what libnbd had before', () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, ENOMEM);
    expect(cmd.error).toBe(0);
    expect(cmd.deferredReadError).toEqual([ENOSPC, -1, ENOMEM]);
  });

  test('keeps the first pending READ_ERROR when a second READ_ERROR chunk arrives', () => {
    const cmd = fresh();
    applyChunkResult(cmd, READ_ERROR, ENOSPC, 0, 0);
    applyChunkResult(cmd, READ_ERROR, EIO, -1, ENOMEM);
    expect(cmd.deferredReadError).toEqual([ENOSPC, 0, 0]);
  });

  test('defers nothing for a READ_ERROR chunk once an error is recorded', () => {
    const cmd = failed(EIO);
    applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, ENOMEM);
    expect(cmd).toEqual(failed(EIO));
  });
});

describe('applyCompletionResult', () => {
  test("replaces the command's error, even an earlier one, when the callback returns -1 with a non-zero value", () => {
    const cmd = failed(EIO);
    applyCompletionResult(cmd, -1, ENOMEM);
    expect(cmd).toMatchObject({ error: ENOMEM, replaced: true });
  });

  test('changes nothing when the callback returns -1 with value 0', () => {
    const cmd = failed(EIO);
    applyCompletionResult(cmd, -1, 0);
    expect(cmd).toEqual(failed(EIO));
    const ok = fresh();
    applyCompletionResult(ok, -1, 0);
    expect(ok).toEqual(fresh());
  });

  test('asks for auto-retirement only when the callback returns 1', () => {
    expect(applyCompletionResult(fresh(), 1, 0)).toBe(true);
    for (const ret of [0, -1, 2, true, '1', undefined]) expect(applyCompletionResult(fresh(), ret, 0)).toBe(false);
  });

  test('leaves the error alone when the callback returns 1 with a value set', () => {
    const cmd = fresh();
    expect(applyCompletionResult(cmd, 1, ENOMEM)).toBe(true);
    expect(cmd).toEqual(fresh());
  });
});

describe('finalError', () => {
  test("reports the command's error before what libnbd found at retirement", () => {
    expect(finalError(failed(ENOMEM), EPROTO)).toBe(ENOMEM);
  });

  test('reports the retirement error (a short structured read) when the command recorded none', () => {
    expect(finalError(fresh(), EPROTO)).toBe(EPROTO);
    expect(finalError(fresh(), EIO)).toBe(EIO);
  });

  test("reports a completion callback's replacement over the retirement error", () => {
    const cmd = fresh();
    applyCompletionResult(cmd, -1, ENOMEM);
    expect(finalError(cmd, EPROTO)).toBe(ENOMEM);
  });

  test('reports 0 for a command nothing went wrong with', () => {
    expect(finalError(fresh(), 0)).toBe(0);
  });
});

describe('errnoValue', () => {
  test("reads a number as C's int: truncated toward zero, wrapped to 32 bits", () => {
    expect(errnoValue(ENOMEM)).toBe(ENOMEM);
    expect(errnoValue(5.9)).toBe(5);
    expect(errnoValue(-1)).toBe(-1);
    expect(errnoValue(2 ** 32 + 5)).toBe(5);
    expect(errnoValue(NaN)).toBe(0);
  });

  test('reads anything but a number as 0', () => {
    for (const v of ['5', 5n, undefined, null, { valueOf: () => 5 }]) expect(errnoValue(v)).toBe(0);
  });
});

test('a READ_ERROR whose callback chose ENOMEM, then a DATA chunk, then the completion: the command fails ENOMEM', () => {
  // The sequence libnbd's Python binding shows in read-error.test.ts, replayed by hand.
  const cmd = fresh();
  expect(chunkErrorOnEntry(cmd, READ_ERROR, ENOSPC)).toBe(ENOSPC);
  applyChunkResult(cmd, READ_ERROR, ENOSPC, -1, ENOMEM);
  expect(chunkErrorOnEntry(cmd, READ_DATA, READ_ERROR_MARKER)).toBe(ENOMEM);
  applyChunkResult(cmd, READ_DATA, READ_ERROR_MARKER, 0, ENOMEM);
  adoptLibnbdError(cmd, READ_ERROR_MARKER);
  expect(applyCompletionResult(cmd, 0, ENOMEM)).toBe(false);
  expect(finalError(cmd, 0)).toBe(ENOMEM);
});
