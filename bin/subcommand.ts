// What every subcommand of nbdjs is (bin/nbdjs.ts lists them): a module
// exporting `usage()` and `run(argv, io, signal)`, run with the arguments
// after its name. It resolves with the exit status; it throws a UsageError
// for a bad command line (status 2 and the usage, unless the subcommand
// says otherwise) and anything else for a failure (status 1, one line).
import type { Readable, Writable } from 'node:stream';

export interface Io {
  /** Writes to stdout; resolves once the bytes are taken. Rejects when stdout fails (EPIPE: the reader went away, which ends nbdjs by SIGPIPE). */
  out(data: string | Uint8Array): Promise<void>;
  /** One line (or several) on stderr. */
  err(text: string): void;
  /** stdin and stdout as streams (copy's '-'), made when first asked for. */
  readonly stdin: Readable;
  readonly stdout: Writable;
}

export interface Subcommand {
  /** The text of `nbdjs SUBCOMMAND --help`: every option. */
  usage(): string;
  /** Runs the subcommand; `signal` aborts on Ctrl-C (the process then exits 130). */
  run(argv: string[], io: Io, signal: AbortSignal): Promise<number>;
}

/** A usage error: exit status 2, with the subcommand's usage text unless `usage: false` (a bad option value, as nbdcopy reports it: one line). */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly showUsage: boolean;

  constructor(message: string, options: { usage?: boolean } = {}) {
    super(message);
    this.showUsage = options.usage ?? true;
  }
}
