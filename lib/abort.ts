// AbortSignal support of the Promise forms. One 'abort' listener per signal,
// however many commands wait on it (a queue of 64 reads on one signal must
// not add 64 listeners, nor trip EventTarget's leak warning), removed as
// soon as no command waits on it any more.
import { abortError } from './errors';

type Closure = (...args: never[]) => unknown;

/** Wraps a callback of a command so that it is no longer called once the command's Promise was aborted. */
export type Live = <F extends Closure>(f: F) => F;

const identity: Live = (f) => f;

interface Watch {
  readonly listener: () => void;
  readonly waiting: Set<() => void>;
}

const watches = new Map<AbortSignal, Watch>();

/** Calls `onAbort` when `signal` aborts; returns the unsubscribe function (idempotent). */
function subscribe(signal: AbortSignal, onAbort: () => void): () => void {
  let watch = watches.get(signal);
  if (watch === undefined) {
    const waiting = new Set<() => void>();
    const listener = (): void => {
      watches.delete(signal);
      for (const f of waiting) {
        try {
          f();
        } catch {
          // Each waiter is told whatever another one did.
        }
      }
      waiting.clear();
    };
    watch = { listener, waiting };
    watches.set(signal, watch);
    signal.addEventListener('abort', listener, { once: true });
  }
  const entry = (): void => onAbort(); // a Set entry of its own, even for the same function twice
  watch.waiting.add(entry);
  return () => {
    const w = watches.get(signal);
    if (w === undefined || !w.waiting.delete(entry)) return;
    if (w.waiting.size === 0) {
      watches.delete(signal);
      signal.removeEventListener('abort', w.listener);
    }
  };
}

/**
 * `run()` with a signal: an already-aborted signal rejects at once without
 * calling `run`; a signal aborted before `run`'s Promise settles rejects
 * with an AbortError (the signal's reason as cause), calls `onAbort`, and
 * drops what `run`'s Promise settles with later (`dropped` sees a rejection).
 * `run` gets `live`, which wraps callbacks so that they stop being called
 * once aborted. Without a signal, `run` is called as it is.
 */
export function abortable<T>(
  signal: AbortSignal | undefined,
  run: (live: Live) => Promise<T>,
  onAbort?: () => void,
  dropped?: (e: unknown) => void,
): Promise<T> {
  if (signal === undefined) return run(identity);
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let aborted = false;
    const unsubscribe = subscribe(signal, () => {
      if (settled) return;
      settled = aborted = true;
      reject(abortError(signal));
      if (onAbort !== undefined) onAbort();
    });
    const live: Live = <F extends Closure>(f: F): F =>
      ((...args: never[]) => (aborted ? 0 : f(...args))) as F;
    let p: Promise<T>;
    try {
      p = run(live);
    } catch (e) {
      settled = true;
      unsubscribe();
      reject(e);
      return;
    }
    p.then(
      (v) => {
        if (settled) return;
        settled = true;
        unsubscribe();
        resolve(v);
      },
      (e: unknown) => {
        if (settled) {
          if (aborted && dropped !== undefined) dropped(e);
          return;
        }
        settled = true;
        unsubscribe();
        reject(e);
      },
    );
  });
}
