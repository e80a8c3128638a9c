// The JS callback types of libnbd's closures: generated from the table's
// `closures` (scripts/api-table.mjs) into lib/generated/callbacks.ts.
export type {
  ChunkCallback,
  CompletionCallback,
  ContextCallback,
  DebugCallback,
  ErrorRef,
  Extent64Callback,
  ExtentCallback,
  Int64,
  ListCallback,
} from './generated/callbacks';
