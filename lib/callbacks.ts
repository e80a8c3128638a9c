// The JS callback types of libnbd's closures. Every callback runs after
// libnbd has returned (never inside it), so it may call back into the handle.
import type { Int64 } from './generated/handle-api';

/** A mutable errno, as libnbd's `int *error`; valid during the call. */
export interface ErrorRef {
  value: number;
}

/**
 * Called for each chunk of a structured read, in libnbd's order.
 * `subbuf` is a zero-copy view of the caller's buffer; `offset` is absolute.
 * Return -1 (or throw) to fail the command; other values are ignored.
 */
export type ChunkCallback<B extends boolean = boolean> = (
  subbuf: Buffer | Uint8Array,
  offset: Int64<B>,
  status: number,
  error: ErrorRef,
) => unknown;

/**
 * Called once per command after its other callbacks. Return -1 with a
 * non-zero `error.value` to replace the command's error; return 1 to
 * auto-retire (data commands; option commands are always retired).
 */
export type CompletionCallback = (error: ErrorRef) => unknown;

/**
 * Block status: one call per meta context. `entries` holds (length, flags)
 * pairs, as libnbd's `uint32_t *entries` does. Return -1 (or throw) to fail
 * the command, as for a chunk callback.
 */
export type ExtentCallback<B extends boolean = boolean> = (
  metacontext: string,
  offset: Int64<B>,
  entries: Uint32Array,
  error: ErrorRef,
) => unknown;

/** Block status with 64-bit extents (libnbd ≥ 1.18): (length, flags) pairs as bigints. */
export type Extent64Callback<B extends boolean = boolean> = (
  metacontext: string,
  offset: Int64<B>,
  entries: BigUint64Array,
  error: ErrorRef,
) => unknown;

/** optList: one call per export; the return value is ignored. */
export type ListCallback = (name: string, description: string) => unknown;

/** optListMetaContext and friends: one call per meta context; the return value is ignored. */
export type ContextCallback = (name: string) => unknown;

/** setDebugCallback: libnbd's debug messages; the return value is ignored. */
export type DebugCallback = (context: string, message: string) => unknown;
