// Stage: connections. The Promises of connect*() calls, each waiting for the
// end of its own connect (by the id the native side gave it), the
// aioConnect*() calls (aio-connects.ts; their end is the handle's 'connect'
// event), those of shutdown()/optAbort() waiting for the connection to
// close, and the handle's 'disconnect' event, emitted once per connection.
import type { EventEmitter } from 'node:events';
import type { ConnectedPayload, ConnectionLostPayload, DisconnectedPayload } from '../generated/event-decode';
import { NbdError } from '../errors';
import { inFlight, renameApi } from '../semantics';
import { AioConnects } from './aio-connects';

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
  /** The libnbd call the Promise stands for, in its error messages. */
  api: string;
}

export class Connections {
  /** connect*() calls waiting for their connect to end, by the id the native side gave it. */
  readonly #connectWaiters = new Map<number, Waiter>();
  /** shutdown()/optAbort() calls waiting for the connection to close. */
  #disconnectWaiters: Waiter[] = [];
  /** An NBD_CMD_DISC was queued and the connection has not closed yet (counts as in flight). */
  disconnecting = false;
  /** aioConnect*() calls not ended yet: their end is emitted as 'connect'. */
  readonly aioConnects: AioConnects;

  /** `handle`: where 'connect' and 'disconnect' are emitted. */
  constructor(private readonly handle: EventEmitter) {
    this.aioConnects = new AioConnects((error) => handle.emit('connect', error));
  }

  /** nbd_aio_in_flight: `pending` commands, and a disconnect under way. */
  inFlight(pending: number): number {
    return inFlight(pending, this.disconnecting);
  }

  /** A Promise settled when the connect `id` ends; `api` words its error. */
  waitForConnect(id: number, api: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#connectWaiters.set(id, { resolve, reject, api });
    });
  }

  /** A Promise settled when the connection closes; `api` words its error. */
  waitForDisconnect(api: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#disconnectWaiters.push({ resolve, reject, api });
    });
  }

  /** kConnected: the connect `id` ended, with `failure`'s message on failure. */
  connectEnded(id: number, errnum: number, failure: ConnectedPayload | undefined): void {
    if (this.aioConnects.ended(id, errnum, failure?.message)) return;
    const w = this.#connectWaiters.get(id);
    if (w === undefined) return;
    this.#connectWaiters.delete(id);
    if (failure === undefined) w.resolve();
    else w.reject(renameApi(new NbdError(failure.message, errnum), w.api));
  }

  /** kDisconnected: a requested disconnect ended the connection (`failure`: it ended badly). */
  disconnected(errnum: number, failure: DisconnectedPayload | undefined): void {
    this.disconnecting = false;
    const waiters = this.#disconnectWaiters;
    this.#disconnectWaiters = [];
    for (const w of waiters) {
      if (failure === undefined) w.resolve();
      else w.reject(renameApi(new NbdError(failure.message, errnum), w.api));
    }
    this.handle.emit('disconnect', failure === undefined ? undefined : new NbdError(failure.message, errnum));
  }

  /** kConnectionLost: the connection ended otherwise (the server went away, even while idle). */
  lost(errnum: number, payload: ConnectionLostPayload): void {
    this.handle.emit('disconnect', new NbdError(payload.message, errnum));
  }

  /** close(): every connect and disconnect waiting fails with `err`. */
  closeAll(err: Error): void {
    this.disconnecting = false;
    const waiters = [...this.#connectWaiters.values(), ...this.#disconnectWaiters];
    this.#connectWaiters.clear();
    this.aioConnects.clear();
    this.#disconnectWaiters = [];
    for (const w of waiters) w.reject(err);
  }
}
