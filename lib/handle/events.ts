// Stage: events. The native side copies a batch of events into the shared
// Float64Array (layout: scripts/event-wire.mjs, lib/generated/event-wire.ts)
// and calls the handle's sink once per batch; deliverEvents hands each event,
// decoded (lib/generated/event-decode.ts), to its handler below: a command's
// events by slot to the delivery stage (deliver.ts), its completion also to
// retirement (commands.ts), connection events to connections.ts, the
// driver's runs to the polls waiting (polls.ts).
import type { NativePayload } from '../../typings/native';
import { binding } from '../binding';
import { decodeEvent, type EventHandlers } from '../generated/event-decode';
import * as wire from '../generated/event-wire';
import * as semantics from '../semantics';
import * as deliver from './deliver';
import type { HandleState } from './state';

// docs/architecture.md, Traps: "module-level constants".
const { EVENT_CONTEXT, EVENT_LIST, EVENT_STRIDE, READ_ERROR_MARKER } = wire;
const STRIDE = EVENT_STRIDE;
const { deliverChunk, deliverCompletion, deliverDebug, deliverExtent, deliverListing } = deliver;
const { finalError } = semantics;

// The event wire's layout comes from one table (scripts/event-wire.mjs),
// compiled into the native module too: a stale build must not misread it.
if (binding.eventStride !== EVENT_STRIDE || binding.readErrorMarker !== READ_ERROR_MARKER) {
  throw new Error('libnbd: the native module was built from another event wire; rebuild it (npm run build)');
}

/** What each kind of event does to the handle (a command's events are dropped once it has settled). */
const handlers: EventHandlers<HandleState> = {
  chunk(s, slot, status, error, subOffset, count) {
    const cmd = s.commands.slots[slot];
    if (cmd !== undefined) deliverChunk(cmd, status, error, subOffset, count, s.bigint);
  },
  completion(s, slot, error, retireError, recorded) {
    const commands = s.commands;
    const cmd = commands.take(slot);
    if (cmd === undefined) return;
    if (recorded !== undefined) cmd.recorded = [recorded.errno, recorded.message];
    const retired = deliverCompletion(cmd, error, retireError);
    commands.retire(cmd, finalError(cmd, retireError), retired);
  },
  extent(s, slot, error, payload) {
    const cmd = s.commands.slots[slot];
    if (cmd !== undefined) deliverExtent(cmd, error, payload, s.bigint);
  },
  list(s, slot, payload) {
    const cmd = s.commands.slots[slot];
    if (cmd !== undefined) deliverListing(cmd, EVENT_LIST, payload);
  },
  context(s, slot, payload) {
    const cmd = s.commands.slots[slot];
    if (cmd !== undefined) deliverListing(cmd, EVENT_CONTEXT, payload);
  },
  debug(s, payload) {
    deliverDebug(s.debugCallback, payload);
  },
  connected(s, id, error, failure) {
    s.connections.connectEnded(id, error, failure);
  },
  disconnected(s, error, failure) {
    s.connections.disconnected(error, failure);
  },
  connectionLost(s, error, payload) {
    s.connections.lost(error, payload);
  },
  polled(s, sequence) {
    s.polls.polled(sequence);
  },
};

/**
 * Delivers a batch of `n` events (the handle's sink). Stops once the handle
 * is closed (close() completed what was pending). Whatever a callback throws
 * is caught where it runs; anything else that throws must not cost the rest
 * of the batch its delivery: the first such throw is rethrown at the end.
 */
export function deliverEvents(s: HandleState, n: number, payloads?: (NativePayload | undefined)[]): void {
  const ev = s.events;
  let failed = false;
  let failure: unknown;
  for (let i = 0, p = STRIDE; i < n && !s.closed; i++, p += STRIDE) {
    // The native side has retired this batch's commands already: each event
    // is delivered whatever happened to the one before.
    try {
      decodeEvent(handlers, s, ev, p, payloads, i);
    } catch (e) {
      if (!failed) {
        failed = true;
        failure = e;
      }
    }
  }
  if (failed) throw failure; // a bug of the binding's own: reported once the batch is delivered
}
