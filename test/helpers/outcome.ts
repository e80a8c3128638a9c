// What a call ended with: `outcome` in one shape for this binding and for
// libnbd's Python binding, so that a test compares the two outcomes whole;
// `settled` for a Promise whatever it rejects with; `failure` and `errnoOf`
// for the NbdError itself.
import { NbdError } from '../../lib';
import { runPython } from './python';

/** ['ok', value] or ['err', errno code, message]. */
export type Outcome = ['ok', unknown] | ['err', string, string];

/** The outcome of a call, sync or async; anything thrown that is not an NbdError fails the test. */
export async function outcome(f: () => unknown): Promise<Outcome> {
  try {
    return ['ok', await f()];
  } catch (e) {
    if (!(e instanceof NbdError)) throw e;
    return ['err', e.code, e.message];
  }
}

/** What a Promise settled with ({ value } or { error }), without an unhandled rejection. */
export type Settled<T> = { value?: T; error?: any };

export function settled<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ value }),
    (error) => ({ error }),
  );
}

/** Whether a settled Promise rejected (with whatever value, undefined included). */
export const rejected = (s: Settled<unknown>): boolean => 'error' in s;

/** The errno of an NbdError; anything else thrown fails the test. */
export function errnoOf(e: unknown): number {
  if (!(e instanceof NbdError)) throw e;
  return e.errno;
}

/** The NbdError a call threw or its Promise rejected with (fails the test if none). */
export async function failure(f: () => unknown): Promise<NbdError> {
  let r: unknown;
  try {
    r = await f();
  } catch (e) {
    if (e instanceof NbdError) return e;
    throw e;
  }
  throw new Error(`expected an NbdError, got the value ${String(r)}`);
}

/** Python's side of `outcome` (None becomes null, as undefined does in JSON). */
const PY_PRELUDE = `
import nbd, errno, json, sys
def outcome(f):
    try:
        return ['ok', f()]
    except nbd.Error as e:
        return ['err', errno.errorcode.get(e.errnum, 'E%d' % e.errnum), e.string]
`;

/** Runs `script` after a prelude (nbd, errno, json, sys, `outcome`); resolves with its last stdout line's JSON. */
export function python<T = any>(script: string, ...args: string[]): Promise<T> {
  return runPython<T>(PY_PRELUDE + script, { args, timeoutMs: 30000 });
}

/** A value as JSON carries it (undefined becomes null), to compare with what Python printed. */
export function asJson(o: unknown): unknown {
  return JSON.parse(JSON.stringify(o));
}
