// The declarative description of the libnbd calls this binding exposes.
// scripts/generate.mjs turns it into native/generated/api.inc (per-call C++
// glue), lib/generated/handle-api.ts (typed, validated TS methods),
// typings/native.d.ts (the native surface) and docs/api.md.
//
// Kinds of argument:
//   bool     JS boolean            -> C bool
//   int      JS int32              -> C int            (enums such as TLS_*)
//   flags    JS uint32             -> C uint32_t       (bitmasks, `flagsOf` names the constant family)
//   string   JS string without NUL -> C const char *
//   uint64   JS number | bigint    -> C uint64_t
// Kinds of return (C's error value in brackets):
//   void (-1), bool (-1), int (-1), int64 (-1),
//   string (NULL; the C string is freed), static_string (NULL; not freed)
//
// `glue: 'custom'` entries are written by hand in native/ and lib/; the table
// still carries them so that the typings and the reference stay complete.
// `have` is the LIBNBD_HAVE_* macro: glue for a call the installed libnbd
// lacks is compiled to fail with ENOTSUP.
// `state` is the permitted-state note from libnbd's documentation.

const pre = 'created';
const post = 'connected, closed or dead';

/** Synchronous calls: never block, glue generated. */
export const simpleCalls = [
  // Debugging and naming
  { name: 'set_debug', args: [['debug', 'bool']], ret: 'void', doc: 'Enable or disable libnbd debug messages (to stderr until a debug callback exists).' },
  { name: 'get_debug', args: [], ret: 'bool', doc: 'Whether debug messages are enabled.' },
  { name: 'set_handle_name', args: [['handle_name', 'string']], ret: 'void', doc: 'Set the name used in debug messages.' },
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
  { name: 'aio_is_created', args: [], ret: 'bool', doc: 'In the created state.' },
  { name: 'aio_is_connecting', args: [], ret: 'bool', doc: 'Connecting.' },
  { name: 'aio_is_negotiating', args: [], ret: 'bool', doc: 'Negotiating options (opt mode).' },
  { name: 'aio_is_ready', args: [], ret: 'bool', doc: 'Connected and idle.' },
  { name: 'aio_is_processing', args: [], ret: 'bool', doc: 'Connected with commands in progress.' },
  { name: 'aio_is_dead', args: [], ret: 'bool', doc: 'The connection died.' },
  { name: 'aio_is_closed', args: [], ret: 'bool', doc: 'The connection was shut down.' },
  { name: 'connection_state', args: [], ret: 'static_string', doc: 'A description of the state machine state.' },

  // Misc
  { name: 'kill_subprocess', args: [['signum', 'int']], ret: 'void', doc: 'Kill the server started by connectCommand (0 means SIGTERM).' },
];

/** Calls whose glue is written by hand (the facade and native/nbd_handle.cc). */
export const customCalls = [
  { name: 'aio_pread_structured', public: 'aioPreadStructured, preadStructured', native: 'aioPreadStructured(buf: ArrayBufferView, offset: number | bigint, flags: number): number', doc: 'Issue a structured read; returns a cookie or -1.' },
  { name: 'aio_pread', public: 'aioPread, pread', native: 'aioPread(buf: ArrayBufferView, offset: number | bigint, flags: number): number', doc: 'Issue a read; returns a cookie or -1.' },
  { name: 'aio_connect_uri', public: 'connectUri', native: 'aioConnectUri(uri: string): number', doc: 'Start connecting to an NBD URI.' },
  { name: 'aio_connect_unix', public: 'connectUnix', native: 'aioConnectUnix(path: string): number', doc: 'Start connecting to a Unix socket.' },
  { name: 'aio_connect_tcp', public: 'connectTcp', native: 'aioConnectTcp(hostname: string, port: string): number', doc: 'Start connecting over TCP.' },
  { name: 'aio_connect_command', public: 'connectCommand', native: 'aioConnectCommand(argv: string[]): number', doc: 'Start a server subprocess and connect to its stdin/stdout.' },
  { name: 'aio_connect_systemd_socket_activation', public: 'connectSystemdSocketActivation', native: 'aioConnectSystemdSocketActivation(argv: string[]): number', doc: 'Start a server with systemd socket activation and connect.' },
  { name: 'aio_disconnect', public: 'aioDisconnect, shutdown', native: 'aioDisconnect(flags: number): number', doc: 'Queue NBD_CMD_DISC.' },
  { name: 'aio_command_completed', public: 'aioCommandCompleted', native: 'aioCommandCompleted(cookie: number | bigint): number', doc: 'Tracked in lib/ (native retires every command at once); native is asked only for cookie 0, for libnbd\'s own error.' },
  { name: 'aio_in_flight', public: 'aioInFlight', native: 'aioInFlight(): number', doc: 'Counted in lib/ (commands whose completion JS has not seen, plus a pending disconnect); native is asked for libnbd\'s state checks.' },
  { name: 'close', public: 'close', native: 'close(): void', doc: 'nbd_close.' },
];

/** libnbd constants exported with their installed values (LIBNBD_ prefix dropped).
 *  A trailing `?` marks one added after libnbd 1.14: undefined where the header lacks it. */
export const constants = [
  'TLS_DISABLE', 'TLS_ALLOW', 'TLS_REQUIRE',
  'SIZE_MINIMUM', 'SIZE_PREFERRED', 'SIZE_MAXIMUM', 'SIZE_PAYLOAD?',
  'CMD_FLAG_FUA', 'CMD_FLAG_NO_HOLE', 'CMD_FLAG_DF', 'CMD_FLAG_REQ_ONE', 'CMD_FLAG_FAST_ZERO', 'CMD_FLAG_PAYLOAD_LEN?', 'CMD_FLAG_MASK',
  'HANDSHAKE_FLAG_FIXED_NEWSTYLE', 'HANDSHAKE_FLAG_NO_ZEROES', 'HANDSHAKE_FLAG_MASK',
  'STRICT_COMMANDS', 'STRICT_FLAGS', 'STRICT_BOUNDS', 'STRICT_ZERO_SIZE', 'STRICT_ALIGN', 'STRICT_PAYLOAD?', 'STRICT_AUTO_FLAG?', 'STRICT_MASK',
  'ALLOW_TRANSPORT_TCP', 'ALLOW_TRANSPORT_UNIX', 'ALLOW_TRANSPORT_VSOCK', 'ALLOW_TRANSPORT_MASK',
  'SHUTDOWN_ABANDON_PENDING', 'SHUTDOWN_MASK',
  'AIO_DIRECTION_READ', 'AIO_DIRECTION_WRITE', 'AIO_DIRECTION_BOTH',
  'READ_DATA', 'READ_HOLE', 'READ_ERROR',
  'STATE_HOLE', 'STATE_ZERO', 'STATE_DIRTY?',
];
