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
