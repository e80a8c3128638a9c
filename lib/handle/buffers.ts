// Stage: a data command's buffer on its way to libnbd. libnbd keeps the
// buffer's address until the command completes, so whatever JS does to the
// buffer meanwhile must neither free that memory under libnbd nor let libnbd
// write where the caller no longer expects it. What JS can do, by Node
// release (markAsUntransferable is the only pin Node offers):
//
// - every release: structuredClone/postMessage refuse to transfer a marked
//   ArrayBuffer; WebAssembly.Memory#grow detaches its buffer (the memory
//   stays where it was); a resizable ArrayBuffer can shrink (refused up front
//   by validateBuffer).
// - 20 and 22: a byte stream (ReadableByteStreamController#enqueue, a BYOB
//   read) detaches a marked buffer all the same; 22's transfer() and
//   transferToFixedLength() too, and a transfer to another length frees the
//   memory at once.
// - 24: marking sets V8's detach key, which transfer() and the byte streams
//   honour (they throw) — but WebAssembly.Memory#grow must detach its old
//   buffer and aborts the process when that buffer has a key.
//
// So a buffer goes to libnbd as it is only when nothing can detach it: a
// SharedArrayBuffer, an ArrayBuffer the mark pins (Node 24, WebAssembly
// memory excepted), or a view lib/io allocated and has shown nobody
// (`own`). Any other goes through a bounce buffer of the binding's, which
// no JS outside this file ever sees: data to write is copied into it at
// issue; read data is copied out into the caller's buffer as JS sees each
// chunk and at completion — if that buffer is still whole; else the read
// fails EFAULT (PendingCommand#bufferLost), as it does in place.
import { types } from 'node:util';
import * as workerThreads from 'node:worker_threads';

const { markAsUntransferable } = workerThreads;
const { isSharedArrayBuffer } = types;
/** Node >= 21 (the releases where marking may pin). */
const isMarkedAsUntransferable = (workerThreads as { isMarkedAsUntransferable?: (o: object) => boolean }).isMarkedAsUntransferable;

/** A view that goes to libnbd through bounces: the caller's bytes, and a bounce kept for the next command. */
class Lent {
  /** A bounce no command uses, kept for the view's next command (small ones only). */
  spare: Bounce | undefined = undefined;

  constructor(
    /** The caller's bytes: all of their view's memory (empty once detached). */
    readonly target: Uint8Array,
  ) {}
}

/** One command's copy of a caller's buffer: `copy` is what libnbd sees. */
export class Bounce {
  constructor(
    readonly lent: Lent,
    /** As long as the caller's view was; never handed to other code. */
    readonly copy: Buffer,
    /** libnbd writes into it (a read): copied out; else it was copied in at issue. */
    public out: boolean,
  ) {}
}

/**
 * A view's way to libnbd, looked up once per view (`TypedArray#buffer` is a
 * slow getter): null, lent as it is; else through bounces.
 */
const lendings = new WeakMap<ArrayBufferView, Lent | null>();

/** Bounces above this size are not kept for their view's next command (the memory would be held twice). */
const SPARE_MAX = 4 * 1024 * 1024;

/**
 * Whether markAsUntransferable makes an ArrayBuffer non-detachable (Node 24:
 * transfer() of a marked buffer throws). Where it does not, a byte stream
 * detaches a marked buffer too (Node 20 has no transfer(), but its byte
 * streams detach marked buffers all the same).
 */
const markingPins: boolean = (() => {
  const transfer = (ArrayBuffer.prototype as { transfer?: (this: ArrayBuffer) => ArrayBuffer }).transfer;
  if (typeof transfer !== 'function' || isMarkedAsUntransferable === undefined) return false;
  const probe = new ArrayBuffer(1);
  markAsUntransferable(probe);
  try {
    transfer.call(probe);
  } catch {
    // refused: the mark pins
  }
  return probe.byteLength === 1;
})();

/**
 * What structuredClone throws for an ArrayBuffer listed twice in its
 * transfer list: it checks each entry (untransferable, non-detachable)
 * before it looks for duplicates, and detaches nothing when it throws.
 */
function duplicateTransferError(ab: ArrayBuffer): string {
  try {
    structuredClone(undefined, { transfer: [ab, ab] });
  } catch (e) {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  return '';
}
const DUPLICATE = markingPins ? duplicateTransferError(new ArrayBuffer(1)) : '';

/**
 * Whether JS code could detach `ab` (false for WebAssembly memory, which
 * only its grow() detaches), without detaching it: the entry passes
 * structuredClone's checks of a transfer list and fails as a duplicate.
 */
function detachable(ab: ArrayBuffer): boolean {
  return DUPLICATE !== '' && duplicateTransferError(ab) === DUPLICATE;
}

/** How `view` goes to libnbd (its first command). */
function lendingOf(view: ArrayBufferView): Lent | null {
  const length = view.byteLength;
  // Nothing to access (libnbd gets a placeholder address), or memory nothing
  // can take away: a SharedArrayBuffer never detaches, and grows in place.
  if (length === 0) return null;
  const ab = view.buffer;
  // (util.types: a Buffer's ArrayBuffer may come from another realm.)
  if (isSharedArrayBuffer(ab)) return null;
  if (markingPins) {
    if (isMarkedAsUntransferable!(ab)) return null;
    // An unmarked WebAssembly memory must stay so: its grow() would abort.
    if (detachable(ab)) {
      markAsUntransferable(ab);
      return null;
    }
  } else {
    // No pin, but structuredClone and postMessage refuse to transfer it.
    markAsUntransferable(ab);
  }
  return new Lent(new Uint8Array(ab, view.byteOffset, length));
}

/** The Bounce lend() made for the command being issued, until takeBounce(). */
let issuing: Bounce | undefined;

/**
 * The view to hand libnbd for `view` (`out`: libnbd writes into it): `view`
 * itself, or a Bounce's copy (then takeBounce() returns that Bounce).
 */
export function lend(view: ArrayBufferView, out: boolean): ArrayBufferView {
  if (issuing !== undefined) {
    // Never taken: its native call threw before libnbd saw it.
    release(issuing);
    issuing = undefined;
  }
  let lent = lendings.get(view);
  if (lent === null) return view;
  if (lent === undefined) {
    lent = lendingOf(view);
    lendings.set(view, lent);
    if (lent === null) return view;
  }
  const target = lent.target;
  // Detached since: libnbd gets the empty view, as in place.
  if (target.length === 0) return view;
  let bounce = lent.spare;
  if (bounce === undefined) {
    // Zeroed: after a failed read the caller's buffer gets what libnbd left
    // in the copy, never another allocation's leftovers.
    bounce = new Bounce(lent, Buffer.alloc(target.length), out);
  } else {
    lent.spare = undefined;
    bounce.out = out;
  }
  if (!out) bounce.copy.set(target);
  issuing = bounce;
  return bounce.copy;
}

/** The Bounce of the command just issued with `view` (undefined: none, or lent in place). */
export function takeBounce(view: ArrayBufferView | undefined): Bounce | undefined {
  const bounce = issuing;
  if (bounce === undefined || view === undefined) return undefined;
  issuing = undefined;
  return bounce;
}

/** Copies `count` bytes at `sub` out to the caller's buffer (checked whole by the caller). */
export function copyOut(bounce: Bounce, sub: number, count: number): void {
  const copy = bounce.copy;
  if (sub === 0 && count === copy.length) bounce.lent.target.set(copy);
  else bounce.lent.target.set(copy.subarray(sub, sub + count), sub);
}

/** Copies the whole of a read's bounce out to the caller's buffer, if that is still whole. */
export function copyOutAll(bounce: Bounce): void {
  const target = bounce.lent.target;
  if (bounce.out && target.length === bounce.copy.length) target.set(bounce.copy);
}

/** libnbd is done with a Bounce: kept for its view's next command. */
export function release(bounce: Bounce | undefined): void {
  if (bounce !== undefined && bounce.copy.length <= SPARE_MAX) bounce.lent.spare = bounce;
}

/**
 * lib/io's own buffers: a view it allocated and shows nobody until its
 * commands have completed, so nothing can detach it: lent as it is.
 * disown() it before handing it out.
 */
export function own(view: ArrayBufferView): void {
  lendings.set(view, null);
}

export function disown(view: ArrayBufferView): void {
  lendings.delete(view);
}
