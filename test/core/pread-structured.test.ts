// Structured reads: ports of libnbd's own tests (python/t/405, python/t/505,
// the OCaml variants, interop/structured-read.c) plus the cases the research
// verified locally (servers without structured replies, server errors,
// auto-retirement, issuing commands from callbacks). See docs/architecture.md,
// "The life of a read" and "Where libnbd's rules live".
import { constants as os } from 'node:os';
import {
  CMD_FLAG_DF,
  Handle,
  NbdError,
  READ_DATA,
  READ_HOLE,
  type ErrorRef,
} from '../../lib';
import { connected, handle, nbdkit, pattern, sparseFile, startQemuNbd } from '../helpers/servers';
import { waitFor } from '../helpers/wait';

const { EPROTO, ENOMEM, ENETDOWN, ENETUNREACH, ECONNREFUSED, EIO, EINVAL } = os.errno;

interface Chunk {
  subbuf: Buffer | Uint8Array;
  offset: number;
  status: number;
  errorOnEntry: number;
}

/** The NbdError a Promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<NbdError> {
  const r = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (r === undefined) throw new Error('expected the Promise to reject, it resolved');
  expect(r).toBeInstanceOf(NbdError);
  return r as NbdError;
}

/** The NbdError `fn` throws synchronously (fails the test if it returns). */
function thrown(fn: () => unknown): NbdError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new Error('expected a synchronous throw');
  expect(err).toBeInstanceOf(NbdError);
  return err as NbdError;
}

/** Errno of aioCommandCompleted: 0 = true, 'false' = still false, else the thrown errno. */
function completedResult(h: Handle, cookie: number): number | 'false' {
  try {
    return h.aioCommandCompleted(cookie) ? 0 : 'false';
  } catch (e) {
    expect(e).toBeInstanceOf(NbdError);
    return (e as NbdError).errno;
  }
}

/** Resolves once `aioCommandCompleted(cookie)` stops returning false; its errno (0 = success). */
async function retire(h: Handle, cookie: number, ms = 10000): Promise<number> {
  const until = Date.now() + ms;
  for (;;) {
    const r = completedResult(h, cookie);
    if (r !== 'false') return r;
    if (Date.now() > until) throw new Error(`cookie ${cookie} never completed`);
    await new Promise((res) => setImmediate(res));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

// ---------------------------------------------------------------- 405

describe('python/t/405-pread-structured (nbdkit pattern size=512)', () => {
  let h: Handle;
  const expected = pattern(0, 512);

  beforeAll(async () => {
    h = await connected(nbdkit('pattern', 'size=512'));
  });

  test('the callback sees error 0, the data, offset 0 and READ_DATA', async () => {
    const buf = Buffer.alloc(512);
    const calls: Chunk[] = [];
    await h.preadStructured(buf, 0, (subbuf, offset, status, error) => {
      calls.push({ subbuf: Buffer.from(subbuf), offset: offset as number, status, errorOnEntry: error.value });
      return 0;
    });
    expect(calls).toHaveLength(1);
    expect(calls[0].errorOnEntry).toBe(0);
    expect(calls[0].offset).toBe(0);
    expect(calls[0].status).toBe(READ_DATA);
    expect(Buffer.from(calls[0].subbuf).equals(expected)).toBe(true);
    expect(buf.equals(expected)).toBe(true);
  });

  test('setting error.value without returning -1 has no effect', async () => {
    const buf = Buffer.alloc(512);
    let called = 0;
    await h.preadStructured(buf, 0, (_s, _o, _st, error) => {
      called++;
      error.value = EPROTO;
    });
    expect(called).toBe(1);
    expect(buf.equals(expected)).toBe(true);
  });

  test('any return value other than -1 is ignored, even with an errno set', async () => {
    for (const ret of [1, -2, 2, '-1', true, null]) {
      const buf = Buffer.alloc(512);
      await h.preadStructured(buf, 0, (_s, _o, _st, error) => {
        error.value = EPROTO;
        return ret;
      });
      expect(buf.equals(expected)).toBe(true);
    }
  });

  test('the same read with CMD_FLAG_DF succeeds', async () => {
    expect(h.canDf()).toBe(true);
    const buf = Buffer.alloc(512);
    const calls: [number, number, number][] = [];
    await h.preadStructured(
      buf,
      0,
      (subbuf, offset, status) => {
        calls.push([offset as number, status, subbuf.length]);
        return 0;
      },
      CMD_FLAG_DF,
    );
    expect(calls).toEqual([[0, READ_DATA, 512]]);
    expect(buf.equals(expected)).toBe(true);
  });

  test('a callback that throws after setting EPROTO rejects with EPROTO and the throw as cause', async () => {
    const boom = new Error('unexpected user_data');
    const err = await rejection(
      h.preadStructured(Buffer.alloc(512), 0, (_s, _o, _st, error) => {
        error.value = EPROTO;
        throw boom;
      }),
    );
    expect(err.errno).toBe(EPROTO);
    expect(err.errno).toBe(71);
    expect(err.code).toBe('EPROTO');
    expect(err.cause).toBe(boom);
    expect(err.message).toMatch(/^nbd_pread_structured: /);
  });

  test('returning -1 with error.value 0 fails with EPROTO', async () => {
    const err = await rejection(h.preadStructured(Buffer.alloc(512), 0, () => -1));
    expect(err.errno).toBe(EPROTO);
    expect(err.cause).toBeUndefined();
  });

  test('OCaml test_405: an arbitrary errno set before throwing propagates (ENETDOWN)', async () => {
    const boom = new RangeError('ocaml-style failure');
    const err = await rejection(
      h.preadStructured(Buffer.alloc(512), 0, (_s, _o, _st, error) => {
        error.value = ENETDOWN;
        throw boom;
      }),
    );
    expect(err.errno).toBe(ENETDOWN);
    expect(err.code).toBe('ENETDOWN');
    expect(err.cause).toBe(boom);
  });

  test('the handle is still usable after failed callbacks', async () => {
    const buf = Buffer.alloc(512);
    await h.pread(buf, 0);
    expect(buf.equals(expected)).toBe(true);
    expect(h.aioIsReady()).toBe(true);
  });
});

// ---------------------------------------------------------------- 505

describe('python/t/505-aio-pread-callback (nbdkit pattern size=512)', () => {
  let h: Handle;
  const expected = pattern(0, 512);

  beforeAll(async () => {
    h = await connected(nbdkit('pattern', 'size=512'));
  });

  /**
   * Issues aio_pread_structured with python/t/505's callbacks: the chunk
   * callback asserts error 0, sets `chunkSet`, and fails (-1 / throw) when
   * `chunkFails`; the completion callback records error.value, sets
   * `complSet` and returns `complRet` (or throws). Waits for the completion
   * callback, then asks aioCommandCompleted at once.
   */
  async function scenario(opts: {
    chunkSet: number;
    chunkFails: false | 'return' | 'throw';
    complSet: number;
    complRet: unknown;
    complThrows?: boolean;
  }): Promise<{ chunkEntry: number[]; complEntry: number[]; result: number | 'false'; again: number | 'false'; buf: Buffer }> {
    const buf = Buffer.alloc(512);
    const chunkEntry: number[] = [];
    const complEntry: number[] = [];
    const done = deferred();
    const cookie = h.aioPreadStructured(
      buf,
      0,
      (subbuf, offset, status, error) => {
        chunkEntry.push(error.value);
        expect(Buffer.from(subbuf).equals(expected)).toBe(true);
        expect(offset).toBe(0);
        expect(status).toBe(READ_DATA);
        error.value = opts.chunkSet;
        if (opts.chunkFails === 'throw') throw new Error('chunk fails');
        return opts.chunkFails === 'return' ? -1 : 0;
      },
      (error) => {
        complEntry.push(error.value);
        error.value = opts.complSet;
        done.resolve();
        if (opts.complThrows) throw new Error('completion fails');
        return opts.complRet;
      },
    );
    expect(cookie).toBeGreaterThanOrEqual(1);
    await done.promise;
    const result = completedResult(h, cookie);
    const again = completedResult(h, cookie);
    return { chunkEntry, complEntry, result, again, buf };
  }

  // Python's callbacks raise to fail; here both -1 and a throw must work.
  for (const style of ['return', 'throw'] as const) {
    describe(`failing by ${style === 'return' ? 'returning -1' : 'throwing'}`, () => {
      const fail = style === 'throw' ? { complRet: 0, complThrows: true } : { complRet: -1 };

      test('1: both succeed; ENOMEM set by the completion without failing is ignored', async () => {
        const r = await scenario({ chunkSet: EPROTO, chunkFails: false, complSet: ENOMEM, complRet: 0 });
        expect(r.chunkEntry).toEqual([0]);
        expect(r.complEntry).toEqual([0]);
        expect(r.result).toBe(0);
        expect(r.again).toBe('false');
        expect(r.buf.equals(expected)).toBe(true);
      });

      test('2: the completion fails with ENOMEM -> ENOMEM', async () => {
        const r = await scenario({ chunkSet: EPROTO, chunkFails: false, complSet: ENOMEM, ...fail });
        expect(r.chunkEntry).toEqual([0]);
        expect(r.complEntry).toEqual([0]);
        expect(r.result).toBe(ENOMEM);
        expect(r.again).toBe('false');
      });

      test('3: chunk fails EPROTO, completion sees EPROTO, fails with ENOMEM -> ENOMEM (completion overrides)', async () => {
        const r = await scenario({ chunkSet: EPROTO, chunkFails: style, complSet: ENOMEM, ...fail });
        expect(r.chunkEntry).toEqual([0]);
        expect(r.complEntry).toEqual([EPROTO]);
        expect(r.result).toBe(ENOMEM);
        expect(r.again).toBe('false');
      });

      test('4: chunk fails EPROTO, completion sets ENOMEM but returns 0 -> EPROTO', async () => {
        const r = await scenario({ chunkSet: EPROTO, chunkFails: style, complSet: ENOMEM, complRet: 0 });
        expect(r.chunkEntry).toEqual([0]);
        expect(r.complEntry).toEqual([EPROTO]);
        expect(r.result).toBe(EPROTO);
        expect(r.again).toBe('false');
      });
    });
  }

  test('the NbdError of aioCommandCompleted carries errno, code, message and cause', async () => {
    const boom = new Error('chunk threw');
    const done = deferred();
    const cookie = h.aioPreadStructured(
      Buffer.alloc(512),
      0,
      (_s, _o, _st, error) => {
        error.value = EPROTO;
        throw boom;
      },
      () => {
        done.resolve();
        return 0;
      },
    );
    await done.promise;
    const err = thrown(() => h.aioCommandCompleted(cookie));
    expect(err.errno).toBe(EPROTO);
    expect(err.code).toBe('EPROTO');
    expect(err.message).toMatch(/^nbd_aio_command_completed: /);
    expect(err.cause).toBe(boom);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
  });

  test('completion -1 with error.value 0 changes nothing, on success and on failure', async () => {
    let r = await scenario({ chunkSet: 0, chunkFails: false, complSet: 0, complRet: -1 });
    expect(r.result).toBe(0);
    r = await scenario({ chunkSet: EPROTO, chunkFails: 'return', complSet: 0, complRet: -1 });
    expect(r.complEntry).toEqual([EPROTO]);
    expect(r.result).toBe(EPROTO);
  });

  test('OCaml test_505: arbitrary errnos propagate (ENETDOWN from the chunk, ENETUNREACH from the completion)', async () => {
    let r = await scenario({ chunkSet: ENETDOWN, chunkFails: 'throw', complSet: ENETDOWN, complRet: 0 });
    expect(r.complEntry).toEqual([ENETDOWN]);
    expect(r.result).toBe(ENETDOWN);
    r = await scenario({ chunkSet: ENETDOWN, chunkFails: 'throw', complSet: ENETUNREACH, complRet: -1 });
    expect(r.complEntry).toEqual([ENETDOWN]);
    expect(r.result).toBe(ENETUNREACH);
  });

  test('a completion that throws on a successful command (error 0): success, a process warning, other commands unharmed', async () => {
    // A thrown value is never silently lost (docs/architecture.md, "Traps");
    // if the command still succeeds it is reported with process.emitWarning. Tests run in jest's
    // own realm, as users' tests do: that must not break event delivery.
    const boom = new Error('completion threw but nothing failed');
    // jest gives each test file its own `process` object, which Node's
    // 'warning' events never reach: watch the emitWarning calls instead.
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      let completions = 0;
      const cookies: number[] = [];
      for (let i = 0; i < 4; i++) {
        cookies.push(
          h.aioPreadStructured(Buffer.alloc(128), i * 128, () => 0, () => {
            completions++;
            if (i === 0) throw boom;
            return 0;
          }),
        );
      }
      await waitFor(() => completions === 4, 'all four completions', 3000).catch(() => undefined);
      expect(completions).toBe(4);
      expect(cookies.map((c) => completedResult(h, c))).toEqual([0, 0, 0, 0]);
      await new Promise((r) => setImmediate(r));
      const mentions = (args: unknown[]) => String(args[0]).includes(boom.message);
      expect(emitWarning.mock.calls.filter(mentions)).toHaveLength(1);
      expect(emitWarning.mock.calls.find(mentions)![1]).toMatchObject({ type: 'NbdCallbackWarning' });
    } finally {
      emitWarning.mockRestore();
    }
  });

  test('waiting by polling aioCommandCompleted, as 505 does', async () => {
    const buf = Buffer.alloc(512);
    const cookie = h.aioPreadStructured(buf, 0, () => 0, (error) => {
      error.value = ENOMEM;
      return 0;
    });
    expect(await retire(h, cookie)).toBe(0);
    expect(buf.equals(expected)).toBe(true);
  });
});

// ---------------------------------------------------------------- interop

describe('interop/structured-read (qemu-nbd, sparse raw file: data 0-4K, hole 4-8K, data 8-12K)', () => {
  let h: Handle;
  let socket: string;

  beforeAll(async () => {
    const file = sparseFile(12288, [[0, 4096], [8192, 4096]], 1);
    const srv = await startQemuNbd(file, '-e', '8');
    socket = srv.socket;
    h = handle();
    await h.connectUnix(socket);
    expect(h.getSize()).toBe(12288);
    expect(h.canDf()).toBe(true);
  });

  /** Runs a structured read into `buf` (pre-filled with 2s) and records every chunk. */
  async function read(buf: Uint8Array, offset: number, flags = 0, fail = false): Promise<{ calls: Chunk[]; err?: NbdError }> {
    buf.fill(2);
    const calls: Chunk[] = [];
    const p = h.preadStructured(
      buf,
      offset,
      (subbuf, off, status, error: ErrorRef) => {
        calls.push({ subbuf, offset: off as number, status, errorOnEntry: error.value });
        if (fail) {
          error.value = calls.length === 1 ? EPROTO : ECONNREFUSED;
          return -1;
        }
        return 0;
      },
      flags,
    );
    if (!fail) {
      await p;
      return { calls };
    }
    return { calls, err: await rejection(p) };
  }

  function checkView(c: Chunk, buf: Uint8Array, requestOffset: number, count: number, fill: number): void {
    expect(c.subbuf.buffer).toBe(buf.buffer); // zero-copy view of the caller's buffer
    expect(c.subbuf.byteOffset - buf.byteOffset).toBe(c.offset - requestOffset);
    expect(c.subbuf.length).toBe(count);
    expect(c.subbuf.every((b) => b === fill)).toBe(true);
  }

  test('12K at 0: DATA, HOLE, DATA chunks, views at the right place, absolute offsets', async () => {
    const buf = Buffer.alloc(12288);
    const { calls } = await read(buf, 0);
    expect(calls.map((c) => [c.offset, c.status, c.subbuf.length, c.errorOnEntry])).toEqual([
      [0, READ_DATA, 4096, 0],
      [4096, READ_HOLE, 4096, 0],
      [8192, READ_DATA, 4096, 0],
    ]);
    checkView(calls[0], buf, 0, 4096, 1);
    checkView(calls[1], buf, 0, 4096, 0);
    checkView(calls[2], buf, 0, 4096, 1);
  });

  test('8K at 2048 into a Uint8Array at a non-zero byteOffset: offsets are absolute, views relative', async () => {
    const backing = new ArrayBuffer(16384);
    const buf = new Uint8Array(backing, 1000, 8192);
    const { calls } = await read(buf, 2048);
    expect(calls.map((c) => [c.offset, c.status, c.subbuf.length])).toEqual([
      [2048, READ_DATA, 2048],
      [4096, READ_HOLE, 4096],
      [8192, READ_DATA, 2048],
    ]);
    checkView(calls[0], buf, 2048, 2048, 1);
    checkView(calls[1], buf, 2048, 4096, 0);
    checkView(calls[2], buf, 2048, 2048, 1);
    const around = new Uint8Array(backing);
    expect(around[999]).toBe(0); // nothing written outside the view
    expect(around[1000 + 8192]).toBe(0);
  });

  test('a DataView buffer: chunks land in the viewed bytes', async () => {
    const backing = new ArrayBuffer(8192 + 64);
    const dv = new DataView(backing, 64, 8192);
    const calls: [number, number, number, number][] = [];
    await h.preadStructured(dv, 4096, (subbuf, offset, status) => {
      calls.push([offset as number, status, subbuf.byteOffset - 64, subbuf.length]);
      return 0;
    });
    expect(calls).toEqual([
      [4096, READ_HOLE, 0, 4096],
      [8192, READ_DATA, 4096, 4096],
    ]);
    const bytes = new Uint8Array(backing);
    expect(bytes.subarray(64 + 4096).every((b) => b === 1)).toBe(true);
    expect(bytes.subarray(0, 64).every((b) => b === 0)).toBe(true);
  });

  test('a { bigint: true } handle passes absolute offsets as bigints', async () => {
    const hb = handle({ bigint: true });
    await hb.connectUnix(socket);
    const calls: [bigint, number][] = [];
    await hb.preadStructured(Buffer.alloc(8192), 2048n, (_subbuf, offset, status) => {
      calls.push([offset, status]);
      return 0;
    });
    expect(calls).toEqual([
      [2048n, READ_DATA],
      [4096n, READ_HOLE],
      [8192n, READ_DATA],
    ]);
  });

  test('with CMD_FLAG_DF: one DATA chunk covering the request', async () => {
    const buf = Buffer.alloc(12288);
    const { calls } = await read(buf, 0, CMD_FLAG_DF);
    expect(calls.map((c) => [c.offset, c.status, c.subbuf.length, c.errorOnEntry])).toEqual([[0, READ_DATA, 12288, 0]]);
    expect(calls[0].subbuf.byteOffset).toBe(buf.byteOffset);
    expect(buf.subarray(0, 4096).every((b) => b === 1)).toBe(true);
    expect(buf.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
    expect(buf.subarray(8192).every((b) => b === 1)).toBe(true);
  });

  test('a failing callback: every chunk is delivered, later ones see EPROTO, final EPROTO, handle usable', async () => {
    const buf = Buffer.alloc(12288);
    const { calls, err } = await read(buf, 0, 0, true);
    expect(calls.map((c) => [c.offset, c.status, c.errorOnEntry])).toEqual([
      [0, READ_DATA, 0],
      [4096, READ_HOLE, EPROTO],
      [8192, READ_DATA, EPROTO],
    ]);
    expect(err!.errno).toBe(EPROTO);
    expect(h.aioIsReady()).toBe(true);
    const one = Buffer.alloc(1);
    await h.pread(one, 0);
    expect(one[0]).toBe(1);
    const again = Buffer.alloc(12288);
    const ok = await read(again, 0);
    expect(ok.calls).toHaveLength(3);
  });

  test('the same failing callback through aioPreadStructured and aioCommandCompleted', async () => {
    const entries: number[] = [];
    let completionSaw = -1;
    const done = deferred();
    const cookie = h.aioPreadStructured(
      Buffer.alloc(12288),
      0,
      (_s, _o, _st, error) => {
        entries.push(error.value);
        error.value = entries.length === 1 ? EPROTO : ECONNREFUSED;
        return -1;
      },
      (error) => {
        completionSaw = error.value;
        done.resolve();
        return 0;
      },
    );
    await done.promise;
    expect(entries).toEqual([0, EPROTO, EPROTO]);
    expect(completionSaw).toBe(EPROTO);
    expect(completedResult(h, cookie)).toBe(EPROTO);
  });
});

// ---------------------------------------------------------------- no structured replies

describe('a server without structured replies', () => {
  async function checkSimpleReplies(h: Handle): Promise<void> {
    expect(h.getStructuredRepliesNegotiated()).toBe(false);
    expect(h.canDf()).toBe(false);

    const buf = Buffer.alloc(8192);
    const calls: Chunk[] = [];
    await h.preadStructured(buf, 4096, (subbuf, offset, status, error) => {
      calls.push({ subbuf, offset: offset as number, status, errorOnEntry: error.value });
      return 0;
    });
    expect(calls).toHaveLength(1);
    expect(calls[0].status).toBe(READ_DATA);
    expect(calls[0].offset).toBe(4096);
    expect(calls[0].errorOnEntry).toBe(0);
    expect(calls[0].subbuf.buffer).toBe(buf.buffer);
    expect(calls[0].subbuf.byteOffset).toBe(buf.byteOffset);
    expect(calls[0].subbuf.length).toBe(8192);
    expect(buf.equals(pattern(4096, 8192))).toBe(true);

    // DF is refused client-side, synchronously, and nothing is issued.
    const before = h.aioInFlight();
    let chunkCalled = false;
    const dfBuf = Buffer.alloc(512, 0xff);
    const err = thrown(() =>
      h.aioPreadStructured(
        dfBuf,
        0,
        () => {
          chunkCalled = true;
        },
        null,
        CMD_FLAG_DF,
      ),
    );
    expect(err.errno).toBe(EINVAL);
    expect(err.code).toBe('EINVAL');
    expect(err.message).toMatch(/^nbd_aio_pread_structured: .*DF/);
    // libnbd pre-initialises the buffer before any check, even when the call then fails.
    expect(dfBuf.every((b) => b === 0)).toBe(true);
    expect(h.aioInFlight()).toBe(before);
    const perr = await rejection(h.preadStructured(Buffer.alloc(512), 0, () => 0, CMD_FLAG_DF));
    expect(perr.errno).toBe(EINVAL);
    expect(chunkCalled).toBe(false);

    // The single chunk can still fail the command.
    const ferr = await rejection(
      h.preadStructured(Buffer.alloc(512), 0, (_s, _o, _st, error) => {
        error.value = ENETDOWN;
        return -1;
      }),
    );
    expect(ferr.errno).toBe(ENETDOWN);
    expect(h.aioIsReady()).toBe(true);
  }

  test('nbdkit --no-sr pattern size=64K', async () => {
    const h = await connected(['nbdkit', '-s', '--exit-with-parent', '--no-sr', 'pattern', 'size=64K']);
    await checkSimpleReplies(h);
  });

  test('setRequestStructuredReplies(false) before connecting', async () => {
    const h = handle();
    h.setRequestStructuredReplies(false);
    await h.connectCommand(nbdkit('pattern', 'size=64K'));
    await checkSimpleReplies(h);
  });
});

// ---------------------------------------------------------------- server errors

describe('a server error (nbdkit --filter=error pattern error-pread=EIO error-pread-rate=1)', () => {
  let h: Handle;

  beforeAll(async () => {
    h = await connected(nbdkit('--log=null', '--filter=error', 'pattern', 'size=64K', 'error-pread=EIO', 'error-pread-rate=1'));
  });

  test('no chunk call; the completion sees EIO; aioCommandCompleted throws EIO', async () => {
    let chunks = 0;
    const complEntry: number[] = [];
    const done = deferred();
    const cookie = h.aioPreadStructured(
      Buffer.alloc(4096),
      0,
      () => {
        chunks++;
        return 0;
      },
      (error) => {
        complEntry.push(error.value);
        done.resolve();
        return 0;
      },
    );
    await done.promise;
    expect(chunks).toBe(0);
    expect(complEntry).toEqual([EIO]);
    const err = thrown(() => h.aioCommandCompleted(cookie));
    expect(err.errno).toBe(EIO);
    expect(err.code).toBe('EIO');
    expect(err.cause).toBeUndefined();
    expect(h.aioCommandCompleted(cookie)).toBe(false);
  });

  test('the Promise forms reject with EIO', async () => {
    let chunks = 0;
    const err = await rejection(
      h.preadStructured(Buffer.alloc(4096), 0, () => {
        chunks++;
      }),
    );
    expect(chunks).toBe(0);
    expect(err.errno).toBe(EIO);
    expect(err.message).toMatch(/^nbd_pread_structured: /);
    const perr = await rejection(h.pread(Buffer.alloc(4096), 0));
    expect(perr.errno).toBe(EIO);
  });

  test('a completion that fails with ENOMEM replaces the server error; one failing with 0 does not', async () => {
    const run = async (set: number): Promise<number | 'false'> => {
      const done = deferred();
      const cookie = h.aioPreadStructured(Buffer.alloc(512), 0, () => 0, (error) => {
        error.value = set;
        done.resolve();
        return -1;
      });
      await done.promise;
      return completedResult(h, cookie);
    };
    expect(await run(ENOMEM)).toBe(ENOMEM);
    expect(await run(0)).toBe(EIO);
  });

  test('aioPread: the completion sees EIO too', async () => {
    const complEntry: number[] = [];
    const done = deferred();
    const cookie = h.aioPread(Buffer.alloc(512), 0, (error) => {
      complEntry.push(error.value);
      done.resolve();
      return 0;
    });
    await done.promise;
    expect(complEntry).toEqual([EIO]);
    expect(completedResult(h, cookie)).toBe(EIO);
  });
});

// ---------------------------------------------------------------- re-entrancy

describe('callbacks may issue commands on the same handle (JS never runs inside libnbd)', () => {
  let h: Handle;

  beforeAll(async () => {
    h = await connected(nbdkit('pattern', 'size=1M'));
  });

  test('a completion callback chains 100 reads', async () => {
    const N = 100;
    const seen: number[] = [];
    const cookies: number[] = [];
    const all = deferred();
    let failure: unknown;
    const issue = (i: number): number => {
      const buf = Buffer.alloc(4096);
      const off = (i * 4096) % 1048576;
      const cookie = h.aioPreadStructured(
        buf,
        off,
        (subbuf, offset) => {
          if (offset !== off || !Buffer.from(subbuf).equals(pattern(off, 4096))) failure ??= new Error(`bad chunk for read ${i}`);
          return 0;
        },
        (error) => {
          try {
            if (error.value !== 0) throw new Error(`read ${i} failed: ${error.value}`);
            if (!buf.equals(pattern(off, 4096))) throw new Error(`read ${i}: wrong data`);
            seen.push(i);
            if (i + 1 < N) cookies.push(issue(i + 1));
            else all.resolve();
          } catch (e) {
            failure ??= e;
            all.resolve();
          }
          return 1;
        },
      );
      return cookie;
    };
    cookies.push(issue(0));
    await all.promise;
    expect(failure).toBeUndefined();
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i));
    // Cookies are libnbd's: increasing, unique.
    for (let i = 1; i < cookies.length; i++) expect(cookies[i]).toBeGreaterThan(cookies[i - 1]);
    expect(h.aioInFlight()).toBe(0);
  });

  test('a chunk callback may call locking APIs and issue a read', async () => {
    const inner = deferred();
    let innerOk = false;
    let observed: { inFlight: number; size: number; completed: boolean } | undefined;
    await h.preadStructured(Buffer.alloc(512), 0, () => {
      observed = { inFlight: h.aioInFlight(), size: h.getSize() as number, completed: h.aioCommandCompleted(12345) };
      const buf = Buffer.alloc(512);
      h.aioPreadStructured(buf, 512, () => 0, (error) => {
        innerOk = error.value === 0 && buf.equals(pattern(512, 512));
        inner.resolve();
        return 1;
      });
      return 0;
    });
    await inner.promise;
    expect(observed).toEqual({ inFlight: 1, size: 1048576, completed: false });
    expect(innerOk).toBe(true);
  });
});

// ---------------------------------------------------------------- retirement

describe('retiring commands', () => {
  let h: Handle;

  beforeAll(async () => {
    h = await connected(nbdkit('pattern', 'size=64K'));
  });

  test('auto-retire: completion returning 1 -> aioCommandCompleted false forever, peek never returns it', async () => {
    const done = deferred();
    const buf = Buffer.alloc(512);
    const cookie = h.aioPreadStructured(buf, 0, () => 0, () => {
      done.resolve();
      return 1;
    });
    expect(h.aioInFlight()).toBe(1);
    await done.promise;
    expect(buf.equals(pattern(0, 512))).toBe(true);
    expect(h.aioInFlight()).toBe(0);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    // Nothing is in flight and nothing unretired: peek is EINVAL.
    const err = thrown(() => h.aioPeekCommandCompleted());
    expect(err.errno).toBe(EINVAL);
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setImmediate(r));
      expect(h.aioCommandCompleted(cookie)).toBe(false);
    }
  });

  test('auto-retire of a failed command: its error is not reported by aioCommandCompleted', async () => {
    const done = deferred();
    const cookie = h.aioPreadStructured(Buffer.alloc(512), 0, () => -1, (error) => {
      expect(error.value).toBe(EPROTO);
      done.resolve();
      return 1;
    });
    await done.promise;
    expect(h.aioCommandCompleted(cookie)).toBe(false);
  });

  test('manual: completion returning 0 -> peek returns the cookie; aioCommandCompleted true once, then false', async () => {
    const done = deferred();
    const cookie = h.aioPreadStructured(Buffer.alloc(512), 0, () => 0, () => {
      done.resolve();
      return 0;
    });
    // In flight, nothing completed yet.
    expect(h.aioPeekCommandCompleted()).toBe(0);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    await done.promise;
    expect(h.aioInFlight()).toBe(0);
    expect(h.aioPeekCommandCompleted()).toBe(cookie);
    expect(h.aioPeekCommandCompleted()).toBe(cookie); // peek does not retire
    expect(h.aioCommandCompleted(cookie)).toBe(true);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
    expect(thrown(() => h.aioPeekCommandCompleted()).errno).toBe(EINVAL);
  });

  test('mixed: peek shows only the manually retired command, oldest first', async () => {
    const c = { auto: 0, manual1: 0, manual2: 0 };
    const left = { n: 3 };
    const all = deferred();
    const onDone = (ret: number) => () => {
      if (--left.n === 0) all.resolve();
      return ret;
    };
    c.manual1 = h.aioPreadStructured(Buffer.alloc(512), 0, () => 0, onDone(0));
    c.auto = h.aioPreadStructured(Buffer.alloc(512), 512, () => 0, onDone(1));
    await waitFor(() => left.n === 1, 'first two completions');
    c.manual2 = h.aioPreadStructured(Buffer.alloc(512), 1024, () => 0, onDone(2));
    await all.promise;
    expect(h.aioPeekCommandCompleted()).toBe(c.manual1);
    expect(h.aioCommandCompleted(c.auto)).toBe(false);
    expect(h.aioCommandCompleted(c.manual1)).toBe(true);
    // A completion returning 2 (neither 1 nor -1) also leaves the command for manual retirement.
    expect(h.aioPeekCommandCompleted()).toBe(c.manual2);
    expect(h.aioCommandCompleted(c.manual2)).toBe(true);
    expect(thrown(() => h.aioPeekCommandCompleted()).errno).toBe(EINVAL);
  });

  test('without a completion callback the command waits for aioCommandCompleted', async () => {
    const cookie = h.aioPreadStructured(Buffer.alloc(512), 0, () => 0);
    expect(await retire(h, cookie)).toBe(0);
    expect(h.aioCommandCompleted(cookie)).toBe(false);
  });

  test('cookie 0 is EINVAL; an unknown cookie is false', () => {
    const err = thrown(() => h.aioCommandCompleted(0));
    expect(err.errno).toBe(EINVAL);
    expect(h.aioCommandCompleted(12345)).toBe(false);
  });
});
