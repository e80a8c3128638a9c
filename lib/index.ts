// libnbd for Node.js: the public entry point.
import { binding } from './binding';

export { Handle, defaultDriver } from './handle';
export type { ChunkCallback, CompletionCallback, ErrorRef, HandleOptions, Driver } from './handle';
export type { Int64 } from './generated/handle-api';
export { NbdError, errnoName } from './errors';
export * from './generated/constants';

/** `nbd_get_version`: the version of the libnbd library loaded. */
export function getVersion(): string {
  return binding.getVersion();
}
