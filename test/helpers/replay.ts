// Replays one scenario of libnbd calls twice, through libnbd's Python
// binding and through this binding, one step after the other, and records
// what each step ended with and every call of the callbacks passed, in the
// same shape on both sides, so that a test compares the two traces whole.
//
// A step is [python_name, ...args]: the call's name as the Python binding
// spells it (the JS method is its camelCase), with JSON arguments, or one
// of these markers in place of an argument:
//   { $nbdkit: [...] }     argv of `nbdkit -s --exit-with-parent ...` (its stderr kept)
//   { $fn: KIND, ... }     a callback that records its calls (KIND: chunk, completion,
//                          extent, extent64, list, context, debug); `set` sets error.value,
//                          `ret` is what it returns
//   { $read: N }           a buffer of N bytes read into: Python's count (an nbd.Buffer in
//                          aio calls), a Buffer here; the step's value is then the sha1 of
//                          what was read
//   { $write: N, fill }    N bytes of `fill` to write
//   { $u64: 'max' }        2**64 - 1 (C's -1 as an offset)
//   { $cookie: i }         the value step i returned (its cookie)
// Pseudo-steps: ['$wait', i] waits for the aio command of step i
// (aio_command_completed until it is not false: C's polling loop);
// ['$buffer', i] is the sha1 of the buffer of step i; ['$touch', path] and
// ['$unlink', path] create and remove a file (a witness a server script
// waits on); ['$sleep', ms] sleeps; ['$until', name] calls `name` (a state
// query) until it is true, C's polling loop (nbd_poll between tries);
// ['$drain'] polls until aio_in_flight is 0 (a poll that fails, on a
// connection that died, is C's loop going on); ['$dead_or_closed'] polls
// until aio_is_dead() || aio_is_closed() (which one a killed server leaves
// is a race), for at most 5 s, and says whether it got there; ['$settle']
// polls while aio_is_connecting() (an aio option or connect in progress).
//
// Each step's outcome is ['ok', value], ['err', errno name, message], or
// ['missing'] when the installed libnbd lacks the call (Python has no such
// method; here it fails ENOTSUP, "function missing").
import { createHash } from 'node:crypto';
import { unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { Handle, NbdError, type HandleOptions } from '../../lib';
import { asJson } from './outcome';
import { runPython } from './python';
import { withKeptStderr } from './output';
import { sleep } from './wait';

export type Step = [string, ...unknown[]];
export type StepOutcome = ['ok', unknown] | ['err', string, string] | ['missing'];
/** [step index, callback kind, ...what it was called with] */
export type CallRecord = [number, string, ...unknown[]];

export interface Trace {
  outcomes: StepOutcome[];
  calls: CallRecord[];
}

/** argv of `nbdkit -s --exit-with-parent ARGS`, its stderr kept with the other servers'. */
export function nbdkitArgv(...args: string[]): string[] {
  return withKeptStderr(['nbdkit', '-s', '--exit-with-parent', ...args]);
}

/** The JS name of a Python binding's method: opt_list_meta_context -> optListMetaContext. */
export function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const sha1 = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');

// ------------------------------------------------------------------ Python side

const PYTHON = String.raw`
import errno, hashlib, json, os, sys, time
import nbd

steps = json.load(sys.stdin)
h = nbd.NBD()
outcomes = []
calls = []
buffers = {}

def sha1(b):
    return hashlib.sha1(bytes(b)).hexdigest()

def plain(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {'sha1': sha1(v)}
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v

def act(spec, err):
    if 'set' in spec and err is not None:
        err.value = spec['set']
    return spec.get('ret', 0)

def make_fn(i, spec):
    kind = spec['$fn']
    if kind == 'chunk':
        def f(buf, offset, status, err):
            calls.append([i, kind, offset, status, len(buf), err.value, sha1(buf)])
            return act(spec, err)
    elif kind == 'completion':
        def f(err):
            calls.append([i, kind, err.value])
            return act(spec, err)
    elif kind == 'extent':
        def f(meta, offset, entries, err):
            calls.append([i, kind, meta, offset, list(entries), err.value])
            return act(spec, err)
    elif kind == 'extent64':
        def f(meta, offset, entries, err):
            calls.append([i, kind, meta, offset, [list(e) for e in entries], err.value])
            return act(spec, err)
    elif kind == 'list':
        def f(name, desc):
            calls.append([i, kind, name, desc])
            return act(spec, None)
    elif kind == 'context':
        def f(name):
            calls.append([i, kind, name])
            return act(spec, None)
    elif kind == 'debug':
        def f(context, msg):
            calls.append([i, kind, context, msg])
            return 0
    else:
        raise Exception('unknown callback kind ' + kind)
    return f

def arg(i, a, aio):
    if isinstance(a, dict):
        if '$fn' in a:
            return make_fn(i, a)
        if '$read' in a:
            if aio:
                buffers[i] = nbd.Buffer(a['$read'])
                return buffers[i]
            return a['$read']
        if '$write' in a:
            b = bytearray([a.get('fill', 0)]) * a['$write']
            if aio:
                buffers[i] = nbd.Buffer.from_bytearray(b)
                return buffers[i]
            return b
        if '$u64' in a:
            return 2**64 - 1
        if '$cookie' in a:
            return outcomes[a['$cookie']][1]
        if '$nbdkit' in a:
            return a['$nbdkit']
    return a

def run(i, step):
    name = step[0]
    if name == '$wait':
        if outcomes[step[1]][0] != 'ok':
            return 'no command to wait for'
        cookie = outcomes[step[1]][1]
        deadline = time.time() + 20
        while not h.aio_command_completed(cookie):
            if time.time() > deadline:
                raise Exception('timed out waiting for the command of step %d' % step[1])
            h.poll(1000)
        return True
    if name == '$buffer':
        return {'sha1': sha1(buffers[step[1]].to_bytearray())}
    if name == '$touch':
        open(step[1], 'w').close()
        return None
    if name == '$unlink':
        os.unlink(step[1])
        return None
    if name == '$until':
        deadline = time.time() + 20
        while not getattr(h, step[1])():
            if time.time() > deadline:
                raise Exception('timed out waiting for %s' % step[1])
            h.poll(1000)
        return True
    if name == '$drain':
        deadline = time.time() + 20
        while h.aio_in_flight() > 0:
            if time.time() > deadline:
                raise Exception('timed out waiting for the commands in flight')
            try:
                h.poll(1000)
            except nbd.Error:
                pass
        return True
    if name == '$settle':
        deadline = time.time() + 20
        while h.aio_is_connecting():
            if time.time() > deadline:
                raise Exception('timed out waiting for the option to end')
            h.poll(1000)
        return True
    if name == '$dead_or_closed':
        deadline = time.time() + 5
        while not (h.aio_is_dead() or h.aio_is_closed()):
            if time.time() > deadline:
                return False
            try:
                h.poll(100)
            except nbd.Error:
                pass
        return True
    if name == '$sleep':
        time.sleep(step[1] / 1000)
        return None
    if not hasattr(h, name):
        raise AttributeError(name)
    aio = name.startswith('aio_')
    args = [arg(i, a, aio) for a in step[1:]]
    return plain(getattr(h, name)(*args))

for i, step in enumerate(steps):
    try:
        outcomes.append(['ok', run(i, step)])
    except AttributeError:
        outcomes.append(['missing'])
    except nbd.Error as e:
        outcomes.append(['err', errno.errorcode.get(e.errnum, 'E%d' % e.errnum) if e.errnum else 'UNKNOWN', e.string])
if hasattr(h, 'close'):
    h.close()  # libnbd >= 1.16; before, the handle closes when collected
del h
print(json.dumps({'outcomes': outcomes, 'calls': calls}))
`;

/** The scenario run through libnbd's Python binding. */
export function replayPython(steps: Step[]): Promise<Trace> {
  return runPython<Trace>(PYTHON, { input: resolveMarkers(steps), timeoutMs: 60000 });
}

/** { $nbdkit } resolved to its argv on both sides alike. */
function resolveMarkers(steps: Step[]): Step[] {
  return steps.map((s) => s.map((a) => (isMarker(a, '$nbdkit') ? nbdkitArgv(...(a.$nbdkit as string[])) : a)) as Step);
}

function isMarker(a: unknown, key: string): a is Record<string, unknown> {
  return typeof a === 'object' && a !== null && !Array.isArray(a) && key in a;
}

// ------------------------------------------------------------------ this binding

function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { sha1: sha1(v) };
  if (typeof v === 'bigint') return Number(v);
  if (v === undefined) return null;
  return asJson(v);
}

function isMissing(e: NbdError): boolean {
  return e.code === 'ENOTSUP' && /function missing/.test(e.message);
}

/** The scenario run through this binding on `h` (a new Handle when not given; closed at the end). */
export async function replayJs(steps: Step[], options: { handle?: Handle; handleOptions?: HandleOptions } = {}): Promise<Trace> {
  const h = options.handle ?? new Handle(options.handleOptions);
  const outcomes: StepOutcome[] = [];
  const calls: CallRecord[] = [];
  const buffers = new Map<number, Uint8Array>();
  const act = (spec: Record<string, unknown>, err?: { value: number }) => {
    if ('set' in spec && err !== undefined) err.value = spec.set as number;
    return (spec.ret as number | undefined) ?? 0;
  };
  const makeFn = (i: number, spec: Record<string, unknown>) => {
    const kind = spec.$fn as string;
    switch (kind) {
      case 'chunk':
        return (buf: Uint8Array, offset: number, status: number, err: { value: number }) => {
          calls.push([i, kind, Number(offset), status, buf.byteLength, err.value, sha1(buf)]);
          return act(spec, err);
        };
      case 'completion':
        return (err: { value: number }) => {
          calls.push([i, kind, err.value]);
          return act(spec, err);
        };
      case 'extent':
        return (meta: string, offset: number, entries: Uint32Array, err: { value: number }) => {
          calls.push([i, kind, meta, Number(offset), Array.from(entries), err.value]);
          return act(spec, err);
        };
      case 'extent64':
        return (meta: string, offset: number, entries: BigUint64Array, err: { value: number }) => {
          const pairs: number[][] = [];
          for (let k = 0; k < entries.length; k += 2) pairs.push([Number(entries[k]), Number(entries[k + 1])]);
          calls.push([i, kind, meta, Number(offset), pairs, err.value]);
          return act(spec, err);
        };
      case 'list':
        return (name: string, desc: string) => {
          calls.push([i, kind, name, desc]);
          return act(spec);
        };
      case 'context':
        return (name: string) => {
          calls.push([i, kind, name]);
          return act(spec);
        };
      case 'debug':
        return (context: string, msg: string) => {
          calls.push([i, kind, context, msg]);
          return 0;
        };
      default:
        throw new Error(`unknown callback kind ${kind}`);
    }
  };
  const arg = (i: number, a: unknown): unknown => {
    if (isMarker(a, '$fn')) return makeFn(i, a);
    if (isMarker(a, '$read')) {
      const b = Buffer.alloc(a.$read as number);
      buffers.set(i, b);
      return b;
    }
    if (isMarker(a, '$write')) {
      const b = Buffer.alloc(a.$write as number, (a.fill as number | undefined) ?? 0);
      buffers.set(i, b);
      return b;
    }
    if (isMarker(a, '$u64')) return 2n ** 64n - 1n;
    if (isMarker(a, '$cookie')) return (outcomes[a.$cookie as number] as ['ok', number])[1];
    return a;
  };
  const run = async (i: number, step: Step): Promise<unknown> => {
    const [name, ...rest] = step;
    if (name === '$wait') {
      if (outcomes[rest[0] as number][0] !== 'ok') return 'no command to wait for';
      const cookie = (outcomes[rest[0] as number] as ['ok', number])[1];
      const until = Date.now() + 20000;
      while (!h.aioCommandCompleted(cookie)) {
        if (Date.now() > until) throw new Error(`timed out waiting for the command of step ${String(rest[0])}`);
        await sleep(1);
      }
      return true;
    }
    if (name === '$buffer') return { sha1: sha1(buffers.get(rest[0] as number)!) };
    if (name === '$until') {
      const query = (h as unknown as Record<string, () => boolean>)[camel(rest[0] as string)];
      const until = Date.now() + 20000;
      while (!query.call(h)) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${String(rest[0])}`);
        await sleep(1);
      }
      return true;
    }
    if (name === '$drain') {
      const until = Date.now() + 20000;
      while (h.aioInFlight() > 0) {
        if (Date.now() > until) throw new Error('timed out waiting for the commands in flight');
        await sleep(1);
      }
      return true;
    }
    if (name === '$settle') {
      const until = Date.now() + 20000;
      while (h.aioIsConnecting()) {
        if (Date.now() > until) throw new Error('timed out waiting for the option to end');
        await sleep(1);
      }
      return true;
    }
    if (name === '$dead_or_closed') {
      const until = Date.now() + 5000;
      while (!(h.aioIsDead() || h.aioIsClosed())) {
        if (Date.now() > until) return false;
        await sleep(1);
      }
      return true;
    }
    if (name === '$touch') return writeFileSync(rest[0] as string, ''), null;
    if (name === '$unlink') return unlinkSync(rest[0] as string), null;
    if (name === '$sleep') return await sleep(rest[0] as number), null;
    const method = (h as unknown as Record<string, unknown>)[camel(name)];
    if (typeof method !== 'function') throw new Error(`Handle has no method ${camel(name)} (libnbd's ${name})`);
    const args = rest.map((a) => arg(i, a));
    const value = await (method as (...a: unknown[]) => unknown).apply(h, args);
    // A sync read's value is the data read, as Python's pread returns it.
    const readArg = rest.findIndex((a) => isMarker(a, '$read'));
    if (readArg !== -1 && !name.startsWith('aio_')) return { sha1: sha1(args[readArg] as Uint8Array) };
    return plain(value);
  };
  try {
    for (const [i, step] of resolveMarkers(steps).entries()) {
      try {
        outcomes.push(['ok', await run(i, step)]);
      } catch (e) {
        if (!(e instanceof NbdError)) throw e;
        outcomes.push(isMissing(e) ? ['missing'] : ['err', e.code, e.message]);
      }
    }
  } finally {
    if (options.handle === undefined) h.close();
  }
  return { outcomes, calls };
}

/** Both traces of a scenario: this binding's and libnbd's (Python's), run one after the other. */
export async function replayBoth(steps: Step[], options: { handleOptions?: HandleOptions } = {}): Promise<{ js: Trace; py: Trace }> {
  const py = await replayPython(steps);
  const js = await replayJs(steps, options);
  return { js, py };
}

/** Step i's outcome paired with the step, so that a failing comparison names the call. */
export function labelled(steps: Step[], t: Trace): unknown[] {
  return t.outcomes.map((o, i) => [JSON.stringify(steps[i]).slice(0, 120), o]);
}

/**
 * Runs the scenario through both, expects the same outcomes (values, errno
 * names, messages) and the same callback calls, and returns this binding's
 * trace.
 */
export async function expectSameAsLibnbd(steps: Step[], options: { handleOptions?: HandleOptions } = {}): Promise<Trace> {
  const { js, py } = await replayBoth(steps, options);
  expect(labelled(steps, js)).toEqual(labelled(steps, py));
  expect(js.calls).toEqual(py.calls);
  return js;
}

/** An outcome without its message: ['ok', value] or ['err', code]. */
export function short(o: StepOutcome): unknown[] {
  return o[0] === 'err' ? o.slice(0, 2) : o;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick, the probe closed). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
