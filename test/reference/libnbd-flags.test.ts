// libnbd's flag tests replayed against this binding: the export flags the
// server sends and the can_*/is_* queries that report them, compared with
// libnbd's answers through its Python binding for the same server:
// tests/eflags.c (every can-*-flag and can-not-*-flag variant of
// Makefile.am, is-rotational), read-only-flag.c, read-write-flag.c,
// get-size.c, python/t/300-get-size; and the block size queries.
import { chmodSync } from 'node:fs';
import { tempFile } from '../helpers/servers';
import { expectSameAsLibnbd, type Step } from '../helpers/replay';

// An nbdkit sh plugin whose answer to one callback (key=NAME) is set by the
// command line: print=TEXT to print, rc=N to exit with. The rest: a 1M
// writable export of zeroes that can zero (so that can_fast_zero is asked).
const EFLAGS_SCRIPT = `#!/bin/sh
key=$(cat "$tmpdir/key" 2>/dev/null)
if [ -n "$key" ] && [ "$1" = "$key" ]; then
  print=$(cat "$tmpdir/print")
  [ -n "$print" ] && echo "$print"
  exit $(cat "$tmpdir/rc")
fi
case "$1" in
  thread_model) echo parallel ;;
  config)
    case "$2" in
      key|print|rc) echo "$3" > "$tmpdir/$2" ;;
      *) echo "unknown key $2" >&2; exit 1 ;;
    esac ;;
  get_size) echo 1M ;;
  pread) dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null ;;
  can_write) exit 0 ;;
  can_zero) exit 0 ;;
  *) exit 2 ;;
esac
`;

/** Every query of the export's flags, in one scenario. */
const QUERIES: Step[] = [
  ['can_flush'],
  ['can_fua'],
  ['is_rotational'],
  ['can_trim'],
  ['can_zero'],
  ['can_fast_zero'],
  ['can_df'],
  ['can_multi_conn'],
  ['can_cache'],
  ['is_read_only'],
  ['get_structured_replies_negotiated'],
];

// [query, value as eflags.c names it (true, false, native, none), filter, without structured replies, expected]
const variants: [string, 'true' | 'false' | 'native' | 'none', string | undefined, boolean, boolean][] = [
  ['can_flush', 'true', undefined, false, true],
  ['can_flush', 'false', undefined, false, false],
  ['can_fua', 'native', undefined, false, true],
  ['can_fua', 'none', undefined, false, false],
  ['is_rotational', 'true', undefined, false, true],
  ['is_rotational', 'false', undefined, false, false],
  ['can_trim', 'true', undefined, false, true],
  ['can_trim', 'false', undefined, false, false],
  ['can_zero', 'true', undefined, false, true],
  ['can_zero', 'false', '--filter=nozero', false, false],
  ['can_fast_zero', 'true', undefined, false, true],
  ['can_fast_zero', 'false', undefined, false, false],
  ['can_df', 'true', undefined, false, true],
  ['can_df', 'false', undefined, true, false],
  ['can_multi_conn', 'true', undefined, false, true],
  ['can_multi_conn', 'false', undefined, false, false],
  ['can_cache', 'native', undefined, false, true],
  ['can_cache', 'none', undefined, false, false],
];

describe('eflags: each export flag the server sets or clears', () => {
  test.each(variants)('%s with the plugin answering %s (filter %s, no structured replies: %s): every flag query as libnbd answers it', async (key, value, filter, noSr, expected) => {
    const script = tempFile('eflags.sh', EFLAGS_SCRIPT);
    chmodSync(script, 0o755);
    const argv = [...(filter === undefined ? [] : [filter]), 'sh', script, `key=${key}`];
    argv.push(value === 'native' || value === 'none' ? `print=${value}` : 'print=', value === 'false' ? 'rc=3' : 'rc=0');
    const steps: Step[] = [
      ...(noSr ? [['set_request_structured_replies', false] as Step] : []),
      ['connect_command', { $nbdkit: argv }],
      ...QUERIES,
      ['shutdown'],
    ];
    const js = await expectSameAsLibnbd(steps);
    const first = noSr ? 2 : 1;
    expect(js.outcomes[first + QUERIES.findIndex((q) => q[0] === key)]).toEqual(['ok', expected]);
  });
});

test('nbdkit -r: isReadOnly is true and the write flags as libnbd reports them (read-only-flag)', async () => {
  const js = await expectSameAsLibnbd([['connect_command', { $nbdkit: ['-r', 'null'] }], ...QUERIES, ['shutdown']]);
  expect(js.outcomes[10]).toEqual(['ok', true]);
});

test('nbdkit null without -r: isReadOnly is false (read-write-flag)', async () => {
  const js = await expectSameAsLibnbd([['connect_command', { $nbdkit: ['null'] }], ...QUERIES, ['shutdown']]);
  expect(js.outcomes[10]).toEqual(['ok', false]);
});

test('getSize is the export\'s size, over newstyle without fixed options (-n) too (get-size, 300-get-size)', async () => {
  const js = await expectSameAsLibnbd([
    ['connect_command', { $nbdkit: ['-n', 'null', 'size=1048576'] }],
    ['get_size'],
    ['get_protocol'],
    ['shutdown'],
  ]);
  expect(js.outcomes[1]).toEqual(['ok', 1048576]);
});

test('getBlockSize for each size type, with and without the server\'s block size constraints', async () => {
  const sizes: Step[] = [0, 1, 2, 3].map((t): Step => ['get_block_size', t]);
  await expectSameAsLibnbd([['connect_command', { $nbdkit: ['memory', '1M'] }], ...sizes]);
  const js = await expectSameAsLibnbd([
    ['connect_command', { $nbdkit: ['memory', '1M', '--filter=blocksize-policy', 'blocksize-minimum=512', 'blocksize-preferred=4096', 'blocksize-maximum=65536'] }],
    ...sizes,
  ]);
  expect(js.outcomes.slice(1, 4)).toEqual([
    ['ok', 512],
    ['ok', 4096],
    ['ok', 65536],
  ]);
});

test('setRequestBlockSize(false): the block sizes libnbd reports then', async () => {
  await expectSameAsLibnbd([
    ['set_request_block_size', false],
    ['connect_command', { $nbdkit: ['memory', '1M', '--filter=blocksize-policy', 'blocksize-minimum=512', 'blocksize-preferred=4096', 'blocksize-maximum=65536'] }],
    ['get_block_size', 0],
    ['get_block_size', 1],
    ['get_block_size', 2],
  ]);
});

test('flag queries before connecting fail as libnbd fails them', async () => {
  await expectSameAsLibnbd([...QUERIES, ['get_size'], ['get_block_size', 0], ['can_meta_context', 'base:allocation']]);
});
