// libnbd for Node.js: the public entry point.
export { Handle, defaultDriver } from './handle/handle';
export type { HandleOptions, Driver } from './handle/handle';
import './io/handle-methods'; // lib/io's methods of Handle (streams, extents)
export type {
  ChunkCallback,
  CompletionCallback,
  ContextCallback,
  DebugCallback,
  ErrorRef,
  Extent64Callback,
  ExtentCallback,
  ListCallback,
} from './callbacks';
export type { Int64, NbdHave } from './generated/handle-api';
export { NbdError, errnoName } from './errors';
export { allocBuffer } from './handle/buffers';
export type { CommandOptions, SignalOptions } from './validate';
// lib/io, the handle-level half: streams (methods of Handle), cancellation, connect().
export { AbortError } from './errors';
export { connect } from './io/connect';
export type { ConnectOptions } from './io/connect';
export type { ReadStreamOptions } from './io/read-stream';
export type { WriteStreamOptions } from './io/write-stream';
export * from './generated/constants';
export * from './generated/module-api';
// lib/io, the data-moving half: isZero, extents (a method of Handle and Pool), Pool, copy().
export { isZero } from './io/zero';
export type { Extent, ExtentsOptions } from './io/extents';
export { Pool } from './io/pool';
export type { PoolOptions, ReconnectOptions } from './io/pool';
export { copy } from './io/copy';
export type { CopyEndpoint, CopyOptions, CopyProgress, CopySide, CopySideInfo, CopyStart, CopyStats } from './io/copy';
