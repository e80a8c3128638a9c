// lib/io's methods of Handle: streams and extents. The core (lib/handle/)
// knows nothing of lib/io; this layer attaches its methods to Handle's
// prototype and declares them on its type (interface merging), as
// better-sqlite3 attaches lib/methods/* to its Database. Loaded by the
// package's entry (lib/index.ts) and by every lib/io module that calls them.
import type { Readable, Writable } from 'node:stream';
import { Handle } from '../handle/handle';
import { extents, type Extent, type ExtentsOptions } from './extents';
import { createReadStream, type ReadStreamOptions } from './read-stream';
import { createWriteStream, type WriteStreamOptions } from './write-stream';

declare module '../handle/handle' {
  interface Handle<B extends boolean = false> {
    /**
     * A Readable of the export's bytes from `start` to `end` inclusive (as
     * fs.createReadStream; default: the whole export), in order, with at most
     * `queueDepth` reads in flight. See lib/io/read-stream.ts.
     */
    createReadStream(options?: ReadStreamOptions): Readable;
    /**
     * A Writable writing the export from `start` on: small writes coalesced
     * up to `highWaterMark`, at most `queueDepth` writes in flight, 'finish'
     * once every write completed (and, with `flush: true`, was flushed). See
     * lib/io/write-stream.ts.
     */
    createWriteStream(options?: WriteStreamOptions): Writable;
    /**
     * The extents of `[start, end)` (default: the whole export) in `context`
     * (default 'base:allocation'), contiguous and merged; the handle must have
     * been connected with the context added. See lib/io/extents.ts.
     */
    extents(options?: ExtentsOptions): AsyncGenerator<Extent, void, undefined>;
  }
}

// Non-enumerable, as class methods are.
Object.defineProperties(Handle.prototype, {
  createReadStream: {
    value: function createReadStreamMethod(this: Handle<boolean>, options?: ReadStreamOptions): Readable {
      return createReadStream(this, options);
    },
    writable: true,
    configurable: true,
  },
  createWriteStream: {
    value: function createWriteStreamMethod(this: Handle<boolean>, options?: WriteStreamOptions): Writable {
      return createWriteStream(this, options);
    },
    writable: true,
    configurable: true,
  },
  extents: {
    value: function extentsMethod(this: Handle<boolean>, options?: ExtentsOptions): AsyncGenerator<Extent, void, undefined> {
      return extents(this, options);
    },
    writable: true,
    configurable: true,
  },
});
