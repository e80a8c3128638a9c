// An NBD export as one side of a copy (nbdcopy's nbd-ops.c): a Handle the
// caller gave (one connection), a Pool, or a URI copy() opens as a Pool.
import { NbdError, errno } from '../../errors';
import { CMD_FLAG_NO_HOLE, SIZE_PREFERRED } from '../../generated/constants';
import type { Driver, Handle } from '../../handle/handle';
import { own } from '../../handle/buffers';
import { extents, type Extent, type ExtentSource } from '../extents';
import { Pool } from '../pool';
import { serverLimits } from '../stream-support';
import { MiB, preferredOr4096, settleAll, type Side } from './side';

/** What a copy uses of a Handle or a Pool. */
export interface NbdTarget extends ExtentSource {
  canZero(): boolean;
  canFlush(): boolean;
  canMultiConn(): boolean;
  isReadOnly(): boolean;
  pread(buf: ArrayBufferView, offset: number): Promise<void>;
  pwrite(buf: ArrayBufferView, offset: number): Promise<void>;
  zero(count: number, offset: number, flags?: number): Promise<void>;
  flush(): Promise<void>;
}

export interface OpenNbdOptions {
  connections: number;
  driver: Driver;
  /** Whether this side is read: base:allocation is requested (unless extents are off). */
  source: boolean;
  extents: boolean;
  configure: ((h: Handle) => void) | undefined;
}

export class NbdSide implements Side {
  readonly kind = 'nbd_ops';
  readonly size: number;
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
  readonly zeroed = false;
  readonly preallocate = false;
  readonly sequential = false;
  readonly discards = false;
  readonly #canZero: boolean;
  readonly #canExtents: boolean;
  #zeroes: Buffer | undefined;

  constructor(
    readonly name: string,
    readonly target: NbdTarget,
    readonly connections: number,
    /** Whether copy() opened it (and closes it). */
    readonly owned: boolean,
  ) {
    this.size = Number(target.getSize());
    // The minimum (else 1) and the maximum (else 32 MiB, at most libnbd's 64 MiB).
    ({ minimum: this.minimum, maximum: this.maximum } = serverLimits(target));
    this.preferred = preferredOr4096(Number(target.getBlockSize(SIZE_PREFERRED)));
    this.#canZero = target.canZero();
    this.#canExtents = target.canMetaContext('base:allocation');
  }

  /** A URI, opened as a Pool: `connections` if the server allows multi-conn, else one. */
  static async open(uri: string, options: OpenNbdOptions): Promise<NbdSide> {
    const pool = await Pool.connect(uri, {
      connections: options.connections,
      driver: options.driver,
      metaContexts: options.source && options.extents ? ['base:allocation'] : [],
      configure: (h) => {
        // As nbdcopy: ?tls-psk-file= and the like in the URI.
        h.setUriAllowLocalFile(true);
        // A copy never looks at the buffer of a failed read, so libnbd need
        // not zero it first: that memset ran on the issuing thread for every byte.
        h.setPreadInitialize(false);
        options.configure?.(h);
      },
    });
    return new NbdSide(uri, pool, pool.connections, true);
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.target.pread(buf, offset);
  }

  write(buf: Buffer, offset: number): Promise<void> {
    return this.target.pwrite(buf, offset);
  }

  async zero(count: number, offset: number, allocated: boolean): Promise<void> {
    if (this.#canZero) {
      await this.target.zero(count, offset, allocated ? CMD_FLAG_NO_HOLE : 0);
      return;
    }
    // No WRITE_ZEROES: write zeroes, in requests the server takes (as nbdcopy).
    const zeroes = (this.#zeroes ??= Buffer.alloc(Math.min(this.maximum, 4 * MiB)));
    const step = zeroes.length;
    const writes: Promise<void>[] = [];
    for (let done = 0; done < count; done += step) {
      // copy()'s own zeroes, shown to nobody: lent to libnbd in place (lib/handle/buffers.ts).
      const view = zeroes.subarray(0, Math.min(step, count - done));
      own(view);
      writes.push(this.target.pwrite(view, offset + done));
    }
    await settleAll(writes);
  }

  extents(start: number, end: number): AsyncIterable<Extent> | undefined {
    return this.#canExtents ? extents(this.target, { start, end }) : undefined;
  }

  async flush(): Promise<void> {
    if (this.target.canFlush()) await this.target.flush();
  }

  isReadOnly(): boolean {
    return this.target.isReadOnly();
  }

  async close(): Promise<void> {
    if (this.owned) await (this.target as Pool).close();
  }
}

/** The read-only check nbdcopy makes before anything is written. */
export function refuseReadOnly(side: NbdSide): void {
  if (side.isReadOnly()) throw new NbdError(`${side.name}: the destination is read-only, cannot write to it`, errno.EROFS);
}
