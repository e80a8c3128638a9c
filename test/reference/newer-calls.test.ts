// The calls libnbd added after 1.14, run for real on the libnbd installed
// (1.22 on Debian 13, where every key of `have` is true) and compared with
// libnbd's Python binding of the same libnbd on the same servers, so that a
// call that does not work fails here on the leg that has it. Where the
// installed libnbd lacks a call, it fails ENOTSUP naming the C function.
// Extended headers and filtered block status need qemu-nbd >= 8.2 (nbdkit
// 1.42 does not offer them): qemu-nbd 10 on Debian 13.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CMD_FLAG_PAYLOAD_LEN, CMD_FLAG_REQ_ONE, STRICT_ALIGN, STRICT_PAYLOAD, have } from '../../lib';
import * as libnbd from '../../lib';
import { asJson, failure, outcome, python } from '../helpers/outcome';
import { handle, nbdkit, sparseFile, startQemuNbd, tempDir } from '../helpers/servers';
import { commandOutput } from '../helpers/io';

/** Python's method name of a call: libnbd's snake_case. */
const snake = (name: string) => name.replace(/[A-Z0-9]+/g, (m) => `_${m.toLowerCase()}`);

/** Each key of `have` in turn: true exactly where libnbd's Python binding of the installed libnbd has the call. */
test('`have` says what libnbd\'s own Python binding of the installed libnbd has', async () => {
  const keys = Object.keys(have);
  const py: boolean[] = await python(
    'print(json.dumps([hasattr(nbd.NBD, name) for name in sys.argv[1:]]))',
    ...keys.map(snake),
  );
  expect(Object.fromEntries(keys.map((k) => [k, (have as unknown as Record<string, boolean>)[k]]))).toEqual(
    Object.fromEntries(keys.map((k, i) => [k, py[i]])),
  );
});

test('the constants are those of libnbd\'s Python binding of the installed libnbd: the same names, the same values', async () => {
  const py: Record<string, number | string> = await python(
    "print(json.dumps({k: getattr(nbd, k) for k in dir(nbd) if k.isupper() and k != 'NBD'}))",
  );
  const exported = (k: string) => (libnbd as Record<string, unknown>)[k];
  const numeric = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => typeof v === 'number'));
  const ours = Object.fromEntries(Object.keys(libnbd).filter((k) => /^[A-Z][A-Z0-9_]+$/.test(k) && exported(k) !== undefined).map((k) => [k, exported(k)]));
  // Numeric constants: exactly the header's (members and masks).
  expect(numeric(ours)).toEqual(numeric(py));
  // String constants name protocol strings and are exported on every build:
  // each of libnbd's has its value.
  for (const [k, v] of Object.entries(py)) if (typeof v === 'string') expect([k, ours[k]]).toEqual([k, v]);
});

/** A call of the installed libnbd, or its ENOTSUP where the installed libnbd predates it. */
async function unlessMissing(key: keyof typeof have, cName: string, call: () => unknown, real: () => Promise<void>): Promise<void> {
  if (have[key]) {
    await real();
  } else {
    const e = await failure(call);
    expect([e.code, e.message.startsWith(`${cName}: `)]).toEqual(['ENOTSUP', true]);
  }
}

describe('option negotiation added in 1.16 and 1.18', () => {
  test('optStructuredReply, then again: true, then false (refused, still negotiating), as libnbd', async () => {
    const argv = nbdkit('null');
    const h = handle();
    h.setOptMode(true);
    h.setRequestStructuredReplies(false);
    await h.connectCommand(argv);
    await unlessMissing('optStructuredReply', 'nbd_opt_structured_reply', () => h.optStructuredReply(), async () => {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.set_request_structured_replies(False); h.connect_command(sys.argv[1:])
print(json.dumps([outcome(h.opt_structured_reply) for i in range(3)] + [h.aio_is_negotiating(), h.get_structured_replies_negotiated()]))`,
        ...argv,
      );
      const js = [];
      for (let i = 0; i < 3; i++) js.push(asJson(await outcome(() => h.optStructuredReply())));
      expect([...js, h.aioIsNegotiating(), h.getStructuredRepliesNegotiated()]).toEqual(py);
      expect(py.slice(0, 2)).toEqual([['ok', true], ['ok', false]]);
    });
  });

  test('optStarttls against a server without TLS: false (refused), as libnbd', async () => {
    const argv = nbdkit('null');
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(argv);
    await unlessMissing('optStarttls', 'nbd_opt_starttls', () => h.optStarttls(), async () => {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(sys.argv[1:])
print(json.dumps([outcome(h.opt_starttls), h.aio_is_negotiating(), h.get_tls_negotiated()]))`,
        ...argv,
      );
      expect([asJson(await outcome(() => h.optStarttls())), h.aioIsNegotiating(), h.getTlsNegotiated()]).toEqual(py);
      expect(py[0]).toEqual(['ok', false]);
    });
  });

  test('the aio forms run their completion callback once with libnbd\'s error, as Python\'s', async () => {
    const argv = nbdkit('null');
    const h = handle();
    h.setOptMode(true);
    h.setRequestStructuredReplies(false);
    await h.connectCommand(argv);
    await unlessMissing('aioOptStructuredReply', 'nbd_aio_opt_structured_reply', () => h.aioOptStructuredReply(), async () => {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.set_request_structured_replies(False); h.connect_command(sys.argv[1:])
seen = []
def done(err):
    seen.append(err.value)
    return 1
for call in (h.aio_opt_structured_reply, h.aio_opt_structured_reply, h.aio_opt_starttls):
    call(completion=done)
    while h.aio_is_connecting():
        h.poll(-1)
contexts = []
h.aio_opt_set_meta_context_queries(['base:'], lambda name: contexts.append(name), completion=done)
while h.aio_is_connecting():
    h.poll(-1)
h.aio_opt_list_meta_context_queries(['base:'], lambda name: contexts.append(name), completion=done)
while h.aio_is_connecting():
    h.poll(-1)
print(json.dumps([seen, contexts]))`,
        ...argv,
      );
      const seen: number[] = [];
      const contexts: string[] = [];
      const once = (call: (done: (err: { value: number }) => number) => void) =>
        new Promise<void>((resolve) =>
          call((err) => {
            seen.push(err.value);
            resolve();
            return 1;
          }),
        );
      await once((done) => h.aioOptStructuredReply(done));
      await once((done) => h.aioOptStructuredReply(done));
      await once((done) => h.aioOptStarttls(done));
      await once((done) => h.aioOptSetMetaContextQueries(['base:'], (name) => void contexts.push(name), done));
      await once((done) => h.aioOptListMetaContextQueries(['base:'], (name) => void contexts.push(name), done));
      expect([seen, contexts]).toEqual(py);
      expect(seen[0]).toBe(0);
    });
  });

  test('optSetMetaContext selects the requested contexts; setRequestMetaContext(false) keeps optGo from asking again', async () => {
    const argv = nbdkit('memory', 'size=1M');
    const h = handle();
    h.setOptMode(true);
    await h.connectCommand(argv);
    await unlessMissing('optSetMetaContext', 'nbd_opt_set_meta_context', () => h.optSetMetaContext(() => 0), async () => {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.connect_command(sys.argv[1:])
h.add_meta_context('base:allocation')
names = []
n = [h.opt_list_meta_context_queries(['base:'], lambda name: names.append(name)),
     h.opt_set_meta_context_queries(['nosuch:'], lambda name: names.append(name)),
     h.opt_set_meta_context(lambda name: names.append(name))]
h.set_request_meta_context(False)
h.opt_go()
print(json.dumps([n, names, h.get_request_meta_context(), h.can_meta_context('base:allocation')]))`,
        ...argv,
      );
      h.addMetaContext('base:allocation');
      const names: string[] = [];
      const n = [
        await h.optListMetaContextQueries(['base:'], (name) => void names.push(name)),
        await h.optSetMetaContextQueries(['nosuch:'], (name) => void names.push(name)),
      ];
      // The aio form of the last, its completion once with error 0.
      n.push(
        await new Promise<number>((resolve) => {
          let calls = 0;
          h.aioOptSetMetaContext(
            (name) => void (calls++, names.push(name)),
            (err) => (resolve(err.value === 0 ? calls : -err.value), 1),
          );
        }),
      );
      h.setRequestMetaContext(false);
      await h.optGo();
      expect([n, names, h.getRequestMetaContext(), h.canMetaContext('base:allocation')]).toEqual(py);
      expect(py[0]).toEqual([1, 0, 1]);
    });
  });
});

describe('extended headers and 64-bit block status (qemu-nbd)', () => {
  let file: string;
  const GIB = 2 ** 30;
  // Each server is shared: Python and nbdinfo connect while the handle is.
  // 6 GiB with data at 1 GiB and just past 5 GiB: a single 32-bit block
  // status cannot cover it.
  beforeAll(() => {
    file = sparseFile(6 * GIB, [
      [GIB, 65536],
      [5 * GIB + 4096, 65536],
    ]);
  });

  test('extended headers are requested by default and negotiated where qemu-nbd offers them, as libnbd reports', async () => {
    const server = await startQemuNbd(file, '--shared=3');
    const h = handle();
    await unlessMissing('getRequestExtendedHeaders', 'nbd_get_request_extended_headers', () => h.getRequestExtendedHeaders(), async () => {
      const py = await python(
        `
h = nbd.NBD(); r = h.get_request_extended_headers(); h.connect_uri(sys.argv[1])
print(json.dumps([r, h.get_extended_headers_negotiated(), h.get_structured_replies_negotiated()]))`,
        server.uri,
      );
      const requested = h.getRequestExtendedHeaders();
      await h.connectUri(server.uri);
      expect([requested, h.getExtendedHeadersNegotiated(), h.getStructuredRepliesNegotiated()]).toEqual(py);
    });
  });

  test('optExtendedHeaders in opt mode: true, then false, as libnbd', async () => {
    const server = await startQemuNbd(file, '--shared=3');
    const h = handle();
    h.setOptMode(true);
    await h.connectUri(server.uri);
    await unlessMissing('optExtendedHeaders', 'nbd_opt_extended_headers', () => h.optExtendedHeaders(), async () => {
      const py = await python(
        `
h = nbd.NBD(); h.set_opt_mode(True); h.set_request_extended_headers(False); h.connect_uri(sys.argv[1])
print(json.dumps([outcome(h.opt_extended_headers), outcome(h.opt_extended_headers), h.aio_is_negotiating()]))`,
        server.uri,
      );
      const fresh = handle();
      fresh.setOptMode(true);
      fresh.setRequestExtendedHeaders(false);
      await fresh.connectUri(server.uri);
      const js = [asJson(await outcome(() => fresh.optExtendedHeaders())), asJson(await outcome(() => fresh.optExtendedHeaders())), fresh.aioIsNegotiating()];
      expect(js).toEqual(py);
      // The aio form on a third handle: its completion once, with error 0 (accepted).
      const third = handle();
      third.setOptMode(true);
      third.setRequestExtendedHeaders(false);
      await third.connectUri(server.uri);
      const err = await new Promise<number>((resolve) => third.aioOptExtendedHeaders((e) => (resolve(e.value), 1)));
      expect([err, third.getExtendedHeadersNegotiated()]).toEqual([0, py[0][1]]);
    });
  });

  test('blockStatus64 and aioBlockStatus64 report the extents Python\'s block_status_64 reports, REQ_ONE included', async () => {
    const server = await startQemuNbd(file, '--shared=3');
    const h = handle();
    h.addMetaContext('base:allocation');
    await h.connectUri(server.uri);
    await unlessMissing('blockStatus64', 'nbd_block_status_64', () => h.blockStatus64(4096, 0, () => 0), async () => {
      const py = await python(
        `
h = nbd.NBD(); h.add_meta_context('base:allocation'); h.connect_uri(sys.argv[1])
out = []
def f(ctx, offset, entries, err):
    out.append([ctx, offset, [list(e) for e in entries], err.value])
h.block_status_64(h.get_size(), 0, f)
h.block_status_64(8192, ${GIB - 4096}, f, nbd.CMD_FLAG_REQ_ONE)
print(json.dumps(out))`,
        server.uri,
      );
      const out: unknown[] = [];
      const f = (ctx: string, offset: number, entries: BigUint64Array, err: { value: number }) => {
        const pairs: number[][] = [];
        for (let i = 0; i < entries.length; i += 2) pairs.push([Number(entries[i]), Number(entries[i + 1])]);
        out.push([ctx, offset, pairs, err.value]);
        return 0;
      };
      await h.blockStatus64(h.getSize(), 0, f);
      await new Promise<void>((resolve, reject) => {
        h.aioBlockStatus64(8192, GIB - 4096, f, (err) => {
          if (err.value !== 0) reject(new Error(`errno ${err.value}`));
          else resolve();
          return 1;
        }, CMD_FLAG_REQ_ONE);
      });
      expect(out).toEqual(py);
    });
  });

  test('extents() asks for the whole export in one 64-bit call when extended headers were negotiated, and equals nbdinfo --map', async () => {
    const server = await startQemuNbd(file, '--shared=3');
    const h = handle();
    h.addMetaContext('base:allocation');
    await h.connectUri(server.uri);
    const calls = { narrow: 0, wide: 0 };
    const narrow = h.blockStatus.bind(h);
    const wide = h.blockStatus64.bind(h);
    h.blockStatus = (...args: Parameters<typeof narrow>) => (calls.narrow++, narrow(...args));
    h.blockStatus64 = (...args: Parameters<typeof wide>) => (calls.wide++, wide(...args));
    const ours: [number, number, number][] = [];
    for await (const e of h.extents()) ours.push([e.offset, e.length, e.flags]);

    const negotiated = await python<boolean>(
      "h = nbd.NBD(); h.connect_uri(sys.argv[1]); print(json.dumps(hasattr(h, 'get_extended_headers_negotiated') and h.get_extended_headers_negotiated()))",
      server.uri,
    );
    expect(calls).toEqual(negotiated ? { narrow: 0, wide: 1 } : { narrow: 4, wide: 0 });

    const map = await new Promise<string>((resolve, reject) => {
      let out = '';
      const p = spawn('nbdinfo', ['--map', '--json', server.uri]);
      p.stdout.on('data', (d) => (out += d));
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`nbdinfo ${code}`))));
    });
    const theirs = (JSON.parse(map) as { offset: number; length: number; type: number }[]).map((e) => [e.offset, e.length, e.type]);
    expect(ours).toEqual(theirs);
  });
});

describe('filtered block status (qemu-nbd, extended headers)', () => {
  const contexts = ['base:allocation', 'qemu:allocation-depth', 'qemu:dirty-bitmap:bitmap0', 'qemu:dirty-bitmap:bitmap1'];
  let image: string;
  beforeAll(async () => {
    image = join(tempDir(), 'payload.qcow2');
    commandOutput('qemu-img', ['create', '-f', 'qcow2', image, '1M']);
    commandOutput('qemu-img', ['bitmap', '--add', '--enable', '-f', 'qcow2', image, 'bitmap0']);
    commandOutput('qemu-img', ['bitmap', '--add', '--enable', '-f', 'qcow2', image, 'bitmap1']);
  });
  const server = () => ['qemu-nbd', '-f', 'qcow2', '-A', '-B', 'bitmap0', '-B', 'bitmap1', image];

  test('canBlockStatusPayload and blockStatusFilter: the contexts visited and the errors are libnbd\'s interop test\'s, as Python sees them', async () => {
    const h = handle();
    for (const c of contexts) h.addMetaContext(c);
    await unlessMissing('blockStatusFilter', 'nbd_block_status_filter', () => h.blockStatusFilter(512, 0, ['base:allocation'], () => 0), async () => {
      // One qemu-nbd at a time holds the image's lock: Python's first.
      // [can_block_status_payload, then per case: [contexts seen, outcome's errno code or 'ok'], bytes sent grew]
      const py = await python(
        `
contexts = json.loads(sys.argv[1])
h = nbd.NBD()
for c in contexts: h.add_meta_context(c)
h.connect_systemd_socket_activation(sys.argv[2:])
size = h.get_size()
out = [h.can_block_status_payload()]
def case(count, offset, use, flags=0):
    seen = set()
    before = h.stats_bytes_sent()
    r = outcome(lambda: h.block_status_filter(count, offset, use, lambda ctx, o, e, err: seen.add(ctx), flags))
    out.append([sorted(seen), r[0] if r[0] == 'ok' else r[1], h.stats_bytes_sent() > before])
case(size, 0, contexts)
case(size, 0, [contexts[0], contexts[2]], nbd.CMD_FLAG_PAYLOAD_LEN)
case(1, size - 1, [contexts[1]])
case(size, 0, [])
case(size, 0, ['qemu:dirty-bitmap:bitmap2'])
case(size, 0, ['base:allocation', 'base:allocation'])
print(json.dumps(out))`,
        JSON.stringify(contexts),
        ...server(),
      );
      await h.connectSystemdSocketActivation(server());
      const size = h.getSize();
      const out: unknown[] = [h.canBlockStatusPayload()];
      const kase = async (count: number, offset: number, use: string[], flags = 0) => {
        const seen = new Set<string>();
        const before = h.statsBytesSent();
        const r = await outcome(() => h.blockStatusFilter(count, offset, use, (ctx) => (seen.add(ctx), 0), flags));
        out.push([[...seen].sort(), r[0] === 'ok' ? 'ok' : r[1], h.statsBytesSent() > before]);
      };
      {
        // The first case through the aio form.
        const seen = new Set<string>();
        const before = h.statsBytesSent();
        const err = await new Promise<number>((resolve) => {
          h.aioBlockStatusFilter(size, 0, contexts, (ctx) => (seen.add(ctx), 0), (e) => (resolve(e.value), 1));
        });
        out.push([[...seen].sort(), err === 0 ? 'ok' : err, h.statsBytesSent() > before]);
      }
      await kase(size, 0, [contexts[0], contexts[2]], CMD_FLAG_PAYLOAD_LEN);
      await kase(1, size - 1, [contexts[1]]);
      await kase(size, 0, []);
      await kase(size, 0, ['qemu:dirty-bitmap:bitmap2']);
      await kase(size, 0, ['base:allocation', 'base:allocation']);
      expect(out).toEqual(py);
      // The interop test's expectations, so that the comparison means what it says.
      expect(py[0]).toBe(true);
      expect(py[1]).toEqual([[...contexts].sort(), 'ok', true]);
      expect(py[5]).toEqual([[], 'EINVAL', false]);
    });
  });
});

describe('statistics, URIs, TLS host name, socket activation name, subprocess', () => {
  test('stats* count the bytes and messages each way as libnbd counts them for the same connection and reads', async () => {
    const argv = nbdkit('memory', 'size=1M');
    const h = handle();
    await unlessMissing('statsBytesSent', 'nbd_stats_bytes_sent', () => h.statsBytesSent(), async () => {
      const py = await python(
        `
h = nbd.NBD()
before = [h.stats_bytes_sent(), h.stats_chunks_sent(), h.stats_bytes_received(), h.stats_chunks_received()]
h.connect_command(sys.argv[1:])
for i in range(3): h.pread(4096, i * 4096)
print(json.dumps([before, [h.stats_bytes_sent(), h.stats_chunks_sent(), h.stats_bytes_received(), h.stats_chunks_received()]]))`,
        ...argv,
      );
      const stats = () => [h.statsBytesSent(), h.statsChunksSent(), h.statsBytesReceived(), h.statsChunksReceived()];
      const before = stats();
      await h.connectCommand(argv);
      for (let i = 0; i < 3; i++) await h.pread(Buffer.alloc(4096), i * 4096);
      expect([before, stats()]).toEqual(py);
      expect(py[1][1]).toBeGreaterThan(3);
    });
  });

  test('supportsVsock is libnbd\'s answer', async () => {
    await unlessMissing('supportsVsock', 'nbd_supports_vsock', () => libnbd.supportsVsock(), async () => {
      expect(libnbd.supportsVsock()).toBe(await python<boolean>('print(json.dumps(nbd.NBD().supports_vsock()))'));
    });
  });

  test('isUri answers as libnbd for URIs, file names and near misses', async () => {
    const candidates = ['nbd://localhost', 'nbds+unix:///x?socket=/s', 'NBD://HOST/', 'nbd+vsock://1', 'disk.img', '/dev/sda', '', 'nbd:', 'http://x', 'nbd+ssh://host/'];
    const h = handle();
    await unlessMissing('isUri', 'nbd_is_uri', () => h.isUri('nbd://x'), async () => {
      const py = await python('h = nbd.NBD(); print(json.dumps([h.is_uri(u) for u in json.loads(sys.argv[1])]))', JSON.stringify(candidates));
      expect(candidates.map((u) => h.isUri(u))).toEqual(py);
      expect(py[0]).toBe(true);
      expect(py[4]).toBe(false);
    });
  });

  test('setTlsHostname and getTlsHostname round-trip; the default is libnbd\'s', async () => {
    const h = handle();
    await unlessMissing('getTlsHostname', 'nbd_get_tls_hostname', () => h.getTlsHostname(), async () => {
      const py = await python(`
h = nbd.NBD()
d = outcome(h.get_tls_hostname)
h.set_tls_hostname('server.example')
print(json.dumps([d, outcome(h.get_tls_hostname)]))`);
      const d = asJson(await outcome(() => h.getTlsHostname()));
      h.setTlsHostname('server.example');
      expect([d, asJson(await outcome(() => h.getTlsHostname()))]).toEqual(py);
      expect(py[1]).toEqual(['ok', 'server.example']);
    });
  });

  test('setSocketActivationName reaches the server as LISTEN_FDNAMES', async () => {
    const h = handle();
    await unlessMissing('setSocketActivationName', 'nbd_set_socket_activation_name', () => h.setSocketActivationName('x'), async () => {
      const seen = join(tempDir(), 'fdnames');
      h.setSocketActivationName('mydisk');
      expect(h.getSocketActivationName()).toBe('mydisk');
      // sh execs nbdkit: the same pid, so LISTEN_PID still names it.
      await h.connectSystemdSocketActivation(['sh', '-c', `printf %s "$LISTEN_FDNAMES" > ${seen}; exec nbdkit --exit-with-parent memory size=1M`]);
      expect(readFileSync(seen, 'utf8')).toBe('mydisk');
      expect(Number(h.getSize())).toBe(1024 * 1024);
    });
  });

  test('getSubprocessPid is the server connectCommand started', async () => {
    const h = handle();
    await h.connectCommand(nbdkit('memory', 'size=1M'));
    await unlessMissing('getSubprocessPid', 'nbd_get_subprocess_pid', () => h.getSubprocessPid(), async () => {
      const pid = Number(h.getSubprocessPid());
      expect(pid).toBeGreaterThan(1);
      // nbdkit() runs nbdkit under `sh -c 'exec ...'`: the same process.
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('nbdkit');
    });
  });
});

describe('strict checks added in 1.18', () => {
  test('STRICT_PAYLOAD refuses a write over the server\'s maximum payload before sending it; STRICT_ALIGN an unaligned read', async () => {
    const argv = nbdkit('--filter=blocksize-policy', 'memory', 'size=64M', 'blocksize-minimum=4096', 'blocksize-maximum=1M', 'blocksize-error-policy=error');
    const h = handle();
    h.setRequestBlockSize(true);
    await h.connectCommand(argv);
    const py = await python(
      `
h = nbd.NBD(); h.set_request_block_size(True); h.connect_command(sys.argv[1:])
mode = h.get_strict_mode()
out = [outcome(lambda: h.pwrite(bytearray(2 * 1024 * 1024), 0)), outcome(lambda: h.pread(512, 512))]
h.set_strict_mode(mode & ~${STRICT_ALIGN})
out.append(outcome(lambda: h.pread(512, 512)))
print(json.dumps([mode] + out))`,
      ...argv,
    );
    const mode = h.getStrictMode();
    const js: unknown[] = [mode];
    js.push(asJson(await outcome(() => h.pwrite(Buffer.alloc(2 * 1024 * 1024), 0))));
    js.push(asJson(await outcome(() => h.pread(Buffer.alloc(512), 512))));
    h.setStrictMode(mode & ~STRICT_ALIGN);
    js.push(asJson(await outcome(() => h.pread(Buffer.alloc(512), 512))));
    expect(js).toEqual(py);
    if (STRICT_PAYLOAD !== undefined) expect((py[0] as number) & STRICT_PAYLOAD).toBe(STRICT_PAYLOAD);
  });
});

test('every call of `have` is exercised by this file', () => {
  const source = readFileSync(__filename, 'utf8');
  const missing = Object.keys(have).filter((k) => !new RegExp(`\\.${k}\\(`).test(source));
  expect(missing).toEqual([]);
});
