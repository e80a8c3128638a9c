// Waiting in tests: bounded, so that a hang fails with what was awaited
// rather than with jest's timeout.

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Resolves once `pred` holds, polling every 10 ms (other events run
 * meanwhile); rejects with "timed out waiting for WHAT" after `ms`.
 */
export async function waitFor(pred: () => boolean, what: string, ms = 10000): Promise<void> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * What `p` resolves with, or 'pending' if it has not settled within `ms`
 * (a rejection rejects). Wrap `p` in `settled()` (./outcome) to have a
 * rejection as a value too.
 */
export function within<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Blocks the JS thread for `ms` (no event loop turn), as a busy program would: libnbd's events wait meanwhile. */
export function blockThread(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
