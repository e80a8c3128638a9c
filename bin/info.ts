// nbdjs info: what nbdinfo prints, with its field names and values in --json
// (libnbd's info/show.c, info/list.c, info/map.c, info/size.c). Public API
// only: the Handle's getters and opt* calls, and Handle#extents for --map.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SIZE_MAXIMUM, SIZE_MINIMUM, SIZE_PREFERRED, type Handle } from '../lib';
import { parse, UsageError } from './args';
import { closeHandle, openHandle } from './endpoints';

export const INFO_USAGE = `usage: nbdjs info URI [--json] [--list | --map[=CONTEXT] | --size] [--content | --no-content]
       nbdjs info [--json] ... -- [ SERVER COMMAND ARGS ... ]

Shows what an NBD server offers, as nbdinfo does (the same fields in --json).
  --json            JSON output, nbdinfo's field names
  --list            every export the server lists
  --map[=CONTEXT]   the extents of CONTEXT (default base:allocation)
  --size            the export's size in bytes, alone
  --content         probe the content with file(1) (default, except with --list/--map)
  --no-content      do not
  --help            this text`;

const OPTIONS = {
  json: { type: 'boolean' },
  list: { type: 'boolean', short: 'L' },
  map: { type: 'string' },
  size: { type: 'boolean' },
  content: { type: 'boolean' },
  'no-content': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The value of a getter, or undefined where libnbd returns -1 (nbdinfo then omits the key). */
function maybe<T>(get: () => T): T | undefined {
  try {
    return get();
  } catch {
    return undefined;
  }
}

/** libnbd's human_size (common/utils/human-size.h): exact, with the largest binary suffix that divides. */
export function humanSize(bytes: number): { text: string; scaled: boolean } {
  const ext = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
  let n = BigInt(bytes);
  let i = 0;
  if (n !== 0n) {
    while (n % 1024n === 0n && i < ext.length - 1) {
      n /= 1024n;
      i++;
    }
  }
  return { text: `${n}${ext[i]}`, scaled: i > 0 };
}

/** One export's fields, in nbdinfo's JSON order. */
type Export = Record<string, unknown>;

/** nbdinfo's file(1) probe: the first min(size, 8 KiB) bytes through `file -b`; undefined if that fails. */
async function probeContent(h: Handle, size: number): Promise<string | undefined> {
  if (h.aioIsNegotiating()) await h.optGo();
  const buf = Buffer.alloc(Math.min(size, 8192));
  try {
    if (buf.length > 0) await h.pread(buf, 0);
  } catch {
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'nbdjs-'));
  try {
    const file = join(dir, 'content');
    writeFileSync(file, buf);
    const r = spawnSync('file', ['-b', file], { encoding: 'utf8' });
    if (r.status !== 0 || typeof r.stdout !== 'string') return undefined;
    const line = r.stdout.split('\n')[0];
    return line;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** show_one_export: optInfo (else optGo), then the getters; keys whose getter fails are left out. */
async function showOne(h: Handle, desc: string | undefined, withUri: boolean, content: boolean): Promise<Export> {
  if (h.aioIsNegotiating()) {
    try {
      await h.optInfo();
    } catch {
      await h.optGo();
    }
  }
  const size = Number(h.getSize());
  const e: Export = {};
  e['export-name'] = maybe(() => h.getCanonicalExportName()) ?? h.getExportName();
  const description = desc ?? maybe(() => h.getExportDescription());
  if (description) e.description = description;
  // Before the meta-context listing: a new option resets the export's info.
  const flags = {
    is_rotational: maybe(() => h.isRotational()),
    is_read_only: maybe(() => h.isReadOnly()),
    can_cache: maybe(() => h.canCache()),
    can_df: maybe(() => h.canDf()),
    can_fast_zero: maybe(() => h.canFastZero()),
    can_flush: maybe(() => h.canFlush()),
    can_fua: maybe(() => h.canFua()),
    can_multi_conn: maybe(() => h.canMultiConn()),
    can_trim: maybe(() => h.canTrim()),
    can_zero: maybe(() => h.canZero()),
  };
  const blocks = {
    block_size_minimum: Number(maybe(() => h.getBlockSize(SIZE_MINIMUM)) ?? 0),
    block_size_preferred: Number(maybe(() => h.getBlockSize(SIZE_PREFERRED)) ?? 0),
    block_size_maximum: Number(maybe(() => h.getBlockSize(SIZE_MAXIMUM)) ?? 0),
  };
  const contexts: string[] = [];
  let haveContexts = false;
  if (h.aioIsNegotiating()) {
    try {
      await h.optListMetaContext((name) => {
        contexts.push(name);
        return 0;
      });
      haveContexts = true;
    } catch {
      // nbdinfo leaves "contexts" out.
    }
  }
  const uri = withUri ? maybe(() => h.getUri()) : undefined;
  // Last, as nbdinfo: it moves the connection out of negotiation.
  const probed = content ? await probeContent(h, size) : undefined;
  if (probed !== undefined) e.content = probed;
  if (uri !== undefined) e.uri = uri;
  if (haveContexts) e.contexts = contexts;
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) e[k] = v;
  for (const [k, v] of Object.entries(blocks)) if (v > 0) e[k] = v;
  e['export-size'] = size;
  e['export-size-str'] = humanSize(size).text;
  return e;
}

function exportText(e: Export): string {
  const lines = [`export=${JSON.stringify(e['export-name'])}:`];
  if (e.description !== undefined) lines.push(`\tdescription: ${e.description}`);
  const size = e['export-size'] as number;
  const human = humanSize(size);
  lines.push(human.scaled ? `\texport-size: ${size} (${human.text})` : `\texport-size: ${size}`);
  if (e.content !== undefined) lines.push(`\tcontent: ${e.content}`);
  if (e.uri !== undefined) lines.push(`\turi: ${e.uri}`);
  if (e.contexts !== undefined) {
    lines.push('\tcontexts:');
    for (const c of e.contexts as string[]) lines.push(`\t\t${c}`);
  }
  for (const [k, v] of Object.entries(e)) {
    if (k.startsWith('is_') || k.startsWith('can_') || k.startsWith('block_size_')) lines.push(`\t${k}: ${v}`);
  }
  return lines.map((l) => `${l}\n`).join('');
}

/** JSON laid out as nbdinfo prints it (info/main.c, info/show.c): the same bytes for the same values. */
function nbdinfoJson(o: Record<string, unknown>): string {
  const q = (v: unknown) => JSON.stringify(v);
  const lines = ['{'];
  for (const [k, v] of Object.entries(o)) if (k !== 'exports') lines.push(`${q(k)}: ${q(v)},`);
  const all = o.exports as Export[];
  lines.push('"exports": [');
  all.forEach((e, i) => {
    lines.push('\t{');
    const entries = Object.entries(e);
    entries.forEach(([k, v], j) => {
      const comma = j + 1 < entries.length ? ',' : '';
      if (Array.isArray(v)) {
        lines.push(`\t${q(k)}: [`);
        v.forEach((c, n) => lines.push(`\t\t${q(c)}${n + 1 < v.length ? ',' : ''}`));
        lines.push(`\t]${comma}`);
      } else lines.push(`\t${q(k)}: ${q(v)}${comma}`);
    });
    lines.push(i + 1 < all.length ? '\t},' : '\t} ]');
  });
  if (all.length === 0) lines[lines.length - 1] = '"exports": []';
  lines.push('}');
  return lines.map((l) => `${l}\n`).join('');
}

/** nbdinfo's description of a map entry's type. */
export function extentDescription(context: string, type: number): string | undefined {
  if (context === 'base:allocation') return ['data', 'hole', 'zero', 'hole,zero'][type];
  if (context.startsWith('qemu:dirty-bitmap:')) return ['clean', 'dirty'][type];
  if (context === 'qemu:allocation-depth') return type === 0 ? 'absent' : type === 1 ? 'local' : `backing depth ${type}`;
  return undefined;
}

export async function info(argv: string[], out: (text: string) => void): Promise<void> {
  const { values, endpoints } = parse(argv, OPTIONS, { map: 'base:allocation' });
  if (values.help) {
    out(`${INFO_USAGE}\n`);
    return;
  }
  if (endpoints.length !== 1) throw new UsageError(endpoints.length === 0 ? 'a URI or a [ server command ] is needed' : 'only one URI is taken');
  const modes = ['list', 'map', 'size'].filter((m) => values[m] !== undefined);
  if (modes.length > 1) throw new UsageError(`--${modes[0]} and --${modes[1]} cannot be used together`);
  if (values.content && values['no-content']) throw new UsageError('--content and --no-content cannot be used together');
  const [endpoint] = endpoints;
  const json = values.json === true;
  const map = values.map as string | undefined;

  if (values.size) {
    const h = await openHandle(endpoint);
    try {
      out(`${h.getSize()}\n`);
    } finally {
      await closeHandle(h);
    }
    return;
  }

  if (map !== undefined) {
    const h = await openHandle(endpoint, { metaContexts: [map] });
    let text = '';
    try {
      if (!h.canMetaContext(map)) throw new Error(`--map: server does not support metadata context "${map}"`);
      const rows: string[] = [];
      for await (const x of h.extents({ context: map })) {
        const d = extentDescription(map, x.flags);
        rows.push(
          json
            ? `{ "offset": ${x.offset}, "length": ${x.length}, "type": ${x.flags}${d === undefined ? '' : `, "description": ${JSON.stringify(d)}`}}`
            : `${String(x.offset).padStart(10)}  ${String(x.length).padStart(10)}  ${String(x.flags).padStart(3)}${d === undefined ? '' : `  ${d}`}`,
        );
      }
      text = json ? `[\n${rows.join(',\n')}${rows.length > 0 ? '\n' : ''}]\n` : rows.map((r) => `${r}\n`).join('');
    } finally {
      await closeHandle(h);
    }
    out(text);
    return;
  }

  // The default and --list: option negotiation with full info (nbdinfo's opt mode).
  const list = values.list === true;
  const content = values.content === true || (!list && values['no-content'] !== true);
  const h = await openHandle(endpoint, {
    configure: (x) => {
      x.setOptMode(true);
      x.setFullInfo(true);
    },
  });
  let shown: Export[] = [];
  let top: Record<string, unknown>;
  try {
    top = {
      protocol: maybe(() => h.getProtocol()),
      TLS: maybe(() => h.getTlsNegotiated()),
      structured: maybe(() => h.getStructuredRepliesNegotiated()),
    };
    const withUri = endpoint.kind === 'uri';
    if (list) {
      const names: [string, string][] = [];
      await h.optList((name, description) => {
        names.push([name, description]);
        return 0;
      });
      for (const [name, description] of names) {
        h.setExportName(name);
        shown.push(await showOne(h, description, withUri, content));
      }
    } else {
      shown = [await showOne(h, undefined, withUri, content)];
    }
  } finally {
    await closeHandle(h);
  }
  if (json) {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(top)) if (v !== undefined) o[k] = v;
    o.exports = shown;
    out(nbdinfoJson(o));
    return;
  }
  let head = '';
  if (top.protocol !== undefined) {
    head = `protocol: ${top.protocol}`;
    if (top.TLS !== undefined) head += ` ${top.TLS ? 'with' : 'without'} TLS`;
    if (top.structured !== undefined) head += `, ${top.structured ? 'using' : 'not using'} structured packets`;
    head += '\n';
  }
  out(head + shown.map(exportText).join(''));
}
