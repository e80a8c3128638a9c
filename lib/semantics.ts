// libnbd's rules, applied in JS: a command's errors through its callbacks,
// retirement, close, and how a Promise form words its errors.
//
// JS callbacks run after libnbd has returned (docs/architecture.md, "The two
// rules everything follows", rule 1), so libnbd cannot see what they return:
// its native callbacks return 0 (READ_ERROR: see READ_ERROR_MARKER) and its
// own record of a command's error holds server errors only. These functions
// replay libnbd's rules (generator/states-reply-structured.c, states-reply.c,
// lib/aio.c) in event order so that JS observes what a C program observes.
//
// Pure rules only: the state they apply to lives in the stages of lib/handle/.
import { NbdError, errno } from './errors';
import * as constants from './generated/constants';

// Module-level constants (docs/architecture.md, Traps: "module-level constants").
const { EPROTO, ENOTCONN } = errno;
const READ_ERROR_STATUS = constants.READ_ERROR;

/**
 * READ_ERROR_MARKER is what libnbd records for a READ_ERROR chunk when it had
 * no error before (native/events/closure_hooks.h, ChunkRecorded). A plain error reply leaves no
 * event, so only the command's next event tells whether libnbd had recorded
 * one before that chunk: that event's error is then this marker, or the
 * earlier error.
 */
import { READ_ERROR_MARKER } from './generated/event-wire';
// Not re-exported (docs/architecture.md, Traps: "no `export { x } from`").

/** A READ_ERROR chunk whose effect waits for the command's next event. */
type DeferredReadError = [serverError: number, ret: unknown, value: number];

/** A command's error bookkeeping, as libnbd keeps `cmd->error`. */
export interface CommandErrorState {
  /** The first error recorded: a server error or a failed chunk callback. */
  error: number;
  /** True once a completion callback replaced the error. */
  replaced: boolean;
  /** The first READ_ERROR chunk not yet settled (only while `error` is 0). */
  deferredReadError: DeferredReadError | undefined;
}

/**
 * Takes libnbd's record from an event that carries it (a DATA/HOLE chunk or
 * the completion): settles a deferred READ_ERROR, and adopts a server error
 * while the command has none.
 */
export function adoptLibnbdError(cmd: CommandErrorState, libnbdError: number): void {
  const deferred = cmd.deferredReadError;
  if (deferred !== undefined) {
    cmd.deferredReadError = undefined;
    if (libnbdError === READ_ERROR_MARKER) {
      // Nothing was recorded before the READ_ERROR chunk: its callback may
      // choose the errno with -1 and a non-zero value; else the server's.
      const [serverError, ret, value] = deferred;
      cmd.error = ret === -1 && value !== 0 ? value : serverError;
      return;
    }
  }
  if (cmd.error === 0 && libnbdError !== 0 && libnbdError !== READ_ERROR_MARKER) cmd.error = libnbdError;
}

/**
 * The `error.value` a chunk callback sees on entry. `eventError` is libnbd's
 * `*error` for this chunk: what libnbd has recorded so far (DATA, HOLE) or
 * the chunk's own server errno (READ_ERROR).
 */
export function chunkErrorOnEntry(cmd: CommandErrorState, status: number, eventError: number): number {
  if (status === READ_ERROR_STATUS) return eventError;
  adoptLibnbdError(cmd, eventError);
  return cmd.error;
}

/**
 * Records a chunk callback's result. Only -1 counts (a throw counts as -1).
 * DATA/HOLE: -1 records `value` (EPROTO when 0) unless an error was recorded
 * before. READ_ERROR: the chunk always fails the command; if nothing was
 * recorded before, -1 with a non-zero `value` chooses the errno, else the
 * server's errno is recorded. Which case holds, the next event settles.
 */
export function applyChunkResult(
  cmd: CommandErrorState,
  status: number,
  eventError: number,
  ret: unknown,
  value: number,
): void {
  if (status === READ_ERROR_STATUS) {
    if (cmd.error === 0 && cmd.deferredReadError === undefined) cmd.deferredReadError = [eventError, ret, value];
    return;
  }
  if (ret === -1 && cmd.error === 0) cmd.error = value !== 0 ? value : EPROTO;
}

/**
 * Records a completion callback's result: -1 with a non-zero value replaces
 * the error (even an earlier one); -1 with 0 changes nothing. Returns true
 * when the callback asked for auto-retirement (returned 1).
 */
export function applyCompletionResult(cmd: CommandErrorState, ret: unknown, value: number): boolean {
  if (ret === -1 && value !== 0) {
    cmd.error = value;
    cmd.replaced = true;
  }
  return ret === 1;
}

/**
 * The error nbd_aio_command_completed reports: the command's error, else
 * what libnbd found at retirement (`retireError`: a short structured read,
 * EIO on 1.14 and EPROTO on 1.16+).
 */
export function finalError(cmd: CommandErrorState, retireError: number): number {
  if (cmd.replaced || cmd.error !== 0) return cmd.error;
  return retireError;
}

/** An errno written by a callback into `error.value`, as libnbd's int. */
export function errnoValue(v: unknown): number {
  return typeof v === 'number' ? v | 0 : 0;
}

// ---------------------------------------------------------------- retirement

/**
 * Whether a command is retired as soon as JS has seen its completion
 * (lib/aio.c): an option command always (libnbd retires them itself), a data
 * command when its completion callback asked to (returned 1). Else it stays
 * completed until nbd_aio_command_completed retires it. (A Promise form's
 * command is retired by its Promise, which reports the outcome.)
 */
export function retiredOnCompletion(opt: boolean, completionAsked: boolean): boolean {
  return opt || completionAsked;
}

/**
 * nbd_aio_peek_command_completed: the oldest completed, unretired cookie;
 * else 0 while commands are in flight; else undefined (libnbd's EINVAL:
 * no commands are in flight).
 */
export function peekCompleted(oldest: number | undefined, inFlight: number): number | undefined {
  if (oldest !== undefined) return oldest;
  return inFlight > 0 ? 0 : undefined;
}

/** nbd_aio_in_flight: commands whose completion JS has not seen, and a disconnect under way. */
export function inFlight(pending: number, disconnecting: boolean): number {
  return pending + (disconnecting ? 1 : 0);
}

// ---------------------------------------------------------------- close

/**
 * nbd_close completes every pending command (libnbd 1.18's rule, applied on
 * every version): in issue order (`byIssueOrder`), each with its own error,
 * else ENOTCONN (`errorAtClose`). Its completion callback runs once; whatever
 * it returns, the command is retired. Completed, unretired commands are
 * forgotten, and connects and disconnects under way fail ENOTCONN.
 */
export function errorAtClose(error: number): number {
  return error !== 0 ? error : ENOTCONN;
}

export function byIssueOrder(a: { readonly order: number }, b: { readonly order: number }): number {
  return a.order - b.order;
}

// ---------------------------------------------------------------- wording

/** The libnbd call a message of libnbd's starts with ("nbd_aio_pwrite: "). */
const API_PREFIX = /^nbd_\w+: /;

/** libnbd's `message` with the call it names replaced by `api`. */
export function messageOf(api: string, message: string): string {
  return message.replace(API_PREFIX, `${api}: `);
}

/**
 * The error as the synchronous libnbd call would word it: a sync call runs
 * its aio twin (and the state machine) under its own name, so libnbd's
 * message starts "nbd_pwrite: ", not "nbd_aio_pwrite: ".
 */
export function renameApi<T>(e: T, api: string): T {
  if (!(e instanceof NbdError) || !API_PREFIX.test(e.message)) return e;
  const renamed = new NbdError(messageOf(api, e.message), e.errno, e.cause === undefined ? undefined : { cause: e.cause });
  // Keep where it was thrown, with the message the stack's first line shows.
  if (typeof e.stack === 'string') renamed.stack = e.stack.replace(e.message, renamed.message);
  return renamed as T;
}

// ---------------------------------------------------------------- options

/** What an option's Promise form resolves with: its closure's calls, nothing, or whether the server accepted. */
export type OptionResult = 'count' | 'none' | 'accepted';

/**
 * How libnbd's sync option call (lib/opt.c) ends when its option completed
 * with errno `err` (not 0): `false` for an option the server may refuse
 * (`accepted`) when the handle is still negotiating; else the error, as
 * [errno, message, whether the message is libnbd's own whole message (a
 * call name in front) or words to put after the call's name]. The error
 * libnbd `recorded` as the option failed is what its call returns when the
 * connection died (its polling failed) and for the calls without words of
 * their own (optGo, optInfo: the server's reason); the others fail with
 * their words and the completion's errno.
 */
export function optionFailure(
  result: OptionResult,
  refusal: string | undefined,
  request: string,
  err: number,
  recorded: [number, string] | undefined,
  alive: boolean,
): false | [errnum: number, message: string, whole: boolean] {
  if (alive && result === 'accepted') return false;
  const useRecorded = recorded !== undefined && recorded[1] !== '' && (!alive || (refusal === undefined && result !== 'accepted'));
  if (useRecorded) return [recorded[0], recorded[1], true];
  if (refusal !== undefined) return [err, `server replied with error to ${refusal} request`, false];
  return [err, result === 'accepted' ? `failed to get response to ${request} request` : `server replied with error to ${request} request`, false];
}

