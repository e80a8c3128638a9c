// A regular file or a block device as one side of a copy (nbdcopy's
// file-ops.c), read and written at offsets. Anything else a path may name
// (a character device, a FIFO, a socket) is a stream (stream-side.ts), as
// nbdcopy's open_local makes it a pipe.
import { promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { NbdError, errno, withCode } from '../../errors';
import { MiB, preferredOr4096, type Side } from './side';
import { StreamDestination, StreamSource } from './stream-side';

export class FileSide implements Side {
  readonly kind = 'file_ops';
  readonly minimum = 1;
  readonly maximum = Infinity;
  readonly sequential = false;
  readonly discards = false;
  readonly preallocate: boolean;
  #zeroes: Buffer | undefined;

  constructor(
    readonly name: string,
    readonly fh: FileHandle,
    readonly size: number,
    readonly preferred: number,
    readonly connections: number,
    /** A file copy() truncated reads as zeroes; a block device does not. */
    readonly zeroed: boolean,
    readonly device: boolean,
  ) {
    this.preallocate = zeroed;
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    for (let done = 0; done < buf.length; ) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, offset + done);
      if (bytesRead === 0) throw new NbdError(`${this.name}: read at offset ${offset + done}: unexpected end of file`, errno.EIO);
      done += bytesRead;
    }
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    for (let done = 0; done < buf.length; ) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async zero(count: number, offset: number): Promise<void> {
    // Node has no fallocate or BLKZEROOUT: where blocks must be zeroed or
    // stay allocated, zeroes are written.
    const zeroes = (this.#zeroes ??= Buffer.alloc(4 * MiB));
    const step = zeroes.length;
    for (let done = 0; done < count; done += step) await this.write(zeroes.subarray(0, Math.min(step, count - done)), offset + done);
  }

  extents(): undefined {
    // Node has no SEEK_DATA/SEEK_HOLE: a file source is read whole, and
    // zero detection finds its holes (they read as zeroes).
    return undefined;
  }

  flush(): Promise<void> {
    return this.fh.sync();
  }

  async finish(size: number): Promise<void> {
    // A stream copied into a file: its size is known now.
    if (!this.device) await this.fh.truncate(size);
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

function isDirectory(path: string, syscall: string): Error {
  return withCode(new Error(`EISDIR: illegal operation on a directory, ${syscall} '${path}'`), 'EISDIR');
}

/** A block device's size and optimal I/O size, from sysfs (Node has no BLKGETSIZE64 or BLKIOOPT). */
async function deviceGeometry(path: string, st: Stats): Promise<{ size: number; preferred: number }> {
  const rdev = BigInt(st.rdev);
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  const dir = `/sys/dev/block/${major}:${minor}`;
  const read = (file: string) => fsp.readFile(`${dir}/${file}`, 'utf8').then((s) => Number(s.trim()), () => undefined);
  const sectors = await read('size');
  if (sectors === undefined) throw new NbdError(`${path}: cannot get the size of the block device (no ${dir}/size)`, errno.ENOTSUP);
  // A partition's queue is its disk's.
  const optimal = (await read('queue/optimal_io_size')) ?? (await read('../queue/optimal_io_size')) ?? 0;
  return { size: sectors * 512, preferred: preferredOr4096(optimal) };
}

/** A local path as a source: a regular file or a block device, else a stream (a character device, a FIFO). */
export async function openLocalSource(path: string, connections: number): Promise<Side> {
  const fh = await fsp.open(path, 'r');
  try {
    const st = await fh.stat();
    if (st.isFile()) return new FileSide(path, fh, st.size, preferredOr4096(st.blksize), connections, false, false);
    if (st.isBlockDevice()) {
      const { size, preferred } = await deviceGeometry(path, st);
      return new FileSide(path, fh, size, preferred, connections, false, true);
    }
    if (st.isDirectory()) throw isDirectory(path, 'read');
    return new StreamSource(path, fh.createReadStream({ autoClose: true }), true);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/**
 * A local path as a destination, as nbdcopy opens it: an existing file or
 * device read-write (a block device must not become a regular file by
 * accident), else a new file. A regular file is emptied and set to the
 * source's size, so that it reads as zeroes and holes stay holes; a stream
 * source's size is set at its end. A character device or a FIFO is a stream.
 */
export async function openLocalDestination(path: string, size: number | undefined, connections: number): Promise<Side> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(path, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    fh = await fsp.open(path, 'wx+', 0o644);
  }
  try {
    const st = await fh.stat();
    if (st.isFile()) {
      await fh.truncate(0);
      if (size !== undefined) await fh.truncate(size);
      return new FileSide(path, fh, size ?? Infinity, preferredOr4096(st.blksize), connections, true, false);
    }
    if (st.isBlockDevice()) {
      const geometry = await deviceGeometry(path, st);
      return new FileSide(path, fh, geometry.size, geometry.preferred, connections, false, true);
    }
    if (st.isDirectory()) throw isDirectory(path, 'open');
    return new StreamDestination(path, fh.createWriteStream({ autoClose: true }), true);
  } catch (e) {
    await fh.close();
    throw e;
  }
}
