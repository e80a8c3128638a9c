// What a Handle's stages share: one object the Handle owns (its `#state`)
// and hands to the event stage, so that each stage reads its parts from it.
import type { EventEmitter } from 'node:events';
import type { DebugCallback } from '../callbacks';
import { Commands } from './commands';
import { Connections } from './connections';
import { Polls } from './polls';

export class HandleState {
  /** True once close() has been called: no event is delivered after it. */
  closed = false;
  /** setDebugCallback's callback. */
  debugCallback: DebugCallback | undefined = undefined;
  readonly commands = new Commands();
  readonly connections: Connections;
  /** poll() calls waiting for the driver's next run. */
  readonly polls = new Polls();

  constructor(
    /** The native handle's shared event array (layout: lib/generated/event-wire.ts). */
    readonly events: Float64Array,
    /** 64-bit outputs as bigint ({ bigint: true }). */
    readonly bigint: boolean,
    /** The Handle: where 'disconnect' is emitted. */
    handle: EventEmitter,
  ) {
    this.connections = new Connections(handle);
  }
}
