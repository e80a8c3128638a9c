// Stage: pending commands. Each issued command's JS state (PendingCommand)
// sits in the slot the native side gave it until JS has seen its completion;
// then it is retired: its Promise settles, or libnbd retires it at once, or
// it waits in the completed table for aioCommandCompleted. The rules are
// lib/semantics.ts's; this file holds the state they apply to.
import type { CompletionCallback } from '../callbacks';
import { errno, libnbdError, NbdError } from '../errors';
import type { Settle } from '../generated/handle-api';
import type { Bounce } from './buffers';
import { byIssueOrder, peekCompleted, renameApi, type CommandErrorState } from '../semantics';
import * as deliver from './deliver';

export type Closure = (...args: never[]) => unknown;

// A local constant, as in events.ts: called through the exports object, V8
// would not inline it.
const { reportLostCauses } = deliver;

// A view's byteLength through the prototypes' own getters: optimized code
// reaches `view.byteLength` through a generic LoadIC call (~90 instructions
// a load, twice per read), a call of the getter directly.
const typedArrayByteLength = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'byteLength')!.get! as (
  this: ArrayBufferView,
) => number;
const dataViewByteLength = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteLength')!.get! as (this: ArrayBufferView) => number;
function byteLengthOf(view: ArrayBufferView): number {
  return view instanceof DataView ? dataViewByteLength.call(view) : typedArrayByteLength.call(view);
}

let issueOrder = 0;
/** A read whose buffer was detached or shrunk while in flight fails with this. */
const BUFFER_LOST = 'the buffer was detached or shrunk while the command was in flight';

/** One issued command, until JS has seen its completion. */
export class PendingCommand implements CommandErrorState {
  error = 0;
  replaced = false;
  deferredReadError: CommandErrorState['deferredReadError'] = undefined;
  causes: unknown[] | undefined = undefined;
  /** Calls of the list/context closure (what the Promise forms of opt* resolve with). */
  closureCalls = 0;
  /** When it was issued, for close(): completions in issue order. */
  readonly order = issueOrder++;
  /** What failed, in place of "<type>: command failed" (a lost buffer). */
  what: string | undefined = undefined;
  /** An option that failed: the error libnbd recorded as it failed ([errno, message]). */
  recorded: [number, string] | undefined = undefined;
  /** The buffer's length when issued: a smaller one now means it was detached or shrunk. */
  readonly length: number;
  /** The copy libnbd got in place of `buf` (lib/handle/buffers.ts), until JS has seen the completion. */
  bounce: Bounce | undefined = undefined;

  constructor(
    /** The cookie (an option command's id, negative). */
    readonly cookie: number,
    /** libnbd's name of the command, for "<type>: command failed". */
    readonly type: string,
    readonly buf: ArrayBufferView | undefined,
    readonly offset: number | bigint | undefined,
    readonly closure: Closure | undefined,
    readonly completion: CompletionCallback | undefined,
    /** Promise forms: settles the Promise (the command is then retired). */
    readonly settle: Settle | undefined,
    /** Option commands: libnbd retires them itself. */
    readonly opt: boolean,
  ) {
    this.length = buf === undefined ? 0 : byteLengthOf(buf);
  }

  /** True once the buffer of a read can no longer be seen whole: the command then fails EFAULT. */
  bufferLost(): boolean {
    const buf = this.buf;
    if (buf === undefined || byteLengthOf(buf) === this.length) return false;
    if (this.error === 0) this.error = errno.EFAULT;
    this.what ??= `${this.type}: ${BUFFER_LOST}`;
    return true;
  }

  addCause(e: unknown): void {
    (this.causes ??= []).push(e);
  }

  cause(): unknown {
    const c = this.causes;
    if (c === undefined) return undefined;
    return c.length === 1 ? c[0] : new AggregateError(c, 'several callbacks of one command threw');
  }
}

/** A completed command not yet retired: [errno, a callback's throw, what failed]. */
type Completed = [errnum: number, cause: unknown, what: string];

/** A handle's commands: pending ones by slot, completed unretired ones by cookie. */
export class Commands {
  /**
   * Issued commands whose completion JS has not yet seen, by the slot the
   * native side gave each (events name commands by slot; a slot is reused
   * only after JS has seen its completion).
   */
  readonly slots: (PendingCommand | undefined)[] = [];
  /** How many slots hold a command. */
  pending = 0;
  /** Completed, not auto-retired, not yet retired by aioCommandCompleted, by cookie. */
  readonly #completed = new Map<number, Completed>();

  /** Records an issued command in the slot the native side gave it. */
  add(slot: number, cmd: PendingCommand): void {
    this.slots[slot] = cmd;
    this.pending++;
  }

  /** The command in `slot`, taken out: JS has seen its completion, the slot may be reused. */
  take(slot: number): PendingCommand | undefined {
    const cmd = this.slots[slot];
    if (cmd !== undefined) {
      this.slots[slot] = undefined;
      this.pending--;
    }
    return cmd;
  }

  /**
   * Retires a command JS has seen complete with `err`: its Promise settles;
   * else, unless `retired` (lib/semantics.ts: retiredOnCompletion), it waits
   * for aioCommandCompleted. A callback's throw that no NbdError will carry is
   * reported as a warning.
   */
  retire(cmd: PendingCommand, err: number, retired: boolean): void {
    if (cmd.settle !== undefined) {
      cmd.settle(err, cmd.cause(), cmd.closureCalls, cmd.what, cmd.recorded);
    } else if (!retired) {
      this.#completed.set(cmd.cookie, [err, cmd.cause(), cmd.what ?? `${cmd.type}: command failed`]);
      if (err === 0) reportLostCauses(cmd.causes);
    } else {
      // Nobody can ask about an auto-retired command: never lose a throw.
      reportLostCauses(cmd.causes);
    }
  }

  /**
   * `nbd_aio_command_completed` for a valid cookie: false while in flight,
   * unknown or retired; true once completed successfully; throws the
   * command's NbdError once it completed with an error. Retires it.
   */
  completed(cookie: number): boolean {
    const done = this.#completed.get(cookie);
    if (done === undefined) return false;
    this.#completed.delete(cookie);
    const [err, cause, what] = done;
    if (err !== 0) throw libnbdError('nbd_aio_command_completed', err, what, cause);
    return true;
  }

  /** `nbd_aio_peek_command_completed`, with `inFlight` as nbd_aio_in_flight counts. */
  peek(inFlight: number): number {
    let oldest: number | undefined;
    for (const cookie of this.#completed.keys()) {
      oldest = cookie;
      break;
    }
    const cookie = peekCompleted(oldest, inFlight);
    if (cookie === undefined) throw libnbdError('nbd_aio_peek_command_completed', errno.EINVAL, 'no commands are in flight');
    return cookie;
  }

  /** close(): every pending command in issue order, all forgotten, and every completed one. */
  takeAll(): PendingCommand[] {
    const pending = this.slots.filter((c): c is PendingCommand => c !== undefined).sort(byIssueOrder);
    this.slots.length = 0;
    this.pending = 0;
    this.#completed.clear();
    return pending;
  }
}

/**
 * A Promise form: settles with the command (`start` issues it with the
 * Settle given); errors worded as the sync call `api` words them. `failed`:
 * how a failed command ends where libnbd's sync call has rules of its own
 * (options): a value to resolve with, or the error.
 */
export function commandPromise<T>(
  api: string,
  failure: string,
  result: (closureCalls: number) => T,
  start: (settle: Settle) => void,
  failed?: (err: number, recorded: [number, string] | undefined, cause: unknown) => { value: T } | NbdError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const settle: Settle = (err, cause, closureCalls, what, recorded) => {
      const outcome = err === 0 ? { value: result(closureCalls) } : failed === undefined ? undefined : failed(err, recorded, cause);
      if (outcome === undefined) {
        reject(libnbdError(api, err, what ?? failure, cause));
      } else if (outcome instanceof NbdError) {
        reject(outcome);
      } else {
        reportLostCauses(cause === undefined ? undefined : [cause]);
        resolve(outcome.value);
      }
    };
    try {
      start(settle);
    } catch (e) {
      reject(renameApi(e, api));
    }
  });
}

/** A callback's throw that an aborted Promise form no longer reports. */
export function reportAbortedCause(e: unknown): void {
  if (e instanceof NbdError && e.cause !== undefined) {
    reportLostCauses([e.cause], 'a libnbd callback threw but its command\'s Promise was aborted');
  }
}
