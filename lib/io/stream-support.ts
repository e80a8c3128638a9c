// What the handle-level io functions share: the server's block-size limits
// and argument checks (with Node's error codes). Public Handle API only.
import { invalidArgType, outOfRange } from '../errors';
import { SIZE_MAXIMUM, SIZE_MINIMUM } from '../generated/constants';
import type { Handle } from '../handle/handle';
import { validateAbortSignal } from '../validate';

const MiB = 1024 * 1024;
/** What a client may send when the server advertises no maximum (the NBD protocol's rule). */
export const DEFAULT_MAXIMUM = 32 * MiB;
/** libnbd refuses larger requests (ERANGE). */
export const LIBNBD_MAXIMUM = 64 * MiB;

/** Any Handle, whatever its bigint mode. */
export type AnyHandle = Handle<boolean>;

/** What the streams use of a connection: a Handle (any bigint mode), or a Pool. */
export type StreamTarget = Pick<AnyHandle, 'getSize' | 'getBlockSize' | 'pread' | 'pwrite' | 'flush' | 'canFlush'>;

/**
 * A read whose buffer libnbd does not zero first (pread_initialize, a memset
 * on the issuing thread of every byte read), for readers that never hand out
 * a buffer whose read failed. The setting is the handle's, so it is turned
 * off around this one issue (nothing else runs in between).
 */
export function preadUninitialized(h: AnyHandle, buf: Buffer, offset: number): Promise<void> {
  if (!h.getPreadInitialize()) return h.pread(buf, offset);
  h.setPreadInitialize(false);
  try {
    return h.pread(buf, offset);
  } finally {
    h.setPreadInitialize(true);
  }
}

export interface Limits {
  /** The server's minimum block size (1 when it gave none): requests are aligned to it. */
  readonly minimum: number;
  /** The largest request to send: the server's maximum (else 32 MiB), at most libnbd's 64 MiB. */
  readonly maximum: number;
}

/** The export's block-size limits, read from a connected handle. */
export function serverLimits(h: Pick<AnyHandle, 'getBlockSize'>): Limits {
  const minimum = Number(h.getBlockSize(SIZE_MINIMUM)) || 1;
  let maximum = Number(h.getBlockSize(SIZE_MAXIMUM)) || DEFAULT_MAXIMUM;
  maximum = Math.min(maximum, LIBNBD_MAXIMUM);
  // A maximum is a multiple of the minimum by the protocol; be safe anyway.
  maximum = Math.max(minimum, maximum - (maximum % minimum));
  return { minimum, maximum };
}

/** The largest multiple of `minimum` not over `size` and not over `maximum` (at least `minimum`). */
export function requestSizeFor(wanted: number, limits: Limits): number {
  const n = Math.min(wanted, limits.maximum);
  return Math.max(limits.minimum, n - (n % limits.minimum));
}

/** The export size as a safe integer. */
export function exportSize(h: Pick<AnyHandle, 'getSize'>): number {
  const size = h.getSize();
  const n = Number(size);
  if (!Number.isSafeInteger(n)) throw outOfRange('export size', 'a safe integer for streams', size);
  return n;
}

export function alignDown(n: number, to: number): number {
  return n - (n % to);
}

export function alignUp(n: number, to: number): number {
  const r = n % to;
  return r === 0 ? n : n + (to - r);
}

/** An options object, or undefined for `{}`. */
export function validateOptions(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object') throw invalidArgType(name, 'of type object', value);
  return value as Record<string, unknown>;
}

/** An integer in [min, max], or undefined (then `fallback`). */
export function optionalInteger(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value);
  return value;
}

/** An offset: a non-negative safe integer or a bigint within the safe range, or undefined. */
export function optionalOffset(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw outOfRange(name, `>= 0 && <= ${Number.MAX_SAFE_INTEGER}`, value);
    }
    return Number(value);
  }
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number or bigint', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) throw outOfRange(name, `>= 0 && <= ${Number.MAX_SAFE_INTEGER}`, value);
  return value;
}

export function optionalBoolean(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value);
  return value;
}

/** An AbortSignal, or undefined (Node's duck test, as the Promise forms'). */
export function optionalSignal(value: unknown, name: string): AbortSignal | undefined {
  validateAbortSignal(value, name);
  return value;
}
