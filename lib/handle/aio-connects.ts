// The aio connects (aioConnectUri, ...): C's nbd_aio_connect_* return at once
// and the caller polls aioIsConnecting(). Here the call itself runs on the
// handle's driver (a name lookup or a fork blocks inside libnbd, holding its
// lock), so it returns before libnbd was even called:
//
// - the state check C makes first is made here, synchronously: a handle that
//   is not newly created (or has a connect queued) throws libnbd's EINVAL;
// - from the return, aioIsConnecting() is true (the native state queries
//   answer so while the task is queued: see `whileConnectQueued` in
//   scripts/api-table.mjs), until libnbd's own state takes over;
// - every outcome is emitted as the handle's 'connect' event: no argument
//   once connected (ready, or negotiating in opt mode), an NbdError named
//   after the aio call when libnbd's call failed (what C returns as -1:
//   a bad URI, a refused connect, a failed lookup: the state then shows
//   dead, or created where libnbd refused the arguments) or the handshake did.
import type { NativeHandle } from '../../typings/native';
import { NbdError, errno, libnbdError } from '../errors';
import { messageOf } from '../semantics';

export class AioConnects {
  /** The aio connects not ended yet: id → libnbd call name. */
  readonly #pending = new Map<number, string>();

  constructor(private readonly emit: (error: NbdError | undefined) => void) {}

  /**
   * Starts one; `start` returns the connect's id or -1 (the native error is
   * then read by `raise`).
   */
  start(n: NativeHandle, api: string, start: (n: NativeHandle) => number, raise: () => never): void {
    // libnbd's permitted-state check ("newly created"), without its lock: the
    // native aioIsCreated is false while another connect is queued.
    if (!n.aioIsCreated()) {
      const state = n.aioIsConnecting() ? 'a connect is in progress' : (n.connectionState() ?? 'closed').split(':')[0];
      throw libnbdError(api, errno.EINVAL, `invalid state: ${state}: the handle must be newly created`);
    }
    const id = start(n);
    if (id === -1) raise();
    this.#pending.set(id, api);
  }

  /** A connect ended: true if it was an aio connect (then emitted). */
  ended(id: number, errnum: number, message: string | undefined): boolean {
    const api = this.#pending.get(id);
    if (api === undefined) return false;
    this.#pending.delete(id);
    this.emit(message === undefined ? undefined : new NbdError(messageOf(api, message), errnum));
    return true;
  }

  /** The handle closed: nothing more will end. */
  clear(): void {
    this.#pending.clear();
  }
}
