// nbdinfo's default mode and --list (info/show.c, info/list.c): one export's
// metadata, from option negotiation where the server gives it, in text or
// JSON, laid out byte for byte as the loaded version's nbdinfo lays it out.
import { unlinkSync, writeFileSync } from 'node:fs';
import type { Handle } from '../../lib';
import { SIZE_MAXIMUM, SIZE_MINIMUM, SIZE_PREFERRED } from '../../lib/generated/constants';
import { closeHandle, createHandle, doConnect, errorText, fatal, maybe, type Session } from './session';
import { ANSI, humanSize, jsonString, type Output } from './text';

/** The flags in nbdinfo's order: [name, libnbd's answer or undefined where it returned -1]. */
type Flag = [string, boolean | undefined];

interface ExportInfo {
  name: string;
  description?: string;
  /** undefined: nbd_get_size failed (1.18+ prints "unavailable"). */
  size?: bigint;
  content?: string;
  uri?: string;
  contexts?: string[];
  isRotational?: boolean;
  isReadOnly?: boolean;
  flags: Flag[];
  blockSizes: [string, bigint | undefined][];
}

/** The connection's line (text) or first fields (JSON): protocol, TLS, structured replies, extended headers. */
export function showConnection(s: Session, h: Handle<true>): void {
  const { out, flavour: f } = s;
  const protocol = maybe(() => h.getProtocol());
  const tls = maybe(() => h.getTlsNegotiated());
  const structured = maybe(() => h.getStructuredRepliesNegotiated());
  const extended = f.extendedHeaders ? maybe(() => h.getExtendedHeadersNegotiated()) : undefined;
  if (!s.options.json) {
    if (protocol === undefined) return;
    if (!f.quietColours) out.ansiColour(ANSI.FG_GREY);
    out.write(`protocol: ${protocol}`);
    if (tls !== undefined) out.write(` ${tls ? 'with' : 'without'} TLS`);
    if (f.extendedFeatureNames) {
      if (extended !== undefined && structured !== undefined) out.write(`, using ${extended ? 'extended' : structured ? 'structured' : 'simple'} packets`);
    } else if (structured !== undefined) out.write(`, using ${structured ? 'structured' : 'simple'} packets`);
    out.write('\n');
    if (!f.quietColours) out.ansiRestore();
    return;
  }
  out.write('{\n');
  if (protocol !== undefined) out.write(`"protocol": ${jsonString(protocol)},\n`);
  if (tls !== undefined) out.write(`"TLS": ${tls},\n`);
  if (structured !== undefined) out.write(`"structured": ${structured},\n`);
  if (extended !== undefined) out.write(`"extended": ${extended},\n`);
}

/**
 * show_one_export: false (and a message on stderr) when the server will not
 * serve the export, so that --list goes on with the next one.
 */
export async function showOneExport(s: Session, h: Handle<true>, listedDescription: string | undefined, first: boolean, last: boolean): Promise<boolean> {
  const f = s.flavour;
  if (f.skipMetaContextRequest) maybe(() => h.setRequestMetaContext(false));
  if (h.aioIsNegotiating()) {
    try {
      await h.optInfo();
    } catch {
      try {
        await h.optGo();
      } catch (e) {
        const name = maybe(() => h.getExportName());
        const which = name === undefined ? '' : name === '' ? ' for the default export' : ` for export: ${name}`;
        s.warn(errorText(e, which));
        if (!s.options.list) s.warn('suggestion: to list all exports on the server, use --list');
        return false;
      }
    }
  }
  let size: bigint | undefined;
  try {
    size = h.getSize();
  } catch (e) {
    if (!f.sizeOptional) throw fatal(e);
  }
  const uri = s.target.kind === 'uri' ? maybe(() => h.getUri()) : undefined;
  // The server's version of the name, if it gave one.
  let name = maybe(() => h.getCanonicalExportName());
  try {
    name ??= h.getExportName();
  } catch (e) {
    throw fatal(e);
  }
  const description = listedDescription ?? maybe(() => h.getExportDescription());
  const flags: Flag[] = [
    ...(f.blockStatusPayload ? [['can_block_status_payload', maybe(() => h.canBlockStatusPayload())] as Flag] : []),
    ['can_cache', maybe(() => h.canCache())],
    ['can_df', maybe(() => h.canDf())],
    ['can_fast_zero', maybe(() => h.canFastZero())],
    ['can_flush', maybe(() => h.canFlush())],
    ['can_fua', maybe(() => h.canFua())],
    ['can_multi_conn', maybe(() => h.canMultiConn())],
    ['can_trim', maybe(() => h.canTrim())],
    ['can_zero', maybe(() => h.canZero())],
  ];
  const info: ExportInfo = {
    name,
    description,
    size,
    uri,
    isRotational: maybe(() => h.isRotational()),
    isReadOnly: maybe(() => h.isReadOnly()),
    flags,
    blockSizes: [
      ['block_size_minimum', maybe(() => h.getBlockSize(SIZE_MINIMUM))],
      ['block_size_preferred', maybe(() => h.getBlockSize(SIZE_PREFERRED))],
      ['block_size_maximum', maybe(() => h.getBlockSize(SIZE_MAXIMUM))],
    ],
  };
  const contexts: string[] = [];
  try {
    await h.optListMetaContext((context) => {
      contexts.push(context);
      return 0;
    });
    info.contexts = contexts;
  } catch {
    // nbdinfo leaves the contexts out.
  }
  // Last: it moves the connection out of negotiation.
  if (size !== undefined) info.content = await probeContent(s, h, size);
  if (s.options.json) exportJson(s.out, info, first, last);
  else exportText(s, info);
  return true;
}

function exportText(s: Session, e: ExportInfo): void {
  const { out, flavour: f } = s;
  out.ansiColour(f.quietColours ? ANSI.FG_BRIGHT_MAGENTA : ANSI.FG_BOLD_BLACK);
  out.write(`export=${jsonString(e.name)}:\n`);
  if (e.description) out.write(`\tdescription: ${e.description}\n`);
  if (e.size === undefined) out.write('\texport-size: unavailable\n');
  else out.write(sizeLine('export-size', e.size));
  if (e.content !== undefined) out.write(`\tcontent: ${e.content}\n`);
  if (f.quietColours) out.ansiRestore();
  if (e.uri !== undefined) out.write(`\turi: ${e.uri}\n`);
  if (!f.quietColours) {
    out.ansiRestore();
    out.ansiColour(ANSI.FG_GREY);
  }
  if (e.contexts !== undefined) {
    out.write('\tcontexts:\n');
    for (const c of e.contexts) out.write(`\t\t${c}\n`);
  }
  if (e.isRotational !== undefined) out.write(`\tis_rotational: ${e.isRotational}\n`);
  if (!f.quietColours) out.ansiRestore();
  if (e.isReadOnly !== undefined) out.write(`\tis_read_only: ${e.isReadOnly}\n`);
  for (const [name, value] of e.flags) {
    if (value === undefined) continue;
    out.ansiColour(value ? ANSI.FG_GREEN : ANSI.FG_RED);
    out.write(`\t${name}: ${value}\n`);
    out.ansiRestore();
  }
  for (const [name, value] of e.blockSizes) {
    if (value === undefined || value <= 0n) continue;
    out.write(f.humanBlockSizes ? sizeLine(name, value) : `\t${name}: ${value}\n`);
  }
}

/** "\tNAME: 1048576 (1M)", or without the human size where none is shorter. */
function sizeLine(name: string, size: bigint): string {
  const human = humanSize(size);
  return human.scaled ? `\t${name}: ${size} (${human.text})\n` : `\t${name}: ${size}\n`;
}

function exportJson(out: Output, e: ExportInfo, first: boolean, last: boolean): void {
  if (first) out.write('"exports": [\n');
  out.write('\t{\n');
  out.write(`\t"export-name": ${jsonString(e.name)},\n`);
  if (e.description) out.write(`\t"description": ${jsonString(e.description)},\n`);
  if (e.content !== undefined) out.write(`\t"content": ${jsonString(e.content)},\n`);
  if (e.uri !== undefined) out.write(`\t"uri": ${jsonString(e.uri)},\n`);
  if (e.contexts !== undefined) {
    out.write('\t"contexts": [\n');
    e.contexts.forEach((c, i) => out.write(`\t\t${jsonString(c)}${i + 1 !== e.contexts!.length ? ',' : ''}\n`));
    out.write('\t],\n');
  }
  const flags: Flag[] = [['is_rotational', e.isRotational], ['is_read_only', e.isReadOnly], ...e.flags];
  for (const [name, value] of flags) if (value !== undefined) out.write(`\t"${name}": ${value},\n`);
  for (const [name, value] of e.blockSizes) if (value !== undefined && value > 0n) out.write(`\t"${name}": ${value},\n`);
  // Last, for want of a trailing comma.
  if (e.size !== undefined) out.write(`\t"export-size": ${e.size},\n`);
  out.write(`\t"export-size-str": "${e.size === undefined ? 'unavailable' : humanSize(e.size).text}"\n`);
  out.write(last ? '\t} ]\n' : '\t},\n');
}

/**
 * get_content: the first 8 KiB of the export through `file -b` (run by
 * /bin/sh, as popen runs it); undefined where that gives nothing. Goes to
 * the transmission phase first.
 */
async function probeContent(s: Session, h: Handle<true>, size: bigint): Promise<string | undefined> {
  if (!s.probeContent) return undefined;
  if (h.aioIsNegotiating()) {
    try {
      await h.optGo();
    } catch (e) {
      throw fatal(e);
    }
    // nbd-server 3.25 gives the size only to NBD_OPT_GO.
    if (s.flavour.optModeAlways && size === 0n) size = maybe(() => h.getSize()) ?? 0n;
  }
  const buf = Buffer.alloc(Number(size < 8192n ? size : 8192n));
  if (buf.length > 0) {
    try {
      await h.pread(buf, 0);
    } catch {
      return undefined;
    }
  }
  // Only here: most runs never probe, and child_process costs start-up time.
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const path = temporaryPath();
  writeFileSync(path, buf, { flag: 'wx', mode: 0o600 });
  try {
    const stdout = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const child = spawn('/bin/sh', ['-c', `file -b ${path}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      child.stdout.on('data', (d: Buffer) => chunks.push(d));
      child.on('error', () => resolve(Buffer.alloc(0)));
      child.on('close', () => resolve(Buffer.concat(chunks)));
    });
    if (stdout.length === 0) return undefined;
    const newline = stdout.indexOf(10);
    return (newline < 0 ? stdout : stdout.subarray(0, newline)).toString();
  } finally {
    try {
      unlinkSync(path);
    } catch {
      // Already gone.
    }
  }
}

let temporaries = 0;
/** A new name under /tmp, where nbdinfo's mkstemp makes its file. */
function temporaryPath(): string {
  return `/tmp/nbdjs-info-${process.pid}-${Date.now().toString(36)}-${temporaries++}`;
}

interface ListedExport {
  name: string;
  description: string;
}

/** collect_exports: NBD_OPT_LIST during negotiation. */
export async function collectExports(s: Session, h: Handle<true>): Promise<ListedExport[]> {
  const exports: ListedExport[] = [];
  try {
    await h.optList((name, description) => {
      exports.push({ name, description });
      return 0;
    });
  } catch (e) {
    throw fatal(e);
  }
  // Before 1.20: leave negotiation before probing each export over a new
  // connection, in case the server serves one connection at a time.
  if (s.probeContent && !s.flavour.optModeAlways) {
    try {
      await h.optAbort();
    } catch {
      // Only a courtesy.
    }
  }
  return exports;
}

/** list_all_exports: true when every export could be shown. */
export async function listAllExports(s: Session, h: Handle<true>, exports: ListedExport[]): Promise<boolean> {
  let ok = true;
  if (exports.length === 0 && s.options.json) s.out.write('"exports": []\n');
  for (let i = 0; i < exports.length; i++) {
    const { name, description } = exports[i];
    let h2 = h;
    if (s.probeContent) {
      // The original URI again, in option mode to pick the export.
      h2 = createHandle(s);
      h2.setOptMode(true);
      if (s.flavour.skipMetaContextRequest) h2.setRequestMetaContext(false);
      h2.setFullInfo(true);
      await doConnect(s, h2);
    }
    try {
      h2.setExportName(name);
    } catch (e) {
      throw fatal(e);
    }
    if (!(await showOneExport(s, h2, description, i === 0, i + 1 === exports.length))) ok = false;
    if (s.probeContent) await closeHandle(s, h2);
  }
  return ok;
}
