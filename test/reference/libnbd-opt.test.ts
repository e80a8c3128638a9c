// libnbd's option-mode tests replayed against this binding, each scenario
// run step by step through libnbd's Python binding and through this one on
// the same servers, outcomes (values, errno, message) and callback calls
// compared: tests/opt-abort.c, opt-info.c, opt-list.c, opt-list-meta.c,
// opt-list-meta-queries.c, opt-set-meta.c, opt-set-meta-queries.c,
// opt-structured-twice.c, newstyle-limited.c, oldstyle.c,
// shutdown-opt-mode.c, errors-not-negotiating.c,
// errors-not-negotiating-aio.c; python/t/210 to 255.
import { chmodSync } from 'node:fs';
import { CONTEXT_BASE_ALLOCATION, have } from '../../lib';
import { sparseFile, startQemuNbd, tempFile } from '../helpers/servers';
import { expectSameAsLibnbd, short, type Step } from '../helpers/replay';

/** The scenario's trace through this binding, after expecting it to be libnbd's. */
const same = (steps: Step[]) => expectSameAsLibnbd(steps);

/** An nbdkit sh plugin script, executable, in a temp dir. */
function shScript(name: string, body: string): string {
  const path = tempFile(name, body);
  chmodSync(path, 0o755);
  return path;
}

// Exports "" (size 0, read-only), "b" (size 1, writable) and "good" (size
// 4, read-only); opening "a" fails. Each export's contents are its name.
const INFO_SCRIPT = `#!/bin/sh
case "$1" in
  open)
    if [ "$3" = a ]; then echo "ENOENT no export a" >&2; exit 1; fi
    echo "$3" ;;
  get_size) printf %s "$2" | wc -c ;;
  can_write) [ "$2" = b ] || exit 3 ;;
  pread) printf %s "$2" | dd bs=1 count=$3 skip=$4 2>/dev/null ;;
  pwrite) cat >/dev/null ;;
  *) exit 2 ;;
esac
`;

// list_exports answers by the mode given as mode=N: 0 fails, 1 lists a and
// b, 2 lists nothing, 3 lists a.
const LIST_SCRIPT = `#!/bin/sh
case "$1" in
  config)
    [ "$2" = mode ] || { echo "EINVAL unknown key" >&2; exit 1; }
    echo "$3" > "$tmpdir/mode" ;;
  list_exports)
    read mode < "$tmpdir/mode"
    case $mode in
      0) echo "EINVAL listing refused" >&2; exit 1 ;;
      1) echo NAMES; echo a; echo b ;;
      2) echo NAMES ;;
      *) echo NAMES; echo a ;;
    esac ;;
  get_size) echo 512 ;;
  pread) dd if=/dev/zero bs=1 count=$3 2>/dev/null ;;
  *) exit 2 ;;
esac
`;

const memory = { $nbdkit: ['memory', 'size=1M'] };


describe('opt-abort', () => {
  test('optAbort in option mode leaves the handle closed; getSize then fails EINVAL (210-opt-abort)', async () => {
    const js = await same([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['null'] }],
      ['aio_is_negotiating'],
      ['get_protocol'],
      ['get_structured_replies_negotiated'],
      ['opt_abort'],
      ['aio_is_closed'],
      ['get_size'],
    ]);
    expect(js.outcomes[2]).toEqual(['ok', true]);
    expect(js.outcomes[6]).toEqual(['ok', true]);
    expect(short(js.outcomes[7])).toEqual(['err', 'EINVAL']);
  });

  test('optAbort on a connected (not negotiating) handle fails EINVAL (errors-not-negotiating)', async () => {
    const js = await same([['connect_command', memory], ['opt_abort'], ['aio_is_ready']]);
    expect(short(js.outcomes[1])).toEqual(['err', 'EINVAL']);
  });
});

describe('opt-list', () => {
  const script = () => shScript('opt-list.sh', LIST_SCRIPT);
  const listing = (mode: number): Step[] => [
    ['set_opt_mode', true],
    ['connect_command', { $nbdkit: ['sh', script(), `mode=${mode}`] }],
    ['opt_list', { $fn: 'list' }],
    ['aio_is_negotiating'],
    ['opt_abort'],
  ];

  test('a server that fails the listing: optList fails as libnbd\'s, no callback (opt-list pass 1)', async () => {
    const js = await same(listing(0));
    expect(js.outcomes[2][0]).toBe('err');
    expect(js.calls).toEqual([]);
  });

  test('a server listing a and b: optList resolves 2 after one call per name (opt-list pass 2)', async () => {
    const js = await same(listing(1));
    expect(js.outcomes[2]).toEqual(['ok', 2]);
    expect(js.calls).toEqual([
      [2, 'list', 'a', ''],
      [2, 'list', 'b', ''],
    ]);
  });

  test('an empty listing resolves 0 and calls nothing (opt-list pass 3)', async () => {
    const js = await same(listing(2));
    expect(js.outcomes[2]).toEqual(['ok', 0]);
    expect(js.calls).toEqual([]);
  });

  test('a listing of a alone resolves 1 (opt-list pass 4)', async () => {
    const js = await same(listing(3));
    expect(js.outcomes[2]).toEqual(['ok', 1]);
  });
});

describe('opt-info', () => {
  test('optInfo, setExportName and optGo update and wipe what the handle knows as libnbd does (230-opt-info)', async () => {
    const script = shScript('opt-info.sh', INFO_SCRIPT);
    const js = await same([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['sh', script] }],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['get_size'],
      ['is_read_only'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_info'],
      ['get_size'],
      ['is_read_only'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_export_name', 'b'],
      ['get_size'],
      ['is_read_only'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_export_name', 'a'],
      ['opt_info'],
      ['set_export_name', 'b'],
      ['set_request_meta_context', false],
      ['opt_info'],
      ['set_export_name', 'b'],
      ['get_size'],
      ['is_read_only'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_request_meta_context', true],
      ['set_export_name', 'a'],
      ['opt_go'],
      ['get_size'],
      ['is_read_only'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_export_name', 'good'],
      ['opt_go'],
      ['get_size'],
      ['is_read_only'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_export_name', 'a'],
      ['get_export_name'],
      ['opt_info'],
      ['get_size'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['shutdown'],
    ]);
    expect(js.outcomes[7]).toEqual(['ok', 0]);
    expect(js.outcomes[31]).toEqual(['ok', 4]);
    expect(js.outcomes[35]).toEqual(['ok', 'good']);
  });

  test('meta contexts set by optInfo persist through optGo with setRequestMetaContext(false) (opt-info, second connection)', async () => {
    const script = shScript('opt-info.sh', INFO_SCRIPT);
    const js = await same([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['sh', script] }],
      ['add_meta_context', 'x-unexpected:bogus'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_info'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_request_meta_context', false],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_go'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['shutdown'],
    ]);
    expect(js.outcomes[4][0]).toBe('ok');
  });
});

describe('opt-list-meta', () => {
  test('optListMetaContext with no, bogus, exact and wildcard queries, and optInfo between (240-opt-list-meta)', async () => {
    const js = await same([
      ['set_opt_mode', true],
      ['connect_command', memory],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['add_meta_context', 'x-nosuch:'],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['get_nr_meta_contexts'],
      ['get_meta_context', 1],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['get_size'],
      ['opt_info'],
      ['get_size'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['clear_meta_contexts'],
      ['add_meta_context', 'x-nosuch:'],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['get_size'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', 'base:'],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['opt_abort'],
    ]);
    expect(js.outcomes[4]).toEqual(['ok', 0]);
    expect(js.outcomes[8]).toEqual(['ok', 1]);
    expect(js.calls.length).toBeGreaterThanOrEqual(3);
  });

  test('without structured replies optListMetaContext answers as libnbd, then optStructuredReply lets it list (240, second part)', async () => {
    await same([
      ['set_opt_mode', true],
      ['set_request_structured_replies', false],
      ['connect_command', memory],
      ['get_structured_replies_negotiated'],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['opt_structured_reply'],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['opt_abort'],
    ]);
  });

  test('optListMetaContextQueries ignores the requested list and lists what the queries match (245)', async () => {
    await same([
      ['set_opt_mode', true],
      ['connect_command', memory],
      ['add_meta_context', 'x-nosuch:'],
      ['opt_list_meta_context_queries', [], { $fn: 'context' }],
      ['clear_meta_contexts'],
      ['opt_list_meta_context_queries', ['x-nosuch:'], { $fn: 'context' }],
      ['opt_list_meta_context_queries', ['x-nosuch:', CONTEXT_BASE_ALLOCATION], { $fn: 'context' }],
      ['opt_abort'],
    ]);
  });
});

describe('opt-set-meta', () => {
  test('optSetMetaContext before and after optStructuredReply, with wildcard, empty and mixed requests, then optGo (250)', async () => {
    await same([
      ['set_opt_mode', true],
      ['set_request_structured_replies', false],
      ['connect_command', memory],
      ['get_structured_replies_negotiated'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['opt_structured_reply'],
      ['get_structured_replies_negotiated'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['clear_meta_contexts'],
      ['add_meta_context', 'base:'],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['clear_meta_contexts'],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', 'x-nosuch:context'],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_request_meta_context', false],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['clear_meta_contexts'],
      ['add_meta_context', 'x-nosuch:context'],
      ['opt_go'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['shutdown'],
    ]);
  });

  test('a server without structured replies fails optSetMetaContext; canMetaContext is false after optGo (opt-set-meta, --no-sr)', async () => {
    await same([
      ['set_opt_mode', true],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_command', { $nbdkit: ['--no-sr', 'memory', 'size=1M'] }],
      ['get_structured_replies_negotiated'],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_go'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['shutdown'],
    ]);
  });

  test('optSetMetaContextQueries selects what its queries name, whatever was requested (255)', async () => {
    await same([
      ['set_opt_mode', true],
      ['connect_command', memory],
      ['opt_set_meta_context_queries', ['base:'], { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_set_meta_context_queries', [], { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['opt_set_meta_context_queries', ['x-nosuch:context', CONTEXT_BASE_ALLOCATION], { $fn: 'context' }],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_request_meta_context', false],
      ['opt_go'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['shutdown'],
    ]);
  });
});

test('optStructuredReply twice, then optGo with base:allocation: block status works (opt-structured-twice)', async () => {
  const js = await same([
    ['set_opt_mode', true],
    ['set_request_structured_replies', false],
    ['connect_command', memory],
    ['get_structured_replies_negotiated'],
    ['opt_structured_reply'],
    ['get_structured_replies_negotiated'],
    ['opt_structured_reply'],
    ['get_structured_replies_negotiated'],
    ['add_meta_context', CONTEXT_BASE_ALLOCATION],
    ['opt_go'],
    ['can_meta_context', CONTEXT_BASE_ALLOCATION],
    ['block_status', 65536, 0, { $fn: 'extent' }],
  ]);
  // Before 1.16 there is no optStructuredReply: no structured replies, no block status.
  if (have.optStructuredReply) expect(js.calls.length).toBeGreaterThan(0);
  else expect(js.outcomes[4]).toEqual(['missing']);
});

describe('newstyle-limited (a server that is not fixed newstyle)', () => {
  const limited = () => ({
    $nbdkit: [
      '--mask-handshake',
      '0',
      'eval',
      'list_exports=printf "a\\nb\\n"',
      'get_size=echo 2048',
      'open=[ "$3" = a ] || exit 1; truncate --size=2048 "$tmpdir/a"',
      'pread=dd bs=1 skip=$4 count=$3 if="$tmpdir/a" 2>/dev/null || exit 1',
      'pwrite=dd bs=1 conv=notrunc seek=$4 of="$tmpdir/a" 2>/dev/null || exit 1',
      'can_write=exit 0',
    ],
  });

  test('optList and optInfo fail as libnbd fails them (ENOTSUP) and the handle stays negotiating', async () => {
    const js = await same([
      ['set_opt_mode', true],
      ['connect_command', limited()],
      ['aio_is_negotiating'],
      ['get_protocol'],
      ['opt_list', { $fn: 'list' }],
      ['opt_info'],
      ['aio_is_negotiating'],
    ]);
    expect(short(js.outcomes[4])).toEqual(['err', 'ENOTSUP']);
    expect(short(js.outcomes[5])).toEqual(['err', 'ENOTSUP']);
  });

  test('optGo to an export the server refuses kills the connection, as libnbd', async () => {
    const js = await same([
      ['set_opt_mode', true],
      ['connect_command', limited()],
      ['set_export_name', 'b'],
      ['opt_go'],
      ['aio_is_dead'],
    ]);
    expect(js.outcomes[3][0]).toBe('err');
    expect(js.outcomes[4]).toEqual(['ok', true]);
  });

  test('connecting to export a: protocol "newstyle", no structured replies, no meta context, the size (with and without option mode)', async () => {
    for (const optMode of [false, true]) {
      const steps: Step[] = [
        ['set_export_name', 'a'],
        ['set_opt_mode', optMode],
        ['add_meta_context', CONTEXT_BASE_ALLOCATION],
        ['connect_command', limited()],
        ['aio_is_negotiating'],
        ...(optMode ? [['opt_go'] as Step] : []),
        ['aio_is_ready'],
        ['get_protocol'],
        ['get_structured_replies_negotiated'],
        ['can_meta_context', CONTEXT_BASE_ALLOCATION],
        ['get_size'],
        ['pwrite', { $write: 512, fill: 0x5a }, 1024],
        ['pread', { $read: 512 }, 1024],
        ['pread_structured', { $read: 512 }, 1024, { $fn: 'chunk' }],
      ];
      const js = await same(steps);
      expect(js.outcomes[js.outcomes.length - 4]).toEqual(['ok', 2048]);
    }
  });

  test('a TLS_REQUIRE handle refuses the server (no TLS without fixed newstyle)', async () => {
    await same([
      ['set_export_name', 'a'],
      ['set_tls', 2],
      ['connect_command', limited()],
      ['aio_is_dead'],
    ]);
  });
});

describe('oldstyle', () => {
  const oldstyle = { $nbdkit: ['-o', 'memory', 'size=2048'] };

  test('option mode, an export name and meta contexts are ignored: "oldstyle", ready, no structured replies, reads and writes work', async () => {
    const js = await same([
      ['set_opt_mode', true],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['set_export_name', 'ignored'],
      ['connect_command', oldstyle],
      ['aio_is_ready'],
      ['get_protocol'],
      ['get_structured_replies_negotiated'],
      ['can_meta_context', CONTEXT_BASE_ALLOCATION],
      ['get_size'],
      ['pwrite', { $write: 512, fill: 0x5a }, 1024],
      ['pread', { $read: 512 }, 1024],
      ['pread_structured', { $read: 512 }, 1024, { $fn: 'chunk' }],
      ['pread_structured', { $read: 512 }, 1024, { $fn: 'chunk', ret: -1, set: 111 }],
    ]);
    expect(js.outcomes[5]).toEqual(['ok', 'oldstyle']);
    expect(short(js.outcomes[12])).toEqual(['err', 'ECONNREFUSED']);
  });

  test('a TLS_REQUIRE handle refuses an oldstyle server', async () => {
    await same([['set_tls', 2], ['connect_command', oldstyle], ['aio_is_dead']]);
  });
});

describe('shutdown-opt-mode', () => {
  test('oldstyle in option mode: ready; optAbort fails EINVAL; shutdown succeeds', async () => {
    await same([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['--oldstyle', 'memory', 'size=2m'] }],
      ['aio_is_ready'],
      ['opt_abort'],
      ['shutdown'],
      ['aio_is_closed'],
    ]);
  });

  test('newstyle in option mode: aioDisconnect fails EINVAL, optAbort closes', async () => {
    await same([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['memory', 'size=2m'] }],
      ['aio_is_negotiating'],
      ['aio_disconnect', 0],
      ['opt_abort'],
      ['aio_is_closed'],
    ]);
  });
});

describe('errors-not-negotiating-aio', () => {
  test('aioOptList before connecting fails ENOTCONN, after connecting without option mode EINVAL; no callback runs', async () => {
    const js = await same([
      ['aio_opt_list', { $fn: 'list' }, { $fn: 'completion' }],
      ['connect_command', memory],
      ['aio_opt_list', { $fn: 'list' }, { $fn: 'completion' }],
    ]);
    expect(short(js.outcomes[0])).toEqual(['err', 'ENOTCONN']);
    expect(short(js.outcomes[2])).toEqual(['err', 'EINVAL']);
    expect(js.calls).toEqual([]);
  });
});

describe('full info', () => {
  const described = {
    $nbdkit: ['--filter=exportname', 'memory', '1M', 'exportname-list=explicit', 'exportname=a', 'exportdesc=fixed:the description', 'default-export=a'],
  };

  test('with setFullInfo(true), the canonical name and the description after optInfo and after optGo are libnbd\'s', async () => {
    await same([
      ['set_opt_mode', true],
      ['set_full_info', true],
      ['connect_command', described],
      ['get_canonical_export_name'],
      ['get_export_description'],
      ['opt_info'],
      ['get_canonical_export_name'],
      ['get_export_description'],
      ['opt_go'],
      ['get_canonical_export_name'],
      ['get_export_description'],
    ]);
  });

  test('without setFullInfo, what the handle knows of the name and description is libnbd\'s', async () => {
    await same([['connect_command', described], ['get_canonical_export_name'], ['get_export_description'], ['get_export_name']]);
  });
});

describe('the option calls\' results and errors, as libnbd\'s', () => {
  test('optGo and optInfo resolve with nothing, as nbd_opt_go and nbd_opt_info return no value', async () => {
    const js = await expectSameAsLibnbd([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['memory', '1M'] }],
      ['opt_info'],
      ['opt_go'],
    ]);
    expect(js.outcomes.slice(2)).toEqual([
      ['ok', null],
      ['ok', null],
    ]);
  });

  test('a failed optList says "server replied with error to list request", nbd_opt_list\'s words', async () => {
    await expectSameAsLibnbd([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['eval', 'get_size=echo 512', 'list_exports=echo "EINVAL listing refused" >&2; exit 1'] }],
      ['opt_list', { $fn: 'list' }],
    ]);
  });

  test('a meta context option the server refuses fails with libnbd\'s words ("list meta context request" before 1.16, "meta context request" since)', async () => {
    const srv = await startQemuNbd(sparseFile(65536, []), '-x', 'disk1');
    const steps: Step[] = [
      ['set_opt_mode', true],
      ['set_export_name', 'nope'],
      ['add_meta_context', CONTEXT_BASE_ALLOCATION],
      ['connect_unix', srv.socket],
      ['opt_list_meta_context', { $fn: 'context' }],
      ['opt_list_meta_context_queries', [CONTEXT_BASE_ALLOCATION], { $fn: 'context' }],
      ['opt_set_meta_context', { $fn: 'context' }],
      ['opt_set_meta_context_queries', [CONTEXT_BASE_ALLOCATION], { $fn: 'context' }],
    ];
    const js = await expectSameAsLibnbd(steps);
    expect(js.outcomes[4][0]).toBe('err');
  });

  test('optGo whose server hangs up (a non-fixed-newstyle server refusing the export) fails with the failure libnbd saw, not ENOTCONN "server replied with error"', async () => {
    await expectSameAsLibnbd([
      ['set_opt_mode', true],
      ['connect_command', { $nbdkit: ['--mask-handshake', '0', 'eval', 'get_size=echo 512', 'open=[ "$3" = a ] || exit 1'] }],
      ['set_export_name', 'b'],
      ['opt_go'],
      ['aio_is_dead'],
    ]);
  });
});
