// The standard streams of nbdjs, and its death by SIGPIPE. A reader that
// goes away (`nbdjs dump URI | head`) ends nbdjs as it ends libnbd's C
// tools: by SIGPIPE, quietly (status 141 in a shell). Node ignores SIGPIPE
// and reports EPIPE instead; a subcommand's write then fails, the
// subcommand cleans up (closes its handles) and fails, and nbdjs, seeing
// that stdout went away, kills itself with SIGPIPE rather than report it.
import type { Readable, Writable } from 'node:stream';
import type { Io } from './subcommand';

export interface ProcessIo extends Io {
  /** Whether stdout failed with EPIPE (its reader went away). */
  readonly stdoutGone: boolean;
}

/** The process's streams as an Io; process.stdout and process.stdin are only made when used (start-up time). */
export function processIo(): ProcessIo {
  let gone = false;
  let stdout: Writable | undefined;
  const getStdout = (): Writable => {
    if (stdout === undefined) {
      stdout = process.stdout;
      stdout.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EPIPE') gone = true;
      });
    }
    return stdout;
  };
  return {
    get stdoutGone() {
      return gone;
    },
    get stdin(): Readable {
      return process.stdin;
    },
    get stdout(): Writable {
      return getStdout();
    },
    out(data) {
      if (data.length === 0) return Promise.resolve();
      const s = getStdout();
      return new Promise<void>((resolve, reject) => {
        s.write(data, (e?: Error | null) => {
          if (e) {
            if ((e as NodeJS.ErrnoException).code === 'EPIPE') gone = true;
            reject(e);
          } else resolve();
        });
      });
    },
    err(text) {
      process.stderr.write(text);
    },
  };
}

/**
 * Ends the process by SIGPIPE, as a C tool dies writing to a closed pipe.
 * Node ignores SIGPIPE; a listener added and removed gives the signal its
 * default action back (libuv resets it), and the process sends it to itself.
 */
export function dieOfSigpipe(): void {
  const restore = () => {};
  process.on('SIGPIPE', restore);
  process.off('SIGPIPE', restore);
  process.kill(process.pid, 'SIGPIPE');
}
