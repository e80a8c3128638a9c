// libnbd's error rules for a command's callbacks, applied in JS.
//
// JS callbacks run after libnbd has returned (DESIGN §2, rule 1), so libnbd
// cannot see what they return: its native callbacks always return 0 and its
// own record of a command's error holds server errors only. These functions
// replay libnbd's rules (generator/states-reply-structured.c, states-reply.c,
// lib/aio.c) in event order so that JS observes what a C program observes.

/** errno values the rules need (Linux). */
const EPROTO = 71;

export const READ_ERROR_STATUS = 3;

/** A command's error bookkeeping, as libnbd keeps `cmd->error`. */
export interface CommandErrorState {
  /** The first error recorded: a server error or a failed chunk callback. */
  error: number;
  /** True once a completion callback replaced the error. */
  replaced: boolean;
}

/**
 * The `error.value` a chunk callback sees on entry. `eventError` is libnbd's
 * `*error` for this chunk: the first server error so far (DATA, HOLE) or the
 * chunk's own server errno (READ_ERROR). Adopts a server error while the
 * command has none.
 */
export function chunkErrorOnEntry(cmd: CommandErrorState, status: number, eventError: number): number {
  if (status === READ_ERROR_STATUS) return eventError;
  if (cmd.error === 0 && eventError !== 0) cmd.error = eventError;
  return cmd.error;
}

/**
 * Records a chunk callback's result. Only -1 counts (a throw counts as -1).
 * DATA/HOLE: -1 records `value` (EPROTO when 0) unless an error was recorded
 * before. READ_ERROR: the chunk always fails the command; -1 may choose the
 * errno (`value`, if non-zero) when nothing was recorded before.
 */
export function applyChunkResult(
  cmd: CommandErrorState,
  status: number,
  eventError: number,
  ret: unknown,
  value: number,
): void {
  if (status === READ_ERROR_STATUS) {
    if (ret === -1 && cmd.error === 0) cmd.error = value;
    if (cmd.error === 0) cmd.error = eventError;
    return;
  }
  if (ret === -1 && cmd.error === 0) cmd.error = value !== 0 ? value : EPROTO;
}

/** A chunk-less command (aioPread, or no chunk callback): adopt the server's error. */
export function adoptServerError(cmd: CommandErrorState, eventError: number): void {
  if (cmd.error === 0 && eventError !== 0) cmd.error = eventError;
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
