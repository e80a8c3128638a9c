// The declarative description of the libnbd calls this binding exposes
// (modelled on libnbd's generator/API.ml). scripts/generate.mjs checks it and
// turns it into native/generated/api_methods.{h,cc} (per-call C++ glue, the
// closures' declarations and makers), lib/generated/*.ts (typed, validated
// TS methods, callback types, constants, `have`), typings/native.ts (the
// native surface), test/generated/coverage.ts and docs/api.md.
//
// Families (each its own list below): simple synchronous calls; data
// commands (aio_* returning a cookie, plus a Promise form built on them);
// option-negotiation commands (aio_opt_*, plus Promise forms); connects
// (aio_connect_*, Promise forms, run by the driver); module functions; calls
// written by hand; and the calls the binding owns instead of exposing.
//
// Kinds of argument and of return: `argKinds` and `retKinds` below hold
// every fact the generator uses about each. Closures: `closures` below.
//
// The hand-written entries are carried too, so that the typings and the
// reference stay complete and the coverage test can check the header.
// `have`: the call is newer than libnbd 1.14 (`since` names the release, and
// its symbol's version node LIBNBD_<since>): the addon does not link it but
// looks it up in the loaded libnbd when it loads (native/generated/
// libnbd_loaded.{h,cc}), and the exported `have` says whether it was found;
// a call the loaded libnbd lacks fails with ENOTSUP.
// `state` is the permitted-state note from libnbd's documentation; `after`: C++
// the glue runs after the call succeeded (what the native side keeps in step).

/**
 * Kinds of argument. `ts`: the public TS type; `nativeTs`: the type the
 * native method takes (default `ts`); `validate`: the lib/validate.ts check;
 * `toNative`: the JS conversion before the native call (`$` is the value);
 * `c`: libnbd's C type (a buffer's is followed by its size_t count);
 * `decl`: C++ lines converting info[$i] into the local `$v`; `pass`: the C arguments made of it; `owned`: what a connect task
 * captures (default `$v`), `ownedDecl` the JS-side lines then (default
 * `decl`), `taskDecl` what the task declares from it, `refusedAtOnce` a value
 * libnbd refuses before anything that may block (the connect is then made
 * on the JS thread, failing there as in C); `buffer`: a buffer
 * libnbd accesses (the command's base address); `persist`: libnbd keeps the
 * pointer until the command completes (API.ml's BytesPersistIn/Out): the
 * buffer is pinned (never transferred or detached by Node meanwhile);
 * `replyData`: the reply carries the buffer's bytes (a read: the drain on the
 * JS thread counts them against its cap); `family`: the third element of an argument names its constants' prefix.
 */
export const argKinds = {
  bool: { doc: 'JS boolean -> C bool', ts: 'boolean', validate: 'validateBoolean', c: 'bool',
    decl: ['bool $v = info[$i].ToBoolean().Value();'], pass: ['$v'] },
  int: { doc: 'JS int32 -> C int (enums such as TLS_*)', ts: 'number', validate: 'validateInt32', c: 'int', family: true,
    decl: ['int $v = info[$i].As<Napi::Number>().Int32Value();'], pass: ['$v'] },
  fd: { doc: 'JS int32 (a socket fd) -> C int', ts: 'number', validate: 'validateFd', c: 'int',
    decl: ['int $v = info[$i].As<Napi::Number>().Int32Value();'], pass: ['$v'] },
  uint32: { doc: 'JS uint32 -> C uint32_t', ts: 'number', validate: 'validateUint32', c: 'uint32_t',
    decl: ['uint32_t $v = info[$i].As<Napi::Number>().Uint32Value();'], pass: ['$v'] },
  flags: { doc: 'JS uint32 -> C uint32_t (a bitmask)', ts: 'number', validate: 'validateUint32', c: 'uint32_t', family: true,
    decl: ['uint32_t $v = info[$i].As<Napi::Number>().Uint32Value();'], pass: ['$v'] },
  size: { doc: 'JS uint32 -> C size_t', ts: 'number', validate: 'validateUint32', c: 'size_t',
    decl: ['size_t $v = info[$i].As<Napi::Number>().Uint32Value();'], pass: ['$v'] },
  uint64: { doc: 'JS number | bigint -> C uint64_t', ts: 'number | bigint', validate: 'validateUint64', toNative: 'toNativeUint64($)', c: 'uint64_t',
    decl: ['uint64_t $v = ArgUint64(info[$i]);'], pass: ['$v'] },
  string: { doc: 'JS string without NUL -> C const char *', ts: 'string', validate: 'validateString', c: 'const char *',
    decl: ['std::string $v = info[$i].As<Napi::String>().Utf8Value();'], pass: ['$v.c_str()'] },
  service: { doc: 'JS string | number -> C const char * (a port)', ts: 'string | number', nativeTs: 'string', validate: 'validateService',
    toNative: 'String($)', c: 'const char *', decl: ['std::string $v = info[$i].As<Napi::String>().Utf8Value();'], pass: ['$v.c_str()'] },
  strings: { doc: 'JS string[] -> C char ** (NULL-terminated)', ts: 'string[]', validate: 'validateStringArray', c: 'char **',
    decl: ['std::vector<std::string> $v_strings = ArgStrings(info[$i]);', 'std::vector<char*> $v = Argv($v_strings);'], pass: ['$v.data()'],
    owned: '$v_strings', ownedDecl: ['std::vector<std::string> $v_strings = ArgStrings(info[$i]);'], taskDecl: 'std::vector<char*> $v = Argv($v_strings); ',
    refusedAtOnce: '$v_strings.empty()' },
  buffer_out: { doc: 'Buffer/TypedArray/DataView libnbd writes into (its byteLength is the count) -> C void *, size_t', ts: 'ArrayBufferView',
    validate: 'validateBuffer', c: 'void *', buffer: true, persist: true, replyData: true,
    decl: ['uint8_t* $v = nullptr;', 'size_t $v_len = 0;', 'if (!ArgBuffer(info[$i], &$v, &$v_len)) return ThrowBufferType(env);'], pass: ['$v', '$v_len'] },
  buffer_in: { doc: 'Buffer/TypedArray/DataView libnbd reads from -> C const void *, size_t', ts: 'ArrayBufferView',
    validate: 'validateBuffer', c: 'const void *', buffer: true, persist: true,
    decl: ['uint8_t* $v = nullptr;', 'size_t $v_len = 0;', 'if (!ArgBuffer(info[$i], &$v, &$v_len)) return ThrowBufferType(env);'], pass: ['$v', '$v_len'] },
};

/**
 * Kinds of return. `c`: libnbd's C return type; `ts`: the public TS type
 * (`Int64<B>`: number or bigint by the handle's option); `nativeTs`: what
 * the native method returns; `cDecl`: the C result's declaration; `fail`: C's error test on `r` (none: never
 * fails); `nativeFail`: what the native method returns on failure or when
 * closed or not built, `jsFail` the TS test for it; `toJs`: C++ lines
 * returning `r`; `jsReturn`: the TS return statement.
 */
export const retKinds = {
  void: { doc: 'C int, -1 on error', c: 'int', ts: 'void', nativeTs: 'number', cDecl: null, fail: '== -1', nativeFail: 'minus1',
    toJs: ['return Napi::Number::New(env, 0);'], jsReturn: 'return;' },
  bool: { doc: 'C int (0/1), -1 on error', c: 'int', ts: 'boolean', nativeTs: 'boolean | -1', cDecl: 'int64_t r', fail: '== -1', nativeFail: 'minus1',
    toJs: ['return Napi::Boolean::New(env, r != 0);'], jsReturn: 'return r as boolean;' },
  int: { doc: 'C int, -1 on error', c: 'int', ts: 'number', nativeTs: 'number', cDecl: 'int64_t r', fail: '== -1', nativeFail: 'minus1',
    toJs: ['return Napi::Number::New(env, static_cast<double>(r));'], jsReturn: 'return r as number;' },
  flags: { doc: 'C uint32 bitmask, -1 on error', c: 'uint32_t', ts: 'number', nativeTs: 'number', cDecl: 'int64_t r', fail: '== -1', nativeFail: 'minus1',
    toJs: ['return Napi::Number::New(env, static_cast<double>(r));'], jsReturn: 'return r as number;' },
  int64: { doc: 'C int64_t, -1 on error', c: 'int64_t', ts: 'Int64<B>', nativeTs: 'number | bigint', cDecl: 'int64_t r', fail: '== -1', nativeFail: 'minus1',
    toJs: ['return Int64ToJs(env, r);'], jsReturn: 'return this._int64(r as number | bigint);' },
  uint64: { doc: 'C uint64_t, never fails (null: closed or not built)', c: 'uint64_t', ts: 'Int64<B>', nativeTs: 'number | bigint | null', cDecl: 'uint64_t r', fail: null,
    nativeFail: 'null', toJs: ['return Uint64ToJs(env, r);'], jsReturn: 'return this._int64(r as number | bigint);' },
  string: { doc: 'C char * the caller frees, NULL on error', c: 'char *', ts: 'string', nativeTs: 'string | null', cDecl: 'char* r', fail: '== nullptr', nativeFail: 'null',
    toJs: ['Napi::String s = Napi::String::New(env, r);', 'free(r);', 'return s;'], jsReturn: 'return r as string;' },
  static_string: { doc: 'C const char * (not freed), NULL on error', c: 'const char *', ts: 'string', nativeTs: 'string | null', cDecl: 'const char* r', fail: '== nullptr',
    nativeFail: 'null', toJs: ['return Napi::String::New(env, r);'], jsReturn: 'return r as string;' },
};

const pre = 'created';
const post = 'connected, closed or dead';

/**
 * libnbd's closures as data (API.ml's `closure`: a name and typed
 * arguments). The generator makes from it the JS callback types
 * (lib/generated/callbacks.ts) and the C++ glue: each closure's trampoline
 * (native/generated/closures.cc: it records an event) and its
 * `nbd_<key>_callback` maker. `calls`:
 * how often libnbd calls it: 'many' (zero or more times while its command
 * runs), 'once' (exactly once, when its command completes), 'until
 * replaced' (until cleared or replaced on the handle). libnbd frees a
 * command's closures after its completion. `ret`: what the return value
 * means. `have`: the macro of a closure added after libnbd 1.14 (where the
 * build's header lacks it, its struct is generated from `args`). `ts`
 * names the callback type; `noMaker`: no per-command maker (debug).
 *
 * How a call of the closure becomes an event (scripts/generator/closures.mjs
 * writes the trampolines from this): `event` names its kind in
 * scripts/event-wire.mjs; `into` says which record field or payload field
 * each argument fills (an argument not named is not sent: a chunk's
 * absolute offset, which JS rebuilds from the request). Hooks, hand-written
 * in native/events/closure_hooks.h where libnbd's rules need more than a
 * copy: `before` (called as Hook(c, &event) before the event is recorded),
 * `after` (called with the closure's arguments after it is recorded; its
 * result is what libnbd gets, else 0), `sink` (user_data is the handle's
 * DebugSink rather than a command, which admits the message or keeps it).
 *
 * Kinds of callback argument: [name, kind] with kind one of
 *   bytes      C const void *, size_t count -> JS Buffer | Uint8Array (a zero-copy view)
 *   uint64     C uint64_t                   -> JS Int64<B> (number, or bigint)
 *   uint       C unsigned                   -> JS number
 *   string     C const char *               -> JS string
 *   extents32  C uint32_t *, size_t         -> JS Uint32Array of (length, flags) pairs
 *   extents64  C nbd_extent *, size_t       -> JS BigUint64Array of (length, flags) pairs
 *   error      C int *error                 -> JS ErrorRef
 */
export const cbArgKinds = {
  bytes: { c: ['const void* $n', 'size_t count'], ts: 'Buffer | Uint8Array' },
  uint64: { c: ['uint64_t $n'], ts: 'Int64<B>', generic: true },
  uint: { c: ['unsigned $n'], ts: 'number' },
  string: { c: ['const char* $n'], ts: 'string' },
  extents32: { c: ['uint32_t* $n', 'size_t nr_entries'], ts: 'Uint32Array' },
  extents64: { c: ['nbd_extent* $n', 'size_t nr_entries'], ts: 'BigUint64Array' },
  error: { c: ['int* $n'], ts: 'ErrorRef' },
};

/**
 * Types the newer calls use, with libnbd's layout: where the build's header
 * lacks them (its `guard` macro undefined), the generator declares them
 * (native/generated/libnbd_loaded.h); where it has them, the build checks
 * the header's layout against this.
 */
export const abiTypes = [
  { name: 'nbd_extent', since: '1.18', guard: 'LIBNBD_HAVE_NBD_EXTENT64_CALLBACK', fields: [['length', 'uint64_t'], ['flags', 'uint64_t']] },
];

export const closures = {
  chunk: {
    ts: 'ChunkCallback', calls: 'many',
    args: [['subbuf', 'bytes'], ['offset', 'uint64'], ['status', 'uint'], ['error', 'error']],
    event: 'chunk', into: { subbuf: 'subOffset', status: 'status', error: 'error' }, after: 'ChunkRecorded',
    ret: 'Return -1 (or throw) to fail the command; other values are ignored.',
    doc: ['Called for each chunk of a structured read, in libnbd\'s order.',
      '`subbuf` is a zero-copy view of the caller\'s buffer; `offset` is absolute.'],
  },
  completion: {
    ts: 'CompletionCallback', calls: 'once',
    args: [['error', 'error']],
    event: 'completion', into: { error: 'error' }, before: 'AttachOptionFailure',
    ret: 'Return -1 with a non-zero `error.value` to replace the command\'s error; return 1 to auto-retire (data commands; option commands are always retired).',
    doc: ['Called once per command after its other callbacks.'],
  },
  extent: {
    ts: 'ExtentCallback', calls: 'many',
    args: [['metacontext', 'string'], ['offset', 'uint64'], ['entries', 'extents32'], ['error', 'error']],
    event: 'extent', into: { metacontext: 'context', offset: 'offset', entries: 'entries', error: 'error' },
    ret: 'Return -1 (or throw) to fail the command, as for a chunk callback.',
    doc: ['Block status: one call per meta context. `entries` holds (length, flags) pairs, as libnbd\'s `uint32_t *entries` does.'],
  },
  extent64: {
    ts: 'Extent64Callback', calls: 'many', have: 'LIBNBD_HAVE_NBD_EXTENT64_CALLBACK', since: '1.18',
    args: [['metacontext', 'string'], ['offset', 'uint64'], ['entries', 'extents64'], ['error', 'error']],
    event: 'extent', into: { metacontext: 'context', offset: 'offset', entries: 'entries', error: 'error' },
    ret: 'Return -1 (or throw) to fail the command, as for a chunk callback.',
    doc: ['Block status with 64-bit extents: (length, flags) pairs as bigints.'],
  },
  list: {
    ts: 'ListCallback', calls: 'many',
    args: [['name', 'string'], ['description', 'string']],
    event: 'list', into: { name: 'name', description: 'description' },
    ret: 'The return value is ignored.',
    doc: ['optList: one call per export.'],
  },
  context: {
    ts: 'ContextCallback', calls: 'many',
    args: [['name', 'string']],
    event: 'context', into: { name: 'name' },
    ret: 'The return value is ignored.',
    doc: ['optListMetaContext and friends: one call per meta context.'],
  },
  debug: {
    ts: 'DebugCallback', calls: 'until replaced', noMaker: true,
    args: [['context', 'string'], ['msg', 'string']], sink: true,
    event: 'debug', into: { context: 'context', msg: 'message' },
    jsArgs: [['context', 'string'], ['message', 'string']],
    ret: 'The return value is ignored.',
    doc: ['setDebugCallback: libnbd\'s debug messages.'],
  },
};

/**
 * The hand-written native surface (lib/ calls these on the native handle;
 * the native/ file of each stage defines them): declared here once. The generator
 * declares the C++ members, registers them on the class and types them in
 * typings/native.ts. `cpp`: the member; `ts`: the signature after the
 * name (`: T` for an accessor).
 */
export const nativeSurface = [
  { js: 'aioDisconnect', cpp: 'AioDisconnect', ts: '(flags: number): number', doc: 'nbd_aio_disconnect; its end is a kDisconnected event.' },
  { js: 'shutdown', cpp: 'Shutdown', ts: '(flags: number): number', doc: 'nbd_shutdown itself, as a task off the JS thread (for SHUTDOWN_ABANDON_PENDING); its end is a kDisconnected event.' },
  { js: 'aioOptAbort', cpp: 'AioOptAbort', ts: '(): number', doc: 'nbd_aio_opt_abort; its end is a kDisconnected event.' },
  { js: 'setDebugCallback', cpp: 'SetDebugCallback', ts: '(): number', doc: 'Debug messages become debug events.' },
  { js: 'clearDebugCallback', cpp: 'ClearDebugCallback', ts: '(): number', doc: 'Back to stderr.' },
  { js: 'aioCommandCompleted', cpp: 'AioCommandCompleted', ts: '(cookie: number | bigint): number', doc: 'libnbd\'s own answer (lib/ tracks completions).' },
  { js: 'aioInFlight', cpp: 'AioInFlight', ts: '(): number', doc: 'libnbd\'s own count (lib/ counts what JS has not seen).' },
  { js: 'poll', cpp: 'PollJs', ts: '(): number', doc: 'poll() begins: -1 (nbd_poll\'s error recorded), else the polled events queued so far (the next one settles it).' },
  { js: 'close', cpp: 'Close', ts: '(): [context: string, message: string][] | undefined', doc: 'nbd_close, without waiting for a server process or a name lookup; returns the debug messages nbd_close made (there is a debug callback).' },
  { js: 'state', cpp: 'StateJs', ts: '(): number', doc: 'libnbd\'s aio_is_* answers as STATE_IS_* bits (lib/generated/event-wire.ts), without debug messages: the binding\'s own checks (0 when closed).' },
  { js: 'lastError', cpp: 'LastErrorJs', ts: '(): [number, string]', doc: '[errno, message] of the last failure recorded on this handle.' },
  { js: 'drain', cpp: 'DrainJs', ts: '(): void', doc: 'Deliver events queued by a call made from JS (no-op while dispatching).' },
  { js: 'events', cpp: 'EventsGetter', accessor: true, ts: ': Float64Array', doc: 'Shared event records (layout: scripts/event-wire.mjs).' },
];

/** Synchronous calls: never block, glue generated. */
export const simpleCalls = [
  // Debugging and naming
  { name: 'set_debug', args: [['debug', 'bool']], ret: 'void', doc: 'Enable or disable libnbd debug messages (to stderr until a debug callback exists).' },
  { name: 'get_debug', args: [], ret: 'bool', doc: 'Whether debug messages are enabled.' },
  { name: 'set_handle_name', args: [['handle_name', 'string']], ret: 'void', after: 'HandleNameChanged();', doc: 'Set the name used in debug messages.' },
  { name: 'get_handle_name', args: [], ret: 'string', doc: 'The handle name.' },

  // Settings made before connecting
  { name: 'set_export_name', args: [['export_name', 'string']], ret: 'void', state: `${pre} or negotiating`, doc: 'Set the export name to request.' },
  { name: 'get_export_name', args: [], ret: 'string', doc: 'The export name requested.' },
  { name: 'set_request_block_size', args: [['request', 'bool']], ret: 'void', state: pre, doc: 'Whether to request block size information.' },
  { name: 'get_request_block_size', args: [], ret: 'bool', doc: 'Whether block size information is requested.' },
  { name: 'set_full_info', args: [['request', 'bool']], ret: 'void', state: `${pre} or negotiating`, doc: 'Whether to request the canonical name and description.' },
  { name: 'get_full_info', args: [], ret: 'bool', doc: 'Whether full info is requested.' },
  { name: 'set_tls', args: [['tls', 'int', 'TLS']], ret: 'void', state: pre, doc: 'TLS_DISABLE, TLS_ALLOW or TLS_REQUIRE.' },
  { name: 'get_tls', args: [], ret: 'int', doc: 'The TLS setting.' },
  { name: 'set_request_structured_replies', args: [['request', 'bool']], ret: 'void', state: pre, doc: 'Whether to request structured replies.' },
  { name: 'get_request_structured_replies', args: [], ret: 'bool', doc: 'Whether structured replies are requested.' },
  { name: 'set_handshake_flags', args: [['flags', 'flags', 'HANDSHAKE_FLAG']], ret: 'void', state: pre, doc: 'Handshake flags to offer.' },
  { name: 'get_handshake_flags', args: [], ret: 'flags', doc: 'The handshake flags.' },
  { name: 'set_pread_initialize', args: [['request', 'bool']], ret: 'void', doc: 'Whether reads zero their buffer first (default true).' },
  { name: 'get_pread_initialize', args: [], ret: 'bool', doc: 'Whether reads zero their buffer first.' },
  { name: 'set_strict_mode', args: [['flags', 'flags', 'STRICT']], ret: 'void', doc: 'Client-side checks to make (STRICT_* bits).' },
  { name: 'get_strict_mode', args: [], ret: 'flags', doc: 'The client-side checks made.' },
  { name: 'set_opt_mode', args: [['enable', 'bool']], ret: 'void', state: pre, doc: 'Whether to stop in option negotiation.' },
  { name: 'get_opt_mode', args: [], ret: 'bool', doc: 'Whether option mode is on.' },

  // What was negotiated
  { name: 'get_protocol', args: [], ret: 'static_string', state: post, doc: 'The protocol: "newstyle-fixed", ...' },
  { name: 'get_structured_replies_negotiated', args: [], ret: 'bool', state: post, doc: 'Whether structured replies were negotiated.' },
  { name: 'get_tls_negotiated', args: [], ret: 'bool', state: post, doc: 'Whether TLS was negotiated.' },
  { name: 'get_canonical_export_name', args: [], ret: 'string', state: 'negotiating, connected, closed or dead', doc: 'The canonical export name (needs setFullInfo).' },
  { name: 'get_export_description', args: [], ret: 'string', state: 'negotiating, connected, closed or dead', doc: 'The export description, where the server gives one.' },
  { name: 'get_size', args: [], ret: 'int64', state: 'negotiating, connected, closed or dead', doc: 'The export size in bytes.' },
  { name: 'get_block_size', args: [['size_type', 'int', 'SIZE']], ret: 'int64', state: 'negotiating, connected, closed or dead', doc: 'SIZE_MINIMUM, SIZE_PREFERRED or SIZE_MAXIMUM; 0 if the server gave none.' },
  { name: 'is_read_only', args: [], ret: 'bool', state: post, doc: 'Whether the export is read-only.' },
  { name: 'can_flush', args: [], ret: 'bool', state: post, doc: 'Whether the server supports flush.' },
  { name: 'can_fua', args: [], ret: 'bool', state: post, doc: 'Whether the server supports FUA.' },
  { name: 'is_rotational', args: [], ret: 'bool', state: post, doc: 'Whether the export is on a rotational medium.' },
  { name: 'can_trim', args: [], ret: 'bool', state: post, doc: 'Whether the server supports trim.' },
  { name: 'can_zero', args: [], ret: 'bool', state: post, doc: 'Whether the server supports write zeroes.' },
  { name: 'can_fast_zero', args: [], ret: 'bool', state: post, doc: 'Whether the server supports fast zero.' },
  { name: 'can_df', args: [], ret: 'bool', state: post, doc: 'Whether the server supports the DF flag (false without structured replies).' },
  { name: 'can_multi_conn', args: [], ret: 'bool', state: post, doc: 'Whether the server supports multi-conn.' },
  { name: 'can_cache', args: [], ret: 'bool', state: post, doc: 'Whether the server supports cache.' },
  { name: 'get_uri', args: [], ret: 'string', doc: 'A URI for the current connection.' },

  // State (lock-free in libnbd)
  // `whileConnectQueued`: the answer while a connect the binding has queued
  // has not yet entered libnbd's connect call (libnbd still says created):
  // an aioConnect* call has returned, so the handle is connecting, as in C.
  // `seenState`: while events another thread recorded (the thread driver's
  // I/O thread) wait for JS, the answer is the state before them: in C the
  // state changes only with the callbacks the change runs (once aio_is_dead
  // is true, every command has completed).
  { name: 'aio_is_created', args: [], ret: 'bool', seenState: 'created', whileConnectQueued: false, doc: 'In the created state (false once a connect call was made: aioConnect… or connect…).' },
  { name: 'aio_is_connecting', args: [], ret: 'bool', seenState: 'connecting', whileConnectQueued: true, doc: 'Connecting (true from the return of a connect call on a created handle: aioConnect… or connect…).' },
  { name: 'aio_is_negotiating', args: [], ret: 'bool', seenState: 'negotiating', doc: 'Negotiating options (opt mode).' },
  { name: 'aio_is_ready', args: [], ret: 'bool', seenState: 'ready', doc: 'Connected and idle.' },
  { name: 'aio_is_processing', args: [], ret: 'bool', seenState: 'processing', doc: 'Connected with commands in progress.' },
  { name: 'aio_is_dead', args: [], ret: 'bool', seenState: 'dead', doc: 'The connection died.' },
  { name: 'aio_is_closed', args: [], ret: 'bool', seenState: 'closed', doc: 'The connection was shut down.' },
  { name: 'connection_state', args: [], ret: 'static_string', seenState: 'name', doc: 'A description of the state machine state.' },
  { name: 'aio_get_direction', args: [], ret: 'flags', doc: 'What libnbd waits for on its socket: AIO_DIRECTION_READ, _WRITE, both or 0 (a query; the driver does the waiting).' },

  // TLS
  { name: 'set_tls_certificates', args: [['dir', 'string']], ret: 'void', state: pre, doc: 'Directory of X.509 certificates.' },
  { name: 'set_tls_verify_peer', args: [['verify', 'bool']], ret: 'void', state: pre, doc: 'Whether to verify the server\'s certificate.' },
  { name: 'get_tls_verify_peer', args: [], ret: 'bool', doc: 'Whether the server\'s certificate is verified.' },
  { name: 'set_tls_username', args: [['username', 'string']], ret: 'void', state: pre, doc: 'User name for TLS authentication (PSK).' },
  { name: 'get_tls_username', args: [], ret: 'string', doc: 'The TLS user name.' },
  { name: 'set_tls_psk_file', args: [['filename', 'string']], ret: 'void', state: pre, doc: 'File of TLS pre-shared keys.' },
  { name: 'set_tls_hostname', args: [['hostname', 'string']], ret: 'void', have: true, since: '1.22', state: pre, doc: 'The host name to check the server\'s certificate against (default: the name connected to).' },
  { name: 'get_tls_hostname', args: [], ret: 'string', have: true, since: '1.22', doc: 'The host name the server\'s certificate is checked against.' },

  // URIs
  { name: 'set_uri_allow_transports', args: [['mask', 'flags', 'ALLOW_TRANSPORT']], ret: 'void', state: pre, doc: 'Transports a URI may name.' },
  { name: 'set_uri_allow_tls', args: [['tls', 'int', 'TLS']], ret: 'void', state: pre, doc: 'Whether URIs may ask for TLS (TLS_DISABLE/ALLOW/REQUIRE).' },
  { name: 'set_uri_allow_local_file', args: [['allow', 'bool']], ret: 'void', state: pre, doc: 'Whether URIs may name local files (tls-psk-file=...).' },
  { name: 'is_uri', args: [['uri', 'string']], ret: 'bool', have: true, since: '1.22', doc: 'Whether a string could be an NBD URI (libnbd\'s heuristic: connectUri may still refuse it).' },

  // Meta contexts
  { name: 'add_meta_context', args: [['name', 'string']], ret: 'void', state: `${pre} or negotiating`, doc: 'Request a meta context, e.g. "base:allocation".' },
  { name: 'get_nr_meta_contexts', args: [], ret: 'int', doc: 'Number of meta contexts requested.' },
  { name: 'get_meta_context', args: [['i', 'size']], ret: 'string', doc: 'The i-th meta context requested.' },
  { name: 'clear_meta_contexts', args: [], ret: 'void', state: `${pre} or negotiating`, doc: 'Forget the meta contexts requested.' },
  { name: 'can_meta_context', args: [['metacontext', 'string']], ret: 'bool', state: 'negotiating, connected, closed or dead', doc: 'Whether the server negotiated this meta context.' },
  { name: 'set_request_meta_context', args: [['request', 'bool']], ret: 'void', have: true, since: '1.16', state: `${pre} or negotiating`, doc: 'Whether opt_go/info request the meta contexts.' },
  { name: 'get_request_meta_context', args: [], ret: 'bool', have: true, since: '1.16', doc: 'Whether meta contexts are requested by opt_go/info.' },

  // Added after libnbd 1.14
  { name: 'set_socket_activation_name', args: [['socket_name', 'string']], ret: 'void', have: true, since: '1.16', state: pre, doc: 'LISTEN_FDNAMES for socket activation.' },
  { name: 'get_socket_activation_name', args: [], ret: 'string', have: true, since: '1.16', doc: 'The socket activation name.' },
  { name: 'set_request_extended_headers', args: [['request', 'bool']], ret: 'void', have: true, since: '1.18', state: pre, doc: 'Whether to request extended headers.' },
  { name: 'get_request_extended_headers', args: [], ret: 'bool', have: true, since: '1.18', doc: 'Whether extended headers are requested.' },
  { name: 'get_extended_headers_negotiated', args: [], ret: 'bool', have: true, since: '1.18', state: post, doc: 'Whether extended headers were negotiated.' },
  { name: 'can_block_status_payload', args: [], ret: 'bool', have: true, since: '1.18', state: post, doc: 'Whether the server accepts filtered block status.' },
  { name: 'stats_bytes_sent', args: [], ret: 'uint64', have: true, since: '1.16', doc: 'Bytes sent to the server.' },
  { name: 'stats_chunks_sent', args: [], ret: 'uint64', have: true, since: '1.16', doc: 'Messages sent to the server.' },
  { name: 'stats_bytes_received', args: [], ret: 'uint64', have: true, since: '1.16', doc: 'Bytes received from the server.' },
  { name: 'stats_chunks_received', args: [], ret: 'uint64', have: true, since: '1.16', doc: 'Messages received from the server.' },
  { name: 'get_subprocess_pid', args: [], ret: 'int64', have: true, since: '1.22', doc: 'PID of the server started by connectCommand.' },

  // Misc
  { name: 'kill_subprocess', args: [['signum', 'int']], ret: 'void', doc: 'Kill the server started by connectCommand (0 means SIGTERM).' },
];

/**
 * Data commands: `aio<Name>(args..., [closure,] completion?, flags?)` returns
 * a cookie; `sync` names the Promise form `<sync>(args..., [closure,] flags?)`.
 * `type` is libnbd's name of the command in "<type>: command failed".
 * `flags`: the CMD_FLAG_* names libnbd accepts for the command (API.ml's
 * OFlags subset; the binding passes the flags on and libnbd checks them).
 * `closure`: a key of `closures`.
 */
export const commandCalls = [
  { name: 'aio_pread', sync: 'pread', type: 'read', args: [['buf', 'buffer_out'], ['offset', 'uint64']], flags: [], doc: 'Read into buf from offset.' },
  { name: 'aio_pread_structured', sync: 'pread_structured', type: 'read', args: [['buf', 'buffer_out'], ['offset', 'uint64']], closure: 'chunk', flags: ['DF'], doc: 'Read with a chunk callback per DATA/HOLE/ERROR chunk.' },
  { name: 'aio_pwrite', sync: 'pwrite', type: 'write', args: [['buf', 'buffer_in'], ['offset', 'uint64']], flags: ['FUA', 'PAYLOAD_LEN'], doc: 'Write buf at offset.' },
  { name: 'aio_flush', sync: 'flush', type: 'flush', args: [], flags: [], doc: 'Flush the server\'s caches.' },
  { name: 'aio_trim', sync: 'trim', type: 'trim', args: [['count', 'uint64'], ['offset', 'uint64']], flags: ['FUA'], doc: 'Discard (trim) a range.' },
  { name: 'aio_cache', sync: 'cache', type: 'cache', args: [['count', 'uint64'], ['offset', 'uint64']], flags: [], doc: 'Ask the server to prefetch a range.' },
  { name: 'aio_zero', sync: 'zero', type: 'write-zeroes', args: [['count', 'uint64'], ['offset', 'uint64']], flags: ['FUA', 'NO_HOLE', 'FAST_ZERO'], doc: 'Write zeroes to a range.' },
  { name: 'aio_block_status', sync: 'block_status', type: 'block-status', args: [['count', 'uint64'], ['offset', 'uint64']], closure: 'extent', flags: ['REQ_ONE'], doc: 'Block status: extent callback per meta context, entries as (length, flags) pairs.' },
  { name: 'aio_block_status_64', sync: 'block_status_64', type: 'block-status', have: true, since: '1.18', args: [['count', 'uint64'], ['offset', 'uint64']], closure: 'extent64', flags: ['REQ_ONE'], doc: 'Block status with 64-bit extents.' },
  { name: 'aio_block_status_filter', sync: 'block_status_filter', type: 'block-status', have: true, since: '1.18', args: [['count', 'uint64'], ['offset', 'uint64'], ['contexts', 'strings']], closure: 'extent64', flags: ['REQ_ONE', 'PAYLOAD_LEN'], doc: 'Block status limited to some meta contexts.' },
];

/**
 * Option negotiation (opt mode, negotiating state): `aio<Name>([closure,]
 * completion?)` returns an id, the completion callback runs once and is
 * auto-retired; `sync` names the Promise form, which resolves with the
 * number of closure calls where there is a closure, else with nothing.
 * `accepted`: libnbd's sync call returns whether the server accepted the
 * option (true), or refused it with the handle still negotiating (false);
 * it fails only when the connection did not survive (lib/opt.c).
 * `refusal`: the words libnbd's sync call fails with when the server refuses
 * ("server replied with error to <refusal> request"; `refusalBefore`:
 * [version, words] of older libnbd); without it, the call fails with the
 * error the state machine recorded (a refused export's reason: libnbd >= 1.22
 * prints the server's own message). Every
 * option whose connection died fails with the error that killed it.
 */
export const optCalls = [
  { name: 'aio_opt_go', sync: 'opt_go', refusalBefore: ['1.22', 'opt_go'], args: [], doc: 'End negotiation and move to transmission.' },
  { name: 'aio_opt_info', sync: 'opt_info', refusalBefore: ['1.22', 'opt_info'], args: [], doc: 'Ask for the current export\'s details.' },
  { name: 'aio_opt_list', sync: 'opt_list', refusal: 'list', args: [], closure: 'list', doc: 'List the exports.' },
  { name: 'aio_opt_list_meta_context', sync: 'opt_list_meta_context', refusal: 'meta context', refusalBefore: ['1.16', 'list meta context'], args: [], closure: 'context', doc: 'List the meta contexts the server offers.' },
  { name: 'aio_opt_list_meta_context_queries', sync: 'opt_list_meta_context_queries', refusal: 'meta context', have: true, since: '1.16', args: [['queries', 'strings']], closure: 'context', doc: 'List meta contexts matching queries.' },
  { name: 'aio_opt_set_meta_context', sync: 'opt_set_meta_context', refusal: 'meta context', have: true, since: '1.16', args: [], closure: 'context', doc: 'Select the requested meta contexts.' },
  { name: 'aio_opt_set_meta_context_queries', sync: 'opt_set_meta_context_queries', refusal: 'meta context', have: true, since: '1.16', args: [['queries', 'strings']], closure: 'context', doc: 'Select meta contexts matching queries.' },
  { name: 'aio_opt_starttls', sync: 'opt_starttls', accepted: true, have: true, since: '1.16', args: [], doc: 'Upgrade to TLS during negotiation.' },
  { name: 'aio_opt_structured_reply', sync: 'opt_structured_reply', accepted: true, have: true, since: '1.16', args: [], doc: 'Request structured replies.' },
  { name: 'aio_opt_extended_headers', sync: 'opt_extended_headers', accepted: true, have: true, since: '1.18', args: [], doc: 'Request extended headers.' },
];

/** Connects: `connect<Name>(args)` returns a Promise; the driver runs nbd_aio_connect_<name>. */
export const connectCalls = [
  { name: 'uri', args: [['uri', 'string']], doc: 'Connect to an NBD URI (nbd://, nbds://, nbd+unix://, ...).' },
  { name: 'unix', args: [['unixsocket', 'string']], doc: 'Connect to a Unix domain socket.' },
  { name: 'vsock', args: [['cid', 'uint32'], ['port', 'uint32']], doc: 'Connect over AF_VSOCK.' },
  { name: 'tcp', args: [['hostname', 'string'], ['port', 'service']], doc: 'Connect over TCP; the name lookup (getaddrinfo) blocks the thread that runs it (the I/O thread with the thread driver).' },
  { name: 'socket', args: [['sock', 'fd']], doc: 'Talk NBD over a connected socket; libnbd takes ownership of the fd.' },
  { name: 'command', args: [['argv', 'strings']], subprocess: true, doc: 'Run a server (e.g. nbdkit -s) and talk over its stdin/stdout.' },
  { name: 'systemd_socket_activation', args: [['argv', 'strings']], subprocess: true, doc: 'Run a server with systemd socket activation.' },
];

/** Module functions: libnbd calls that read nothing from the handle. */
export const moduleCalls = [
  { name: 'get_version', ret: 'static_string', doc: 'The version of the libnbd library loaded.' },
  { name: 'get_package_name', ret: 'static_string', doc: 'libnbd\'s package name ("libnbd").' },
  { name: 'supports_tls', ret: 'bool', doc: 'Whether libnbd was built with TLS.' },
  { name: 'supports_uri', ret: 'bool', doc: 'Whether libnbd was built with URI support.' },
  { name: 'supports_vsock', ret: 'bool', have: true, since: '1.16', doc: 'Whether libnbd was built with AF_VSOCK.' },
];

/** libnbd calls the binding owns instead of exposing, and why. */
export const ownedCalls = [
  { name: 'create', why: '`new Handle()`.' },
  { name: 'close', why: '`close()` (synchronous, idempotent; completes pending commands).' },
  { name: 'get_error', why: 'folded into NbdError (message).' },
  { name: 'get_errno', why: 'folded into NbdError (errno, code).' },
  { name: 'poll2', why: 'the drivers own the event loop (`poll()` waits for the driver instead; there is no extra fd to watch).' },
  { name: 'aio_get_fd', why: 'the drivers own the event loop.' },
  { name: 'aio_notify_read', why: 'the drivers own the event loop.' },
  { name: 'aio_notify_write', why: 'the drivers own the event loop.' },
  { name: 'set_private_data', why: 'a JS object can carry its own data.' },
  { name: 'get_private_data', why: 'a JS object can carry its own data.' },
  { name: 'aio_connect', why: 'takes a struct sockaddr; connectUnix/connectTcp/connectSocket cover it.' },
];

/** Calls whose glue is written by hand (the facade and native/, each in the file of its stage); `native`: the `nativeSurface` entry they use. */
export const customCalls = [
  { name: 'aio_disconnect', public: 'aioDisconnect', native: 'aioDisconnect', doc: 'Queue NBD_CMD_DISC after the commands pending, which are all sent (libnbd accepts no flags here; `shutdown(SHUTDOWN_ABANDON_PENDING)` abandons the unsent ones).' },
  { name: 'shutdown', public: 'shutdown', native: 'shutdown', doc: 'Disconnect and wait until the server has closed the connection (a Promise), as nbd_shutdown: while negotiating it aborts the option phase; SHUTDOWN_ABANDON_PENDING fails the commands not yet sent with ENOTCONN (nbd_shutdown itself runs off the JS thread then, and JS calls that take libnbd\'s lock wait for it). Takes the flags or `{ flags, signal }` (aborting rejects the Promise, the disconnect goes on).' },
  { name: 'aio_opt_abort', public: 'aioOptAbort', native: 'aioOptAbort', doc: 'End negotiation without an export.' },
  { name: 'opt_abort', public: 'optAbort', native: 'aioOptAbort', doc: 'End negotiation and wait for the connection to close (a Promise); takes `{ signal }`.' },
  { name: 'aio_command_completed', public: 'aioCommandCompleted', native: 'aioCommandCompleted', doc: 'Tracked in lib/ (native retires every command at once); native is asked only for cookie 0, for libnbd\'s own error.' },
  { name: 'aio_peek_command_completed', public: 'aioPeekCommandCompleted', native: 'aioInFlight', doc: 'Tracked in lib/: the oldest completed, unretired cookie.' },
  { name: 'aio_in_flight', public: 'aioInFlight', native: 'aioInFlight', doc: 'Counted in lib/ (commands whose completion JS has not seen, plus a pending disconnect); native is asked for libnbd\'s state checks.' },
  { name: 'poll', public: 'poll', native: 'poll', doc: 'A Promise for C\'s waiting loops (`while (!h.aioCommandCompleted(c)) await h.poll(-1)`): 1 once the driver has run libnbd and that run\'s events were delivered, 0 after `timeout` ms (negative: none; 0: one turn of the event loop). Unlike nbd_poll, the driver runs libnbd, not poll() (libnbd\'s failures show on the commands and as `\'disconnect\'`); a run JS had not yet seen when poll() was called counts; without a timeout it does not keep the process alive. Rejects as nbd_poll fails when there is nothing to poll for (created, negotiating, dead, closed: EINVAL), with ENOTCONN when the handle is closed meanwhile.' },
  { name: 'set_debug_callback', public: 'setDebugCallback', native: 'setDebugCallback', doc: 'Deliver libnbd\'s debug messages to a JS function (context, message), whatever thread produced them.' },
  { name: 'clear_debug_callback', public: 'clearDebugCallback', native: 'clearDebugCallback', doc: 'Back to debug messages on stderr.' },
];

/** libnbd's numeric constants (LIBNBD_ prefix dropped). A name alone: in
 *  libnbd 1.14's header, exported with the header's value. `{ name, since,
 *  value }`: added after libnbd 1.14, exported with the table's value (checked
 *  against the header where it has it) when the loaded libnbd is at least
 *  `since`, else undefined. `{ name, mask }`: the OR of the family's members
 *  exported (masks grow with the family: CMD_FLAG_MASK is 0x1f in 1.14 and
 *  0x3f from 1.18), checked against the header's. */
export const constants = [
  'TLS_DISABLE', 'TLS_ALLOW', 'TLS_REQUIRE',
  'SIZE_MINIMUM', 'SIZE_PREFERRED', 'SIZE_MAXIMUM', { name: 'SIZE_PAYLOAD', since: '1.18', value: 3 },
  'CMD_FLAG_FUA', 'CMD_FLAG_NO_HOLE', 'CMD_FLAG_DF', 'CMD_FLAG_REQ_ONE', 'CMD_FLAG_FAST_ZERO', { name: 'CMD_FLAG_PAYLOAD_LEN', since: '1.18', value: 0x20 }, { name: 'CMD_FLAG_MASK', mask: 'CMD_FLAG' },
  'HANDSHAKE_FLAG_FIXED_NEWSTYLE', 'HANDSHAKE_FLAG_NO_ZEROES', { name: 'HANDSHAKE_FLAG_MASK', mask: 'HANDSHAKE_FLAG' },
  'STRICT_COMMANDS', 'STRICT_FLAGS', 'STRICT_BOUNDS', 'STRICT_ZERO_SIZE', 'STRICT_ALIGN', { name: 'STRICT_PAYLOAD', since: '1.18', value: 0x20 }, { name: 'STRICT_AUTO_FLAG', since: '1.18', value: 0x40 }, { name: 'STRICT_MASK', mask: 'STRICT' },
  'ALLOW_TRANSPORT_TCP', 'ALLOW_TRANSPORT_UNIX', 'ALLOW_TRANSPORT_VSOCK', { name: 'ALLOW_TRANSPORT_SSH', since: '1.22', value: 0x08 }, { name: 'ALLOW_TRANSPORT_MASK', mask: 'ALLOW_TRANSPORT' },
  'SHUTDOWN_ABANDON_PENDING', { name: 'SHUTDOWN_MASK', mask: 'SHUTDOWN' },
  'AIO_DIRECTION_READ', 'AIO_DIRECTION_WRITE', 'AIO_DIRECTION_BOTH',
  'READ_DATA', 'READ_HOLE', 'READ_ERROR',
  'STATE_HOLE', 'STATE_ZERO', { name: 'STATE_DIRTY', since: '1.16', value: 1 },
];

/** libnbd's string constants (libnbd.h's `#define LIBNBD_<NAME> "..."`, LIBNBD_
 *  prefix dropped): meta context namespaces and names. Exported with the
 *  table's value on every build (they name protocol strings, not library
 *  features); the native build checks each against the header where it
 *  defines it. `newer`: not in libnbd 1.14's header. */
export const stringConstants = [
  { name: 'NAMESPACE_BASE', value: 'base:', doc: 'The "base" meta context namespace.' },
  { name: 'CONTEXT_BASE_ALLOCATION', value: 'base:allocation', doc: 'The allocation meta context (STATE_HOLE, STATE_ZERO).' },
  { name: 'NAMESPACE_QEMU', value: 'qemu:', newer: true, doc: 'The "qemu" meta context namespace.' },
  { name: 'CONTEXT_QEMU_DIRTY_BITMAP', value: 'qemu:dirty-bitmap:', newer: true, doc: 'Prefix of a qemu dirty-bitmap context: append the bitmap\'s name (STATE_DIRTY).' },
  { name: 'CONTEXT_QEMU_ALLOCATION_DEPTH', value: 'qemu:allocation-depth', newer: true, doc: 'qemu\'s allocation depth meta context.' },
];
