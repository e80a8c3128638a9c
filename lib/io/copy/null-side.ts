// null: as a destination (nbdcopy's null-ops.c): every write and zero is
// thrown away at once. Faster than /dev/null: nothing is written, zeroes
// need no writing, and the data read needs no inspecting.
import { NbdError, errno } from '../../errors';
import type { Side } from './side';

export class NullSide implements Side {
  readonly kind = 'null_ops';
  readonly name = 'null:';
  /** nbdcopy's INT64_MAX: any source fits. */
  readonly size = Infinity;
  readonly minimum = 1;
  readonly preferred = 4096;
  readonly maximum = Infinity;
  readonly zeroed = true;
  readonly preallocate = false;
  readonly sequential = false;
  readonly discards = true;

  /** As many connections as the source: null: has multi-conn. */
  constructor(readonly connections: number) {}

  read(): Promise<void> {
    return Promise.reject(new NbdError('null: cannot be read', errno.EINVAL));
  }

  async write(): Promise<void> {}

  async zero(): Promise<void> {}

  extents(): undefined {
    return undefined;
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}
