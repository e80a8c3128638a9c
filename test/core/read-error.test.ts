// READ_ERROR chunks and chunk-callback failures (docs/architecture.md,
// "Where libnbd's rules live"), plain NBD_REPLY_TYPE_ERROR, and the short
// structured read, against a
// scripted server (no real server sends NBD_REPLY_TYPE_ERROR_OFFSET). Every
// scenario runs through this binding and through libnbd's Python binding
// against the same server; the traces must be equal, and equal to the rule.
import { constants } from 'node:os';
import { READ_DATA, READ_ERROR, READ_HOLE, getVersion } from '../../lib';
import { handle } from '../helpers/servers';
import { runPython } from '../helpers/python';
import { errnoOf } from '../helpers/outcome';
import { NBD_EIO, NBD_ENOSPC } from '../helpers/nbd-wire';
import { scriptedData, startScriptedServer, type ReadScript } from '../helpers/scripted-server';

const { EINVAL, EIO, ENOMEM, ENOSPC, EPROTO } = constants.errno;

/** What a callback does: set error.value, then throw or return `ret` (default 0). */
interface Act {
  set?: number;
  ret?: number;
  throw?: boolean;
}

/** [offset, status, count, error.value on entry] */
type ChunkCall = [number, number, number, number];

interface Trace {
  /** aioPreadStructured: chunk calls, completion's error.value on entry, aioCommandCompleted's errno. */
  aio: { chunks: ChunkCall[]; completion: number[]; errno: number };
  /** preadStructured (Python: the synchronous pread_structured): chunk calls and the errno it fails with. */
  sync: { chunks: ChunkCall[]; errno: number };
}

interface Scenario {
  count: number;
  offset: number;
  /** Per chunk call, by index; missing means return 0. */
  chunk?: (Act | null)[];
  completion?: Act;
}

const PYTHON = String.raw`
import sys, json, nbd
sock, spec = sys.argv[1], json.loads(sys.argv[2])
acts = spec.get('chunk') or []

def act(a, err, what):
    a = a or {}
    if 'set' in a:
        err.value = a['set']
    if a.get('throw'):
        raise RuntimeError(what + ' fails on purpose')
    return a.get('ret', 0)

def make_chunk(calls):
    def chunk(subbuf, offset, status, err):
        i = len(calls)
        calls.append([offset, status, len(subbuf), err.value])
        return act(acts[i] if i < len(acts) else None, err, 'chunk %d' % i)
    return chunk

h = nbd.NBD()
h.connect_unix(sock)
out = {}

calls, comp = [], []
def completion(err):
    comp.append(err.value)
    return act(spec.get('completion'), err, 'completion')
buf = nbd.Buffer(spec['count'])
cookie = h.aio_pread_structured(buf, spec['offset'], make_chunk(calls), completion)
while True:
    try:
        if h.aio_command_completed(cookie):
            errno = 0
            break
    except nbd.Error as e:
        errno = e.errnum
        break
    h.poll(-1)
out['aio'] = {'chunks': calls, 'completion': comp, 'errno': errno}

calls = []
try:
    h.pread_structured(spec['count'], spec['offset'], make_chunk(calls))
    errno = 0
except nbd.Error as e:
    errno = e.errnum
out['sync'] = {'chunks': calls, 'errno': errno}

h.shutdown()
print(json.dumps(out))
`;

function pythonTrace(socket: string, s: Scenario): Promise<Trace> {
  return runPython<Trace>(PYTHON, { args: [socket, JSON.stringify(s)], timeoutMs: 20000 });
}

/** Where each chunk's subbuf lies in the caller's buffer: [byteOffset - buf.byteOffset, same ArrayBuffer]. */
type Placement = [number, boolean];

function act(a: Act | null | undefined, error: { value: number }, what: string): unknown {
  if (!a) return 0;
  if (a.set !== undefined) error.value = a.set;
  if (a.throw) throw new Error(`${what} fails on purpose`);
  return a.ret ?? 0;
}

async function runJs(socket: string, s: Scenario): Promise<{ trace: Trace; placements: Placement[]; data: Buffer }> {
  const h = handle();
  await h.connectUnix(socket);
  const acts = s.chunk ?? [];
  const placements: Placement[] = [];
  const chunkFn =
    (calls: ChunkCall[], buf: Buffer) =>
    (subbuf: Uint8Array, offset: number, status: number, error: { value: number }): unknown => {
      const i = calls.length;
      calls.push([offset, status, subbuf.length, error.value]);
      placements.push([subbuf.byteOffset - buf.byteOffset, subbuf.buffer === buf.buffer]);
      return act(acts[i], error, `chunk ${i}`);
    };

  const aioCalls: ChunkCall[] = [];
  const comp: number[] = [];
  const buf = Buffer.alloc(s.count, 0xee);
  let cookie = 0;
  await new Promise<void>((resolve) => {
    cookie = h.aioPreadStructured(buf, s.offset, chunkFn(aioCalls, buf), (error) => {
      comp.push(error.value);
      try {
        return act(s.completion, error, 'completion');
      } finally {
        resolve();
      }
    });
  });
  let aioErrno = 0;
  try {
    expect(h.aioCommandCompleted(cookie)).toBe(true);
  } catch (e) {
    aioErrno = errnoOf(e);
  }
  expect(h.aioCommandCompleted(cookie)).toBe(false); // retired either way

  const syncCalls: ChunkCall[] = [];
  const buf2 = Buffer.alloc(s.count);
  let syncErrno = 0;
  try {
    await h.preadStructured(buf2, s.offset, chunkFn(syncCalls, buf2));
  } catch (e) {
    syncErrno = errnoOf(e);
  }
  await h.shutdown();
  h.close();
  return {
    trace: { aio: { chunks: aioCalls, completion: comp, errno: aioErrno }, sync: { chunks: syncCalls, errno: syncErrno } },
    placements,
    data: buf,
  };
}

/** Runs `scenario` against `script` through both bindings; returns the JS trace after checking Python agrees. */
async function both(script: ReadScript, scenario: Scenario) {
  const server = await startScriptedServer(script);
  const [js, py] = await Promise.all([runJs(server.socket, scenario), pythonTrace(server.socket, scenario)]);
  await server.close();
  expect(js.trace).toEqual(py);
  return js;
}

// DATA 0-512, ERROR_OFFSET at 512, DATA 1024-2048, on a 2048-byte read at 0.
const errorInTheMiddle: ReadScript = () => [
  { type: 'data', offset: 0, length: 512 },
  { type: 'error_offset', errno: NBD_EIO, offset: 512, message: 'bad sector' },
  { type: 'data', offset: 1024, length: 1024 },
];

/**
 * The trace of `errorInTheMiddle` when the command's error ends up `final`:
 * the READ_ERROR chunk always sees its own errno (EIO), the DATA chunk after
 * it and the completion see the command's error.
 */
function middleTrace(final: number): Trace {
  const chunks: ChunkCall[] = [
    [0, READ_DATA, 512, 0],
    [512, READ_ERROR, 0, EIO],
    [1024, READ_DATA, 1024, final],
  ];
  return { aio: { chunks, completion: [final], errno: final }, sync: { chunks, errno: final } };
}

describe('READ_ERROR chunks (NBD_REPLY_TYPE_ERROR_OFFSET): libnbd\'s READ_ERROR rule', () => {
  test('count 0 at the error offset, its own errno on entry; the command fails even if every callback returns 0', async () => {
    const js = await both(errorInTheMiddle, { count: 2048, offset: 0 });
    expect(js.trace).toEqual(middleTrace(EIO));
    // subbuf of the READ_ERROR chunk is buf + 512 (count 0); DATA chunks point into buf too.
    expect(js.placements.slice(0, 3)).toEqual([
      [0, true],
      [512, true],
      [1024, true],
    ]);
    expect(js.data.subarray(0, 512).equals(scriptedData(0, 512))).toBe(true);
    expect(js.data.subarray(1024).equals(scriptedData(1024, 1024))).toBe(true);
  });

  test('the READ_ERROR callback returning -1 with ENOMEM, nothing recorded before: the command fails ENOMEM', async () => {
    const js = await both(errorInTheMiddle, { count: 2048, offset: 0, chunk: [null, { set: ENOMEM, ret: -1 }] });
    expect(js.trace).toEqual(middleTrace(ENOMEM));
  });

  test('a throw is -1: the READ_ERROR callback setting ENOMEM and throwing fails the command ENOMEM', async () => {
    const js = await both(errorInTheMiddle, { count: 2048, offset: 0, chunk: [null, { set: ENOMEM, throw: true }] });
    expect(js.trace).toEqual(middleTrace(ENOMEM));
  });

  test('the READ_ERROR callback returning -1 with error.value 0: the server errno', async () => {
    const js = await both(errorInTheMiddle, { count: 2048, offset: 0, chunk: [null, { set: 0, ret: -1 }] });
    expect(js.trace).toEqual(middleTrace(EIO));
  });

  test('the READ_ERROR callback setting ENOMEM but returning 1 or -2: ignored, the server errno', async () => {
    for (const ret of [1, -2]) {
      const js = await both(errorInTheMiddle, { count: 2048, offset: 0, chunk: [null, { set: ENOMEM, ret }] });
      expect(js.trace).toEqual(middleTrace(EIO));
    }
  });

  test('an earlier DATA callback failed EPROTO: READ_ERROR still sees EIO on entry, the final error stays EPROTO', async () => {
    const js = await both(errorInTheMiddle, { count: 2048, offset: 0, chunk: [{ set: EPROTO, ret: -1 }, { set: ENOMEM, ret: -1 }] });
    expect(js.trace).toEqual(middleTrace(EPROTO));
  });

  test('an earlier DATA callback returning -1 with error.value 0 records EPROTO; READ_ERROR sees EIO', async () => {
    const js = await both(errorInTheMiddle, { count: 2048, offset: 0, chunk: [{ ret: -1 }] });
    expect(js.trace).toEqual(middleTrace(EPROTO));
  });

  test('two READ_ERROR chunks: each sees its own errno on entry, the first one is the command error', async () => {
    const script: ReadScript = (offset) => [
      { type: 'error_offset', errno: NBD_EIO, offset: offset + 1024 },
      { type: 'hole', offset, length: 1024 },
      { type: 'error_offset', errno: NBD_ENOSPC, offset: offset + 4095, message: 'full' },
    ];
    const js = await both(script, { count: 4096, offset: 8192 });
    const chunks: ChunkCall[] = [
      [9216, READ_ERROR, 0, EIO],
      [8192, READ_HOLE, 1024, EIO],
      [12287, READ_ERROR, 0, ENOSPC],
    ];
    expect(js.trace).toEqual({ aio: { chunks, completion: [EIO], errno: EIO }, sync: { chunks, errno: EIO } });
    expect(js.placements.slice(0, 3)).toEqual([
      [1024, true],
      [0, true],
      [4095, true],
    ]);
  });
});

describe('plain NBD_REPLY_TYPE_ERROR and short reads', () => {
  test('a plain ERROR reply: no chunk call, the completion sees EIO', async () => {
    const js = await both(() => [{ type: 'error', errno: NBD_EIO, message: 'no' }], { count: 2048, offset: 0 });
    expect(js.trace).toEqual({ aio: { chunks: [], completion: [EIO], errno: EIO }, sync: { chunks: [], errno: EIO } });
  });

  test('DATA then a plain ERROR: the DATA chunk only, with 0 on entry; the command fails EIO', async () => {
    const script: ReadScript = () => [
      { type: 'data', offset: 0, length: 1024 },
      { type: 'error', errno: NBD_EIO },
    ];
    const js = await both(script, { count: 2048, offset: 0 });
    const chunks: ChunkCall[] = [[0, READ_DATA, 1024, 0]];
    expect(js.trace).toEqual({ aio: { chunks, completion: [EIO], errno: EIO }, sync: { chunks, errno: EIO } });
  });

  test('a short read: the completion sees 0, aioCommandCompleted and preadStructured fail (EIO on 1.14, EPROTO on 1.16+)', async () => {
    const [major, minor] = getVersion().split('.').map(Number);
    const expected = major > 1 || minor >= 16 ? EPROTO : EIO;
    const js = await both((offset, length) => [{ type: 'data', offset, length: length / 2 }], { count: 2048, offset: 4096 });
    const chunks: ChunkCall[] = [[4096, READ_DATA, 1024, 0]];
    expect(js.trace).toEqual({ aio: { chunks, completion: [0], errno: expected }, sync: { chunks, errno: expected } });
  });
});

describe('server errors the chunk callback never sees', () => {
  // A plain ERROR chunk without DONE records the server's errno (no chunk
  // call); a later READ_ERROR chunk then finds an error recorded before it,
  // so neither its own errno nor its callback's -1 may become the command's
  // error. The facade only learns of libnbd's recorded error from DATA/HOLE
  // entries and the completion, never from a READ_ERROR event (whose error is
  // the chunk's own errno), so it must not decide at the READ_ERROR event.
  const script: ReadScript = () => [
    { type: 'error', errno: NBD_EIO, message: 'first' },
    { type: 'error_offset', errno: NBD_ENOSPC, offset: 512 },
    { type: 'data', offset: 1024, length: 1024 },
  ];
  const trace = (): Trace => {
    const chunks: ChunkCall[] = [
      [512, READ_ERROR, 0, ENOSPC],
      [1024, READ_DATA, 1024, EIO],
    ];
    return { aio: { chunks, completion: [EIO], errno: EIO }, sync: { chunks, errno: EIO } };
  };

  test('a plain ERROR (not DONE), then READ_ERROR whose callback returns 0: the first (plain) error wins', async () => {
    const js = await both(script, { count: 2048, offset: 0 });
    expect(js.trace).toEqual(trace());
  });

  test('a plain ERROR (not DONE), then READ_ERROR whose callback fails ENOMEM: the first (plain) error wins', async () => {
    const js = await both(script, { count: 2048, offset: 0, chunk: [{ set: ENOMEM, ret: -1 }] });
    expect(js.trace).toEqual(trace());
  });

  test('the same with equal errnos (plain EIO, then READ_ERROR EIO whose callback fails ENOMEM): EIO', async () => {
    const same: ReadScript = () => [
      { type: 'error', errno: NBD_EIO },
      { type: 'error_offset', errno: NBD_EIO, offset: 512 },
    ];
    const js = await both(same, { count: 2048, offset: 0, chunk: [{ set: ENOMEM, ret: -1 }] });
    const chunks: ChunkCall[] = [[512, READ_ERROR, 0, EIO]];
    expect(js.trace).toEqual({ aio: { chunks, completion: [EIO], errno: EIO }, sync: { chunks, errno: EIO } });
  });

});

describe('server errnos libnbd maps', () => {
  test('ERROR_OFFSET with NBD errno 0 or an unknown errno: the READ_ERROR chunk sees the mapped errno', async () => {
    const [major, minor] = getVersion().split('.').map(Number);
    const zero = major > 1 || minor >= 16 ? EPROTO : EINVAL; // research §1.2
    for (const [sent, mapped] of [[0, zero], [999, EINVAL], [NBD_ENOSPC, ENOSPC]]) {
      const js = await both(() => [{ type: 'error_offset', errno: sent, offset: 512 }], {
        count: 2048,
        offset: 0,
        chunk: [{ set: 0, ret: -1 }],
      });
      const chunks: ChunkCall[] = [[512, READ_ERROR, 0, mapped]];
      expect(js.trace).toEqual({ aio: { chunks, completion: [mapped], errno: mapped }, sync: { chunks, errno: mapped } });
    }
  });
});
