// Error classes. They are built here, in JS, not in the native module, so
// that every realm (jest runs each test file in its own) sees its own classes.
import { constants as osConstants } from 'node:os';
import { binding } from './binding';

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
// libnbd speaks of ENOTSUP and EAGAIN where Linux has aliases.
errnoNames.set(osConstants.errno.ENOTSUP, 'ENOTSUP');
errnoNames.set(osConstants.errno.EAGAIN, 'EAGAIN');
// Linux errnos NBD servers send that Node's table lacks (NBD_ESHUTDOWN).
if (process.platform === 'linux' && !errnoNames.has(108)) errnoNames.set(108, 'ESHUTDOWN');

export const errno = osConstants.errno;

/** The symbolic name of an errno value ('EIO'), or 'E<number>' if unknown. */
export function errnoName(value: number): string {
  return errnoNames.get(value) ?? `E${value}`;
}

// libnbd reports a failed name lookup with errno 0 and gai_strerror's text;
// these are the codes Node's own dns and net give for the same failures.
const lookupCodes: [RegExp, string][] = [
  [/Name or service not known|No address associated with hostname/, 'ENOTFOUND'],
  [/Temporary failure in name resolution/, 'EAI_AGAIN'],
  [/Non-recoverable failure in name resolution/, 'EAI_FAIL'],
  [/Servname not supported/, 'EAI_SERVICE'],
  [/family not supported/, 'EAI_FAMILY'],
];

/**
 * The `code` of an error: the errno's name; for errno 0 (libnbd has none
 * for some failures), a name lookup's code as Node gives it, else 'UNKNOWN'.
 */
export function errorCode(errnum: number, message: string): string {
  if (errnum !== 0) return errnoName(errnum);
  if (message.includes('getaddrinfo')) {
    for (const [pattern, code] of lookupCodes) if (pattern.test(message)) return code;
  }
  return 'UNKNOWN';
}

/** A failure reported by libnbd, or by a command the server failed. */
export class NbdError extends Error {
  /** errno value: libnbd's nbd_get_errno(), or the command's error. */
  readonly errno: number;
  /**
   * Symbolic errno name: 'EIO', 'ENOTCONN', ...; when libnbd reports errno
   * 0, 'ENOTFOUND' (or another of Node's EAI_* codes) for a failed name
   * lookup, else 'UNKNOWN'.
   */
  readonly code: string;

  constructor(message: string, errnum: number, options?: { cause?: unknown }) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'NbdError';
    this.errno = errnum;
    this.code = errorCode(errnum, message);
  }
}

/** An NbdError with libnbd's message format: "<api>: <what>: <strerror>". */
export function libnbdError(api: string, errnum: number, what: string, cause?: unknown): NbdError {
  const text = `${api}: ${what}: ${binding.strerror(errnum)}`;
  return cause === undefined ? new NbdError(text, errnum) : new NbdError(text, errnum, { cause });
}

/**
 * A call the libnbd loaded lacks: `since` names the release that added it
 * (worded as native/handle/nbd_handle_errors.cc words it for the handle's calls); without it,
 * the binding was compiled against a header that lacks the call.
 */
export function notSupported(api: string, since?: string): NbdError {
  const what = since === undefined
    ? 'function missing because the binding was compiled against an older libnbd'
    : `function missing from the libnbd loaded (${binding.getVersion() ?? 'unknown'}): it needs libnbd >= ${since}`;
  return libnbdError(api, osConstants.errno.ENOTSUP, what);
}

/**
 * What an aborted operation rejects with, as Node's own APIs give it
 * (fs, timers/promises, streams): name 'AbortError', code 'ABORT_ERR', and
 * the signal's reason as `cause`.
 */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';

  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'AbortError';
  }
}

/** The AbortError of an aborted signal: its reason is the cause. */
export function abortError(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signal.reason });
}

export function closedError(): NbdError {
  return new NbdError('handle is closed', osConstants.errno.EINVAL);
}

type CodedError = Error & { code: string };

/** `e` with Node's `code` property, as Node's own argument errors carry it. */
export function withCode<E extends Error>(e: E, code: string): E & CodedError {
  return Object.assign(e, { code });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') {
    const ctor = (value as object).constructor;
    return ctor && ctor.name ? `an instance of ${ctor.name}` : 'an object';
  }
  if (typeof value === 'bigint') return `type bigint (${value}n)`;
  let shown = String(value);
  if (shown.length > 28) shown = shown.slice(0, 25) + '...';
  return `type ${typeof value} (${typeof value === 'string' ? `'${shown}'` : shown})`;
}

/** Node's ERR_INVALID_ARG_TYPE. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  return withCode(new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE');
}

/** Node's ERR_INVALID_ARG_VALUE. */
export function invalidArgValue(name: string, reason: string, actual: unknown): TypeError {
  return withCode(new TypeError(`The argument '${name}' ${reason}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_VALUE');
}

/** Node's ERR_OUT_OF_RANGE. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  const shown = typeof actual === 'bigint' ? `${actual}n` : String(actual);
  return withCode(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${shown}`), 'ERR_OUT_OF_RANGE');
}
