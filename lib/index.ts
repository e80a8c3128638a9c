// libnbd for Node.js: the public entry point.
export { Handle, defaultDriver } from './handle';
export type { HandleOptions, Driver } from './handle';
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
export type { Int64 } from './generated/handle-api';
export { NbdError, errnoName } from './errors';
export type { CommandOptions, SignalOptions } from './validate';
export { AbortError } from './errors';
export * from './generated/constants';
export * from './generated/module-api';
