// libnbd's error rules for a command's callbacks, applied in JS.
//
// JS callbacks run after libnbd has returned (docs/architecture.md, "The two
// rules everything follows"), so libnbd cannot see what they return: its
// native callbacks return 0 (READ_ERROR: see READ_ERROR_MARKER) and its own
// record of a command's error holds server errors only. These functions replay
// libnbd's rules (generator/states-reply-structured.c, states-reply.c,
// lib/aio.c) in event order so that JS observes what a C program observes.

/** errno values the rules need (Linux). */
const EPROTO = 71;

export const READ_ERROR_STATUS = 3;

/**
 * READ_ERROR_MARKER is what libnbd records for a READ_ERROR chunk when it had
 * no error before (native/libnbd_callbacks.cc). A plain error reply leaves no
 * event, so only the command's next event tells whether libnbd had recorded
 * one before that chunk: that event's error is then this marker, or the
 * earlier error.
 */
import { READ_ERROR_MARKER } from './generated/event-wire';
// Not re-exported: a re-export makes tsc define a getter on this module's
// exports object, which turns it into a dictionary, and every load of these
// functions from optimized code a generic LoadIC (~100 instructions each,
// 800 per command; see docs/architecture.md "Traps").

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
