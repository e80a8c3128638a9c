// The event wire: how events recorded by libnbd's callbacks reach JS. One
// shared Float64Array of `stride` doubles per record; record 0 is a header.
// scripts/generate.mjs writes native/generated/event_wire.h and
// lib/generated/event-wire.ts from this table, so both sides read one
// contract. Every field is below 2^53: doubles carry it exactly.

export const stride = 6;

/** Record 0. */
export const header = [
  ['queued', 0, 'events a call made from JS queued (lib/ drains them before the call returns)'],
  ['slot', 1, 'slot of the command the last aio call issued (lib/ registers it there)'],
];

/** Field 0 of every record is the kind. */
export const kindField = 0;

/**
 * What a payload may carry (strings and arrays, an object beside the array),
 * each field with its type: string, uint64 (number or bigint in JS), errno
 * (a number), extents (Uint32Array or BigUint64Array of (length, flags)
 * pairs). scripts/generator/ makes from it the native Payload struct, its
 * conversion to JS (PayloadToJs) and typings/native.ts's NativePayload.
 */
export const payloadFields = [
  ['context', 'string'],
  ['offset', 'uint64'],
  ['entries', 'extents'],
  ['name', 'string'],
  ['description', 'string'],
  ['message', 'string'],
  ['errno', 'errno'],
];

/**
 * Where each record field comes from: the member of the native Event that
 * holds it (`command->`: of the event's CommandContext). EventWindow writes
 * the record from these; the trampolines fill them from libnbd's arguments.
 */
export const fieldSources = {
  slot: 'command->slot',
  status: 'status',
  error: 'error',
  subOffset: 'sub_offset',
  count: 'count',
  retireError: 'command->retire_error',
  id: 'id',
  sequence: 'id',
};

/**
 * Each kind: its value, the fields it uses (name, index, meaning) and the
 * payload fields it carries (`payloadWhen`: when it has a payload at all, if
 * not always). `slot` names the command (CommandContext::slot, reused only
 * once JS has seen the completion).
 */
export const kinds = [
  { name: 'chunk', value: 1, payload: [], fields: [
    ['slot', 1, 'the command'],
    ['status', 2, 'READ_DATA, READ_HOLE or READ_ERROR'],
    ['error', 3, "libnbd's *error on entry (READ_ERROR: that chunk's server errno)"],
    ['subOffset', 4, "the chunk's offset within the caller's buffer"],
    ['count', 5, 'byte count'],
  ] },
  { name: 'completion', value: 2, payload: ['message', 'errno'], payloadWhen: "an option's failure only: what libnbd recorded", fields: [
    ['slot', 1, 'the command'],
    ['error', 3, "libnbd's *error"],
    ['retireError', 4, 'errno of nbd_aio_command_completed (0: success)'],
  ] },
  { name: 'connected', value: 3, payload: ['message'], payloadWhen: 'on failure only', fields: [
    ['id', 1, "the connect's id (what aioConnect* returned)"],
    ['error', 3, "libnbd's errno on failure (may be 0)"],
  ] },
  { name: 'disconnected', value: 4, payload: ['message'], payloadWhen: 'on failure only', fields: [
    ['error', 3, "libnbd's errno on failure (may be 0)"],
  ] },
  { name: 'extent', value: 5, payload: ['context', 'offset', 'entries'], fields: [
    ['slot', 1, 'the command'],
    ['error', 3, "libnbd's *error on entry"],
  ] },
  { name: 'list', value: 6, payload: ['name', 'description'], fields: [['slot', 1, 'the command']] },
  { name: 'context', value: 7, payload: ['name'], fields: [['slot', 1, 'the command']] },
  { name: 'debug', value: 8, payload: ['context', 'message'], fields: [] },
  { name: 'connectionLost', value: 9, payload: ['message'], fields: [
    ['error', 3, "libnbd's errno (ENOTCONN when libnbd recorded none)"],
  ] },
  // After the events of the driver's runs of libnbd, while poll() waits for one.
  { name: 'polled', value: 10, payload: [], fields: [
    ['sequence', 1, 'polled events queued so far, this one included: it settles the polls begun before it was queued'],
  ] },
];

/**
 * libnbd's connection state as a bitmask of its aio_is_* answers: what
 * NbdHandle::state() returns (the binding's own checks, which make no debug
 * messages) and how a snapshot of the state is kept (StateSnapshot).
 */
export const stateBits = [
  ['created', 1],
  ['connecting', 2],
  ['negotiating', 4],
  ['ready', 8],
  ['processing', 16],
  ['dead', 32],
  ['closed', 64],
];

/**
 * Recorded in libnbd as a READ_ERROR chunk's error when libnbd had none;
 * larger than any errno (lib/semantics.ts settles the rule from it).
 */
export const readErrorMarker = 0x4e424400;
