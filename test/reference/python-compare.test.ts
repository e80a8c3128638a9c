// The reference for every rule of docs/architecture.md's "Where libnbd's
// rules live" is libnbd itself: run the same
// structured-read scenarios through libnbd's Python binding (Debian's
// python3-libnbd, for /usr/bin/python3) and through this binding, against
// the same servers, and compare the traces. Python's callbacks run inside
// libnbd, so its trace is what a C program observes.
import { createHash } from 'node:crypto';
import { constants as os } from 'node:os';
import { CMD_FLAG_DF, Handle, READ_DATA, READ_HOLE, type ErrorRef } from '../../lib';
import { sparseFile, startNbdkit, startQemuNbd } from '../helpers/servers';
import { runPython } from '../helpers/python';
import { errnoOf } from '../helpers/outcome';
import { waitFor } from '../helpers/wait';

const { EPROTO, ENOMEM, ENETDOWN, ECONNREFUSED, EIO, EINVAL } = os.errno;

type ServerName = 'qemu' | 'pattern512' | 'pattern64k' | 'nosr' | 'error';

/** What a callback does: set error.value, then fail (raise / return -1) or return `ret`. */
interface Action {
  set?: number;
  fail?: 'raise' | 'return';
  ret?: number;
}

interface Scenario {
  name: string;
  server: ServerName;
  /** false: setRequestStructuredReplies(false) before connecting. */
  sr?: boolean;
  /** aio: aio_pread_structured + aio_command_completed; sync: pread_structured (Promise form here). */
  mode: 'aio' | 'sync';
  count: number;
  offset: number;
  flags?: number;
  /** Action of the i-th chunk call (the last one repeats); none: return 0. */
  chunk?: Action[];
  /** aio only: a completion callback and its action; undefined: no completion callback. */
  completion?: Action;
  /** After the command: a plain pread of the same range (is the handle still usable?). */
  followup?: boolean;
  /** Sanity checks on libnbd's (Python's) trace, so that a scenario means what its name says. */
  check?: (t: Trace) => void;
}

type Errno = number;
/** [absolute offset, status, count, error.value on entry, sha1 of subbuf] */
type ChunkCall = [number, number, number, number, string];

interface Trace {
  /** errno of the call that issues the command (0 = issued). */
  issue: Errno;
  cookie?: number;
  chunks: ChunkCall[];
  /** error.value on entry of each completion call. */
  completion: number[];
  /** peek right after the completion (aio): 'cookie', a number, or 'errno:N'. */
  peekBefore?: string | number;
  /** aio: aio_command_completed right after completion: 0 = true, 'false', or errno; sync: the call's errno. */
  result?: Errno | 'false';
  again?: Errno | 'false';
  peekAfter?: string | number;
  inFlight?: number;
  /** sha1 of the whole buffer when the read succeeded. */
  buf?: string;
  followup?: string | Errno;
  ready?: boolean;
}

// ------------------------------------------------------------------ Python side

const PYTHON = String.raw`
import errno, hashlib, json, sys
import nbd

def sha1(b):
    return hashlib.sha1(bytes(b)).hexdigest()

def act(a, err):
    if not a:
        return 0
    if 'set' in a:
        err.value = a['set']
    if a.get('fail') == 'raise':
        raise RuntimeError('callback fails')
    if a.get('fail') == 'return':
        return -1
    return a.get('ret', 0)

def completed(h, c):
    try:
        return 0 if h.aio_command_completed(c) else 'false'
    except nbd.Error as e:
        return e.errnum

def peek(h, c):
    try:
        r = h.aio_peek_command_completed()
        return 'cookie' if r == c else r
    except nbd.Error as e:
        return 'errno:%d' % e.errnum

def run(sc):
    h = nbd.NBD()
    if sc.get('sr') is False:
        h.set_request_structured_replies(False)
    h.connect_unix(sc['socket'])
    t = {'issue': 0, 'chunks': [], 'completion': []}
    acts = sc.get('chunk') or []
    def chunk(subbuf, offset, status, err):
        i = len(t['chunks'])
        t['chunks'].append([offset, status, len(subbuf), err.value, sha1(subbuf)])
        return act(acts[min(i, len(acts) - 1)] if acts else None, err)
    count, offset, flags = sc['count'], sc['offset'], sc.get('flags', 0)
    if sc['mode'] == 'sync':
        try:
            buf = h.pread_structured(count, offset, chunk, flags)
            t['result'] = 0
            t['buf'] = sha1(buf)
        except nbd.Error as e:
            t['result'] = e.errnum
    else:
        buf = bytearray(count)
        comp = None
        if 'completion' in sc:
            def comp(err):
                t['completion'].append(err.value)
                return act(sc['completion'], err)
        try:
            c = h.aio_pread_structured(buf, offset, chunk, comp, flags)
        except nbd.Error as e:
            t['issue'] = e.errnum
            return t
        t['cookie'] = c
        if comp is not None:
            while not t['completion']:
                h.poll(-1)
        else:
            while h.aio_peek_command_completed() == 0:
                h.poll(-1)
        t['peekBefore'] = peek(h, c)
        t['result'] = completed(h, c)
        t['again'] = completed(h, c)
        t['peekAfter'] = peek(h, c)
        t['inFlight'] = h.aio_in_flight()
        if t['result'] == 0:
            t['buf'] = sha1(buf)
    if sc.get('followup'):
        try:
            t['followup'] = sha1(h.pread(count, offset))
        except nbd.Error as e:
            t['followup'] = e.errnum
    t['ready'] = h.aio_is_ready()
    return t

scenarios = json.load(sys.stdin)
print(json.dumps([run(sc) for sc in scenarios]))
`;

function pythonTraces(scenarios: (Scenario & { socket: string })[]): Promise<Trace[]> {
  return runPython<Trace[]>(PYTHON, { input: scenarios.map(({ check: _check, ...sc }) => sc), timeoutMs: 30000 });
}

// ------------------------------------------------------------------ this binding

function sha1(b: Uint8Array): string {
  return createHash('sha1').update(b).digest('hex');
}

function act(a: Action | undefined, err: ErrorRef): unknown {
  if (!a) return 0;
  if (a.set !== undefined) err.value = a.set;
  if (a.fail === 'raise') throw new Error('callback fails');
  if (a.fail === 'return') return -1;
  return a.ret ?? 0;
}

function completed(h: Handle, c: number): Errno | 'false' {
  try {
    return h.aioCommandCompleted(c) ? 0 : 'false';
  } catch (e) {
    return errnoOf(e);
  }
}

function peek(h: Handle, c: number): string | number {
  try {
    const r = h.aioPeekCommandCompleted();
    return r === c ? 'cookie' : r;
  } catch (e) {
    return `errno:${errnoOf(e)}`;
  }
}

async function runJs(sc: Scenario & { socket: string }): Promise<Trace> {
  const h = new Handle();
  try {
    if (sc.sr === false) h.setRequestStructuredReplies(false);
    await h.connectUnix(sc.socket);
    const t: Trace = { issue: 0, chunks: [], completion: [] };
    const acts = sc.chunk ?? [];
    const chunk = (subbuf: Uint8Array, offset: number | bigint, status: number, err: ErrorRef): unknown => {
      const i = t.chunks.length;
      t.chunks.push([Number(offset), status, subbuf.length, err.value, sha1(subbuf)]);
      return act(acts.length ? acts[Math.min(i, acts.length - 1)] : undefined, err);
    };
    const { count, offset } = sc;
    const flags = sc.flags ?? 0;
    const buf = Buffer.alloc(count);
    if (sc.mode === 'sync') {
      try {
        await h.preadStructured(buf, offset, chunk, flags);
        t.result = 0;
        t.buf = sha1(buf);
      } catch (e) {
        t.result = errnoOf(e);
      }
    } else {
      const comp =
        sc.completion === undefined
          ? undefined
          : (err: ErrorRef): unknown => {
              t.completion.push(err.value);
              return act(sc.completion, err);
            };
      let c: number;
      try {
        c = h.aioPreadStructured(buf, offset, chunk, comp, flags);
      } catch (e) {
        t.issue = errnoOf(e);
        return t;
      }
      t.cookie = c;
      if (comp !== undefined) await waitFor(() => t.completion.length > 0, 'the completion callback');
      else await waitFor(() => h.aioPeekCommandCompleted() !== 0, 'the command to complete');
      t.peekBefore = peek(h, c);
      t.result = completed(h, c);
      t.again = completed(h, c);
      t.peekAfter = peek(h, c);
      t.inFlight = h.aioInFlight();
      if (t.result === 0) t.buf = sha1(buf);
    }
    if (sc.followup) {
      const again = Buffer.alloc(count);
      try {
        await h.pread(again, offset);
        t.followup = sha1(again);
      } catch (e) {
        t.followup = errnoOf(e);
      }
    }
    t.ready = h.aioIsReady();
    return t;
  } finally {
    h.close();
  }
}

// ------------------------------------------------------------------ scenarios

const statuses = (t: Trace) => t.chunks.map((c) => [c[0], c[1], c[2]]);

/** python/t/505's four scenarios, failing the Python way (raise) and the C way (return -1). */
function scenarios505(): Scenario[] {
  const out: Scenario[] = [];
  for (const fail of ['raise', 'return'] as const) {
    const base = { server: 'pattern512' as const, mode: 'aio' as const, count: 512, offset: 0 };
    out.push(
      {
        ...base,
        name: `505/1 (${fail}): both succeed, completion sets ENOMEM without failing -> success`,
        chunk: [{ set: EPROTO }],
        completion: { set: ENOMEM },
        check: (t) => expect([t.completion, t.result]).toEqual([[0], 0]),
      },
      {
        ...base,
        name: `505/2 (${fail}): completion fails with ENOMEM -> ENOMEM`,
        chunk: [{ set: EPROTO }],
        completion: { set: ENOMEM, fail },
        check: (t) => expect([t.completion, t.result]).toEqual([[0], ENOMEM]),
      },
      {
        ...base,
        name: `505/3 (${fail}): chunk fails EPROTO, completion sees EPROTO and fails ENOMEM -> ENOMEM`,
        chunk: [{ set: EPROTO, fail }],
        completion: { set: ENOMEM, fail },
        check: (t) => expect([t.completion, t.result]).toEqual([[EPROTO], ENOMEM]),
      },
      {
        ...base,
        name: `505/4 (${fail}): chunk fails EPROTO, completion sets ENOMEM and returns 0 -> EPROTO`,
        chunk: [{ set: EPROTO, fail }],
        completion: { set: ENOMEM },
        check: (t) => expect([t.completion, t.result]).toEqual([[EPROTO], EPROTO]),
      },
    );
  }
  return out;
}

const failingChunks = (fail: 'raise' | 'return'): Action[] => [
  { set: EPROTO, fail },
  { set: ECONNREFUSED, fail },
];

const SCENARIOS: Scenario[] = [
  // qemu-nbd, sparse raw file: data 0-4K, hole 4-8K, data 8-12K.
  ...(['aio', 'sync'] as const).flatMap((mode): Scenario[] => [
    {
      name: `qemu-nbd 12K at 0 (${mode}): DATA, HOLE, DATA`,
      server: 'qemu',
      mode,
      count: 12288,
      offset: 0,
      completion: mode === 'aio' ? {} : undefined,
      check: (t) => {
        expect(t.chunks.map((c) => c[1])).toContain(READ_HOLE);
        expect(t.chunks.length).toBeGreaterThanOrEqual(2);
      },
    },
    {
      name: `qemu-nbd 12K at 0 with DF (${mode}): one DATA chunk`,
      server: 'qemu',
      mode,
      count: 12288,
      offset: 0,
      flags: CMD_FLAG_DF,
      check: (t) => expect(statuses(t)).toEqual([[0, READ_DATA, 12288]]),
    },
    {
      name: `qemu-nbd 8K at 2048 (${mode}): absolute offsets`,
      server: 'qemu',
      mode,
      count: 8192,
      offset: 2048,
      check: (t) => expect(t.chunks[0][0]).toBe(2048),
    },
    ...(['raise', 'return'] as const).map(
      (fail): Scenario => ({
        name: `qemu-nbd failing chunk callback, ${fail} (${mode}): EPROTO sticks, all chunks delivered, handle usable`,
        server: 'qemu',
        mode,
        count: 12288,
        offset: 0,
        chunk: failingChunks(fail),
        completion: mode === 'aio' ? {} : undefined,
        followup: true,
        check: (t) => {
          expect(t.chunks.map((c) => c[3])).toEqual([0, EPROTO, EPROTO]);
          expect(t.result).toBe(EPROTO);
        },
      }),
    ),
    {
      name: `qemu-nbd chunk returns -1 with error 0 (${mode}): EPROTO`,
      server: 'qemu',
      mode,
      count: 12288,
      offset: 0,
      chunk: [{ fail: 'return' }],
      check: (t) => expect(t.result).toBe(EPROTO),
    },
    {
      name: `qemu-nbd only the second chunk fails with ENETDOWN (${mode})`,
      server: 'qemu',
      mode,
      count: 12288,
      offset: 0,
      chunk: [{}, { set: ENETDOWN, fail: 'raise' }, { set: EPROTO, fail: 'return' }],
      completion: mode === 'aio' ? {} : undefined,
      check: (t) => {
        expect(t.chunks.map((c) => c[3])).toEqual([0, 0, ENETDOWN]);
        expect(t.result).toBe(ENETDOWN);
      },
    },
  ]),
  {
    name: 'qemu-nbd chunk fails, completion fails with error 0 -> chunk error stays',
    server: 'qemu',
    mode: 'aio',
    count: 12288,
    offset: 0,
    chunk: failingChunks('return'),
    completion: { set: 0, fail: 'return' },
    check: (t) => expect(t.result).toBe(EPROTO),
  },

  // python/t/505 (nbdkit pattern size=512).
  ...scenarios505(),
  {
    name: '505: without a completion callback',
    server: 'pattern512',
    mode: 'aio',
    count: 512,
    offset: 0,
    chunk: [{ set: EPROTO }],
  },
  {
    name: 'auto-retire: completion returns 1 -> completed false, peek EINVAL',
    server: 'pattern512',
    mode: 'aio',
    count: 512,
    offset: 0,
    completion: { ret: 1 },
    check: (t) => expect([t.result, t.peekBefore]).toEqual(['false', `errno:${EINVAL}`]),
  },
  {
    name: 'auto-retire of a failed command: completed false',
    server: 'pattern512',
    mode: 'aio',
    count: 512,
    offset: 0,
    chunk: [{ set: ENETDOWN, fail: 'return' }],
    completion: { ret: 1 },
    check: (t) => expect(t.result).toBe('false'),
  },
  {
    name: 'completion returns 2: manual retirement',
    server: 'pattern512',
    mode: 'aio',
    count: 512,
    offset: 0,
    completion: { ret: 2 },
    check: (t) => expect([t.peekBefore, t.result, t.again]).toEqual(['cookie', 0, 'false']),
  },
  {
    name: 'chunk returns 1 with an errno: ignored',
    server: 'pattern512',
    mode: 'sync',
    count: 512,
    offset: 0,
    chunk: [{ set: ENETDOWN, ret: 1 }],
    check: (t) => expect(t.result).toBe(0),
  },

  // Servers without structured replies.
  ...(
    [
      ['nbdkit --no-sr', 'nosr', true],
      ['setRequestStructuredReplies(false)', 'pattern64k', false],
    ] as const
  ).flatMap(([label, server, sr]): Scenario[] => [
    ...(['aio', 'sync'] as const).map(
      (mode): Scenario => ({
        name: `${label} (${mode}): one READ_DATA chunk`,
        server,
        sr,
        mode,
        count: 8192,
        offset: 4096,
        completion: mode === 'aio' ? {} : undefined,
        check: (t) => expect(statuses(t)).toEqual([[4096, READ_DATA, 8192]]),
      }),
    ),
    ...(['aio', 'sync'] as const).map(
      (mode): Scenario => ({
        name: `${label} (${mode}): DF is EINVAL`,
        server,
        sr,
        mode,
        count: 512,
        offset: 0,
        flags: CMD_FLAG_DF,
        completion: mode === 'aio' ? {} : undefined,
        check: (t) => expect(mode === 'aio' ? t.issue : t.result).toBe(EINVAL),
      }),
    ),
    {
      name: `${label}: the single chunk fails`,
      server,
      sr,
      mode: 'aio',
      count: 512,
      offset: 0,
      chunk: [{ set: ENETDOWN, fail: 'raise' }],
      completion: {},
      followup: true,
      check: (t) => expect(t.result).toBe(ENETDOWN),
    },
  ]),

  // Server errors (nbdkit error filter).
  {
    name: 'server EIO (aio): no chunk, completion sees EIO',
    server: 'error',
    mode: 'aio',
    count: 4096,
    offset: 0,
    completion: {},
    check: (t) => expect([t.chunks, t.completion, t.result]).toEqual([[], [EIO], EIO]),
  },
  {
    name: 'server EIO (sync)',
    server: 'error',
    mode: 'sync',
    count: 4096,
    offset: 0,
    check: (t) => expect(t.result).toBe(EIO),
  },
  {
    name: 'server EIO, completion fails with ENOMEM -> ENOMEM',
    server: 'error',
    mode: 'aio',
    count: 4096,
    offset: 0,
    completion: { set: ENOMEM, fail: 'raise' },
    check: (t) => expect(t.result).toBe(ENOMEM),
  },
  {
    name: 'server EIO, completion fails with 0 -> EIO',
    server: 'error',
    mode: 'aio',
    count: 4096,
    offset: 0,
    completion: { set: 0, fail: 'return' },
    check: (t) => expect(t.result).toBe(EIO),
  },
];

// ------------------------------------------------------------------ the tests

describe("traces equal libnbd's Python binding", () => {
  const sockets = {} as Record<ServerName, string>;
  let python: Trace[];

  beforeAll(async () => {
    const file = sparseFile(12288, [[0, 4096], [8192, 4096]], 1);
    const [qemu, p512, p64k, nosr, error] = await Promise.all([
      startQemuNbd(file, '-e', '8'),
      startNbdkit('pattern', 'size=512'),
      startNbdkit('pattern', 'size=64K'),
      startNbdkit('--no-sr', 'pattern', 'size=64K'),
      startNbdkit('--log=null', '--filter=error', 'pattern', 'size=64K', 'error-pread=EIO', 'error-pread-rate=1'),
    ]);
    Object.assign(sockets, { qemu: qemu.socket, pattern512: p512.socket, pattern64k: p64k.socket, nosr: nosr.socket, error: error.socket });
    python = await pythonTraces(SCENARIOS.map((sc) => ({ ...sc, socket: sockets[sc.server] })));
    expect(python).toHaveLength(SCENARIOS.length);
  });

  test.each(SCENARIOS.map((sc, i) => [sc.name, i] as const))('%s', async (_name, i) => {
    const sc = SCENARIOS[i];
    const ref = python[i];
    sc.check?.(ref);
    const ours = await runJs({ ...sc, socket: sockets[sc.server] });
    expect(ours).toEqual(ref);
  });
});
