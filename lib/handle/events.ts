// Stage: events. The native side copies a batch of events into the shared
// Float64Array (layout: scripts/event-wire.mjs, lib/generated/event-wire.ts)
// and calls the handle's sink once per batch; deliverEvents decodes each
// event and dispatches it: a command's events by slot to the delivery stage
// (deliver.ts), its completion also to retirement (commands.ts), connection
// events to connections.ts, the driver's runs to the polls waiting (polls.ts).
import type { NativePayload } from '../../typings/native';
import { binding } from '../binding';
import * as wire from '../generated/event-wire';
import * as semantics from '../semantics';
import * as deliver from './deliver';
import type { HandleState } from './state';

// Local constants, as in lib/handle.ts: loads through another module's
// exports object are not constants to V8.
const {
  CHUNK_COUNT,
  CHUNK_ERROR,
  CHUNK_SLOT,
  CHUNK_STATUS,
  CHUNK_SUB_OFFSET,
  COMPLETION_ERROR,
  COMPLETION_RETIRE_ERROR,
  COMPLETION_SLOT,
  CONNECTED_ERROR,
  CONNECTED_ID,
  CONNECTION_LOST_ERROR,
  CONTEXT_SLOT,
  DISCONNECTED_ERROR,
  EVENT_CHUNK,
  EVENT_COMPLETION,
  EVENT_CONNECTED,
  EVENT_CONNECTION_LOST,
  EVENT_CONTEXT,
  EVENT_DEBUG,
  EVENT_DISCONNECTED,
  EVENT_EXTENT,
  EVENT_LIST,
  EVENT_POLLED,
  EVENT_STRIDE,
  EXTENT_ERROR,
  EXTENT_SLOT,
  FIELD_KIND,
  LIST_SLOT,
  POLLED_SEQUENCE,
  READ_ERROR_MARKER,
} = wire;
const STRIDE = EVENT_STRIDE;
const { deliverChunk, deliverCompletion, deliverDebug, deliverExtent, deliverListing } = deliver;
const { finalError } = semantics;

// The event wire's layout comes from one table (scripts/event-wire.mjs),
// compiled into the native module too: a stale build must not misread it.
if (binding.eventStride !== EVENT_STRIDE || binding.readErrorMarker !== READ_ERROR_MARKER) {
  throw new Error('libnbd: the native module was built from another event wire; rebuild it (npm run build)');
}

/**
 * Delivers a batch of `n` events (the handle's sink). Stops once the handle
 * is closed (close() completed what was pending). Whatever a callback throws
 * is caught where it runs; anything else that throws must not cost the rest
 * of the batch its delivery: the first such throw is rethrown at the end.
 */
export function deliverEvents(s: HandleState, n: number, payloads?: (NativePayload | undefined)[]): void {
  const ev = s.events;
  const commands = s.commands;
  const slots = commands.slots;
  const bigint = s.bigint;
  let failed = false;
  let failure: unknown;
  for (let i = 0, p = STRIDE; i < n && !s.closed; i++, p += STRIDE) {
    // The native side has retired this batch's commands already: each event
    // is delivered whatever happened to the one before.
    try {
      const kind = ev[p + FIELD_KIND];
      if (kind === EVENT_CHUNK) {
        const cmd = slots[ev[p + CHUNK_SLOT]];
        if (cmd !== undefined) deliverChunk(cmd, ev[p + CHUNK_STATUS], ev[p + CHUNK_ERROR], ev[p + CHUNK_SUB_OFFSET], ev[p + CHUNK_COUNT], bigint);
      } else if (kind === EVENT_COMPLETION) {
        const cmd = commands.take(ev[p + COMPLETION_SLOT]);
        if (cmd !== undefined) {
          const recorded = payloads?.[i];
          if (recorded !== undefined) cmd.recorded = [recorded.errno!, recorded.message!];
          const retireError = ev[p + COMPLETION_RETIRE_ERROR];
          const retired = deliverCompletion(cmd, ev[p + COMPLETION_ERROR], retireError);
          commands.retire(cmd, finalError(cmd, retireError), retired);
        }
      } else if (kind === EVENT_EXTENT) {
        const cmd = slots[ev[p + EXTENT_SLOT]];
        if (cmd !== undefined) deliverExtent(cmd, ev[p + EXTENT_ERROR], payloads![i]!, bigint);
      } else if (kind === EVENT_LIST || kind === EVENT_CONTEXT) {
        const cmd = slots[ev[p + (kind === EVENT_LIST ? LIST_SLOT : CONTEXT_SLOT)]];
        if (cmd !== undefined) deliverListing(cmd, kind, payloads![i]!);
      } else if (kind === EVENT_DEBUG) {
        deliverDebug(s.debugCallback, payloads![i]!);
      } else if (kind === EVENT_CONNECTED) {
        s.connections.connectEnded(ev[p + CONNECTED_ID], ev[p + CONNECTED_ERROR], payloads?.[i]);
      } else if (kind === EVENT_DISCONNECTED) {
        s.connections.disconnected(ev[p + DISCONNECTED_ERROR], payloads?.[i]);
      } else if (kind === EVENT_CONNECTION_LOST) {
        s.connections.lost(ev[p + CONNECTION_LOST_ERROR], payloads![i]!);
      } else if (kind === EVENT_POLLED) {
        s.polls.polled(ev[p + POLLED_SEQUENCE]);
      }
    } catch (e) {
      if (!failed) {
        failed = true;
        failure = e;
      }
    }
  }
  if (failed) throw failure; // a bug of the binding's own: reported once the batch is delivered
}
