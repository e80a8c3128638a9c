// Stage: poll(). C waits for libnbd with `nbd_poll(h, timeout)`, which runs
// the state machine once; here the driver runs it, so a poll() waits for the
// delivery of the driver's next run: the native side queues a `polled` event
// after that run's events (native/drivers/driver_host.cc, MarkRunsDelivered). Polled events
// are numbered; the native poll() returns how many were queued so far, and
// the poll settles with the first one queued after that. A timeout settles
// it with 0.
import type { NbdError } from '../errors';

interface Waiter {
  /** The polled events queued when this poll began: a later one settles it. */
  readonly after: number;
  resolve(value: number): void;
  reject(e: NbdError): void;
  /** Stops the timeout's timer (none without a timeout). */
  cancelTimer: (() => void) | undefined;
}

export class Polls {
  #waiting = new Set<Waiter>();

  /**
   * A poll that began after `after` polled events: resolves 1 with the next
   * one, 0 after `timeout` ms (0: in this turn of the event loop, with
   * setImmediate; negative: never).
   */
  wait(after: number, timeout: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const w: Waiter = { after, resolve, reject, cancelTimer: undefined };
      const expire = () => {
        w.cancelTimer = undefined;
        if (this.#waiting.delete(w)) resolve(0);
      };
      if (timeout === 0) {
        const immediate = setImmediate(expire);
        w.cancelTimer = () => clearImmediate(immediate);
      } else if (timeout > 0) {
        const timer = setTimeout(expire, timeout);
        w.cancelTimer = () => clearTimeout(timer);
      }
      this.#waiting.add(w);
    });
  }

  /** A polled event, the `sequence`th: the polls that began before it was queued resolve 1. */
  polled(sequence: number): void {
    for (const w of this.#waiting) {
      if (w.after >= sequence) continue;
      this.#waiting.delete(w);
      w.cancelTimer?.();
      w.resolve(1);
    }
  }

  /** close(): every poll waiting rejects with `err`. */
  closeAll(err: NbdError): void {
    const waiting = this.#waiting;
    this.#waiting = new Set();
    for (const w of waiting) {
      w.cancelTimer?.();
      w.reject(err);
    }
  }
}
