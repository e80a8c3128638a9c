// Callbacks that throw odd values or break their error argument
// (fixtures/odd-callback.js), and buffers that shrink, are detached or are
// transferred while their command is in flight (fixtures/mid-read-buffer.js):
// each case in a child process of its own, so that a crash or a stall is a
// result, not the end of the test run.
import { collectStrayErrors } from './helpers/faults';
import { sleep } from '../helpers/wait';
import { CRASH, howItEnded, runFixture } from './helpers/child';

const stray = collectStrayErrors();

describe('a callback that throws an odd value or breaks its error argument', () => {
  const THROWN = ['error', 'symbol', 'undefined', 'stack-getter', 'proxy'];
  const CASES = [...THROWN, 'value-accessor'].flatMap((c) => [[c, 'completion'] as const, [c, 'chunk'] as const]);

  test.each(CASES)('%s, from a %s callback: it runs once, its command and the next one settle, nothing is thrown elsewhere', async (which, form) => {
    const r = await runFixture('odd-callback.js', [which, form], { timeoutMs: 10000 });
    const line = r.lines[0];
    expect({ ended: howItEnded(r), stalled: line?.stalled }).toEqual({ ended: 'exit 0', stalled: undefined });
    expect(r.stderr).not.toMatch(CRASH);
    expect(line).toMatchObject({ calls: 1, callsAfterClose: 1, next: 'ok', stray: [] });
    if (form === 'chunk') {
      // A throw fails the command with EPROTO, the thrown value its cause.
      if (THROWN.includes(which)) expect(line.outcome).toEqual({ code: 'EPROTO', causeIsThrown: true });
      else expect(line.outcome).toEqual({ code: expect.any(String), causeIsThrown: false });
    } else if (THROWN.includes(which)) {
      // The read succeeded: the throw is reported as a warning, never lost.
      expect(line.warnings).toEqual(['NbdCallbackWarning']);
    }
  });
});

describe('a buffer that JS shrinks, detaches or transfers while its command is in flight', () => {
  // What each Node release allows differs (a marked buffer can be transferred
  // on 22, not on 24; WebAssembly memory grows on all): whatever happens to
  // the buffer, the command settles once, libnbd writes nowhere the caller
  // does not expect, and the connection stays usable.
  const READS = ['pread', 'preadStructured', 'aio'];
  const CASES: (readonly [string, string])[] = [
    ...['resize', 'wasm-grow', 'transfer-shorter'].flatMap((c) => READS.map((f) => [c, f] as const)),
    ...['transfer', 'transfer-fixed', 'transfer-drop', 'structured-clone', 'post-message', 'byte-stream'].map((c) => [c, 'pread'] as const),
    ...['wasm-grow', 'transfer', 'transfer-shorter', 'byte-stream'].map((c) => [c, 'pwrite'] as const),
    ['transfer-shorter', 'aioPwrite'],
  ];

  test.each(CASES)('%s under %s: refused up front, or it settles once — a read that lost its buffer with EFAULT, a write with the data as issued — libnbd writes nowhere else, and the connection stays usable; no crash', async (which, form) => {
    const r = await runFixture('mid-read-buffer.js', [which, form], { timeoutMs: 15000 });
    const line = r.lines[0];
    expect({ ended: howItEnded(r), stalled: line?.stalled }).toEqual({ ended: 'exit 0', stalled: undefined });
    expect(r.stderr).not.toMatch(CRASH);
    expect(line.stray).toEqual([]);
    if (line.refused !== null) {
      // A buffer that can change size is refused like any bad argument.
      expect(line.refused).toEqual({ name: expect.stringMatching(/^(TypeError|RangeError)$/), code: expect.stringMatching(/^ERR_/) });
      expect(line.next).toBe('ok');
      return;
    }
    const write = form.toLowerCase().includes('write');
    const lost = line.changed === 'detached' && !write;
    expect({
      calls: line.calls,
      outcome: line.outcome,
      dataOk: line.dataOk,
      // The memory the buffer went to, and allocations reusing freed memory, are untouched.
      newOwnerIntact: line.newOwnerIntact !== false,
      churnIntact: line.churnIntact !== false,
      next: line.next,
    }).toEqual({
      calls: 1,
      outcome: lost ? (form === 'aio' ? 'errno 14' : 'EFAULT') : 'ok',
      dataOk: lost ? null : true,
      newOwnerIntact: true,
      churnIntact: true,
      next: 'ok',
    });
  });
});

test('no unhandled rejection or uncaught exception in this file', async () => {
  await sleep(20);
  expect(stray).toEqual([]);
});
