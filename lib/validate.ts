// Argument checks made before anything reaches C, with Node's error codes.
import { invalidArgType, invalidArgValue, outOfRange, withCode } from './errors';

const UINT64_MAX = (1n << 64n) - 1n;

export function validateBoolean(value: unknown, name: string): asserts value is boolean {
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value);
}

function validateInteger(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value);
}

export function validateInt32(value: unknown, name: string): asserts value is number {
  validateInteger(value, name, -2147483648, 2147483647);
}

export function validateUint32(value: unknown, name: string): asserts value is number {
  validateInteger(value, name, 0, 4294967295);
}

export function validateString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (value.includes('\0')) throw invalidArgValue(name, 'must be a string without null bytes', value);
}

export function validateStringArray(value: unknown, name: string): asserts value is string[] {
  if (!Array.isArray(value)) throw invalidArgType(name, 'an instance of Array', value);
  value.forEach((s, i) => validateString(s, `${name}[${i}]`));
}

/** A non-negative safe integer or a bigint that fits uint64_t. */
export function validateUint64(value: unknown, name: string): asserts value is number | bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw outOfRange(name, Number.isInteger(value) ? 'a safe integer (use a bigint)' : 'an integer', value);
    }
    if (value < 0) throw outOfRange(name, '>= 0', value);
    return;
  }
  if (typeof value === 'bigint') {
    if (value < 0n || value > UINT64_MAX) throw outOfRange(name, '>= 0n && <= 2n ** 64n - 1n', value);
    return;
  }
  throw invalidArgType(name, 'of type number or bigint', value);
}

/** What the native side takes for a uint64: a number whenever it is exact. */
export function toNativeUint64(value: number | bigint): number | bigint {
  return typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

export function validateBuffer(value: unknown, name: string): asserts value is ArrayBufferView {
  if (!ArrayBuffer.isView(value)) {
    throw invalidArgType(name, 'an instance of Buffer, TypedArray, or DataView', value);
  }
  // libnbd keeps the buffer's address until the command completes; a
  // resizable ArrayBuffer can give its pages back meanwhile (resize(0)).
  // A growable SharedArrayBuffer never shrinks, so it is fine. A view's
  // buffer never changes: it is looked at once per view (the getter is slow).
  if (vetted.has(value)) return;
  if ((value.buffer as { resizable?: boolean }).resizable === true) {
    throw invalidArgValue(name, 'must not be backed by a resizable ArrayBuffer', value);
  }
  vetted.add(value);
}

/** Views whose buffer validateBuffer has found fixed-length. */
const vetted = new WeakSet<ArrayBufferView>();

export function validateFunction(value: unknown, name: string): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw invalidArgType(name, 'of type function', value);
}

export function validateOptionalFunction(
  value: unknown,
  name: string,
): asserts value is ((...args: never[]) => unknown) | undefined | null {
  if (value !== undefined && value !== null && typeof value !== 'function') {
    throw invalidArgType(name, 'of type function', value);
  }
}

/** An AbortSignal, or undefined (Node's duck test: an object with `aborted` and addEventListener). */
export function validateAbortSignal(value: unknown, name: string): asserts value is AbortSignal | undefined {
  if (value === undefined) return;
  if (
    value === null ||
    typeof value !== 'object' ||
    !('aborted' in value) ||
    typeof (value as { addEventListener?: unknown }).addEventListener !== 'function'
  ) {
    throw invalidArgType(name, 'an instance of AbortSignal', value);
  }
}

/** The last argument of a Promise form with flags: the flags, or `{ flags, signal }`. */
export interface CommandOptions {
  /** CMD_FLAG_* bits (default 0). */
  flags?: number;
  /** Aborting rejects the Promise at once with an AbortError; the command still completes in libnbd. */
  signal?: AbortSignal;
}

/** The last argument of a Promise form without flags. */
export interface SignalOptions {
  /** Aborting rejects the Promise at once with an AbortError (see each method for what else happens). */
  signal?: AbortSignal;
}

/** Reads a Promise form's last argument: a plain number is the flags (as before options existed). */
export function commandOptions(options: unknown): { flags: number; signal: AbortSignal | undefined } {
  if (typeof options === 'number') {
    validateUint32(options, 'flags');
    return { flags: options, signal: undefined };
  }
  if (options === null || typeof options !== 'object') {
    throw invalidArgType('options', 'of type number or an object', options);
  }
  const { flags = 0, signal } = options as CommandOptions;
  validateUint32(flags, 'options.flags');
  validateAbortSignal(signal, 'options.signal');
  return { flags, signal };
}

/** Reads the `{ signal }` last argument of a Promise form without flags. */
export function signalOption(options: unknown): AbortSignal | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const { signal } = options as SignalOptions;
  validateAbortSignal(signal, 'options.signal');
  return signal;
}

/** A file descriptor: a non-negative int32. */
export function validateFd(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < 0 || value > 2147483647) throw outOfRange(name, '>= 0 && <= 2147483647', value);
}

/** A TCP port or service name: a string, or an integer 0..65535. */
export function validateService(value: unknown, name: string): asserts value is string | number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 65535) throw outOfRange(name, '>= 0 && <= 65535', value);
    return;
  }
  validateString(value, name);
}

/** Which driver runs libnbd's state machine (HandleOptions.driver). */
export type Driver = 'loop' | 'thread';

function isDriver(value: unknown): value is Driver {
  return value === 'loop' || value === 'thread';
}

/** A driver option (`options.driver` of a Handle, of copy()). */
export function validateDriver(value: unknown, name: string): Driver {
  if (!isDriver(value)) throw invalidArgValue(name, "must be 'loop' or 'thread'", value);
  return value;
}

/**
 * The driver LIBNBD_DRIVER names, or `fallback` when it is unset or empty.
 * Any other value is an error, not a silent fallback: a typo would run
 * everything on the other driver without a word.
 */
export function driverFromEnv(fallback: Driver): Driver {
  const value = process.env.LIBNBD_DRIVER;
  if (value === undefined || value === '') return fallback;
  if (isDriver(value)) return value;
  throw withCode(
    new TypeError(`The environment variable LIBNBD_DRIVER must be 'loop' or 'thread' (or unset). Received ${JSON.stringify(value)}`),
    'ERR_INVALID_ARG_VALUE',
  );
}
