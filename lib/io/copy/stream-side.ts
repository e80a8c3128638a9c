// A stream as one side of a copy (nbdcopy's pipe-ops.c): stdin or stdout, a
// pipe, a character device, or any Readable or Writable the caller gives.
// A source has no size until its end and is read in order; a destination
// takes every byte, zeroes included, in offset order: writes that arrive
// early (requests complete out of order) wait for their turn.
import type { Readable, Writable } from 'node:stream';
import { NbdError, errno } from '../../errors';
import { MiB, type Side } from './side';

/** A pipe's preferred size in nbdcopy (pipe_create). */
const PIPE_PREFERRED = 4096;

export class StreamSource implements Side {
  readonly kind = 'pipe_ops';
  readonly size = undefined;
  readonly connections = 1;
  readonly minimum = 1;
  readonly preferred = PIPE_PREFERRED;
  readonly maximum = Infinity;
  readonly zeroed = false;
  readonly preallocate = false;
  readonly sequential = true;
  readonly discards = false;
  readonly #chunks: AsyncIterator<Buffer | string>;
  #leftover: Buffer | undefined;
  #ended = false;

  constructor(
    readonly name: string,
    readonly stream: Readable,
    /** copy() opened it (and destroys it at the end). */
    readonly owned: boolean,
  ) {
    this.#chunks = stream[Symbol.asyncIterator]();
  }

  read(): Promise<void> {
    return Promise.reject(new NbdError(`${this.name}: a stream is read in order (readNext)`, errno.EINVAL));
  }

  /** Fills `buf` from the stream as far as it goes; resolves with the bytes read, 0 at its end. */
  async readNext(buf: Buffer): Promise<number> {
    let n = 0;
    while (n < buf.length && !this.#ended) {
      let chunk = this.#leftover;
      this.#leftover = undefined;
      if (chunk === undefined) {
        const next = await this.#chunks.next();
        if (next.done === true) {
          this.#ended = true;
          break;
        }
        chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      }
      const take = Math.min(chunk.length, buf.length - n);
      chunk.copy(buf, n, 0, take);
      n += take;
      if (take < chunk.length) this.#leftover = chunk.subarray(take);
    }
    return n;
  }

  write(): Promise<void> {
    return Promise.reject(new NbdError(`${this.name}: not a destination`, errno.EINVAL));
  }

  zero(): Promise<void> {
    return this.write();
  }

  extents(): undefined {
    return undefined;
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    // Leaves the caller's stream as it is; one copy() opened is closed.
    if (this.owned && !this.stream.destroyed) this.stream.destroy();
  }
}

interface Turn {
  start: () => void;
  fail: (e: unknown) => void;
}

export class StreamDestination implements Side {
  readonly kind = 'pipe_ops';
  readonly size = Infinity;
  readonly connections = 1;
  readonly minimum = 1;
  readonly preferred = PIPE_PREFERRED;
  readonly maximum = Infinity;
  readonly zeroed = false;
  readonly preallocate = false;
  readonly sequential = true;
  readonly discards = false;
  /** The offset written up to: the next write must start here. */
  #next = 0;
  /** Writes that arrived before their turn, by offset. */
  readonly #waiting = new Map<number, Turn>();
  #failed: { error: unknown } | undefined;
  #zeroes: Buffer | undefined;
  readonly #onError = (e: unknown) => this.abandon(e);

  constructor(
    readonly name: string,
    readonly stream: Writable,
    readonly owned: boolean,
  ) {
    // A stream error (EPIPE: the reader went away) fails the writes; without
    // a listener it would be thrown as an uncaught 'error'.
    stream.on('error', this.#onError);
  }

  read(): Promise<void> {
    return Promise.reject(new NbdError(`${this.name}: not a source`, errno.EINVAL));
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    await this.#turn(offset);
    try {
      await this.#put(buf);
    } catch (e) {
      this.abandon(e);
      throw e;
    }
    this.#advance(offset + buf.length);
  }

  async zero(count: number, offset: number): Promise<void> {
    await this.#turn(offset);
    try {
      // A pipe takes zeroes as data (nbdcopy's pipe_synch_zero fails, and it writes them).
      const zeroes = (this.#zeroes ??= Buffer.alloc(MiB));
      for (let done = 0; done < count; done += zeroes.length) await this.#put(zeroes.subarray(0, Math.min(zeroes.length, count - done)));
    } catch (e) {
      this.abandon(e);
      throw e;
    }
    this.#advance(offset + count);
  }

  extents(): undefined {
    return undefined;
  }

  async flush(): Promise<void> {
    // As nbdcopy's pipe_flush: what was written is the reader's; each write
    // has already been handed to the stream's destination.
  }

  abandon(error: unknown): void {
    this.#failed ??= { error };
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const t of waiting) t.fail(error);
  }

  async finish(): Promise<void> {
    if (!this.owned) return;
    await new Promise<void>((resolve, reject) => {
      this.stream.end((e?: Error | null) => (e ? reject(e) : resolve()));
    });
  }

  async close(): Promise<void> {
    this.stream.off('error', this.#onError);
    // A stream copy() did not open stays with its owner; process.stdout is never closed.
    if (this.owned && !this.stream.destroyed) this.stream.destroy();
  }

  #turn(offset: number): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed.error);
    if (offset === this.#next) return Promise.resolve();
    if (offset < this.#next || this.#waiting.has(offset)) {
      return Promise.reject(new NbdError(`${this.name}: a stream is written in order: offset ${offset} again`, errno.EINVAL));
    }
    return new Promise<void>((start, fail) => this.#waiting.set(offset, { start, fail }));
  }

  #advance(to: number): void {
    this.#next = to;
    const turn = this.#waiting.get(to);
    if (turn !== undefined) {
      this.#waiting.delete(to);
      turn.start();
    }
  }

  /** One write, resolved once the stream has taken it (its callback): the buffer may then be reused. */
  #put(buf: Buffer): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed.error);
    return new Promise<void>((resolve, reject) => {
      this.stream.write(buf, (e?: Error | null) => (e ? reject(e) : resolve()));
    });
  }
}
