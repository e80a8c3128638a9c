// typings/native.ts: the exact surface of the native module as lib/ sees it (NativePayload from
// scripts/event-wire.mjs).
import {
  simpleCalls,
  commandCalls,
  optCalls,
  connectCalls,
  moduleCalls,
  retKinds,
  nativeSurface,
} from '../api-table.mjs';
import {
  banner,
  camel,
  connectName,
  nativeTsType,
  payloadTypes,
} from './common.mjs';
import * as wire from '../event-wire.mjs';

function typings() {
  const out = [banner('//'), '// The exact surface of the native module (build/Release/nbd.node) as lib/ sees it.', '',
    "import type { NbdConstants, NbdHave } from '../lib/generated/handle-api';", '',
    'export interface NativeHandle {'];
  const sig = (args) => args.map(([n, k]) => `${camel(n)}: ${nativeTsType(k)}`);
  for (const c of simpleCalls) out.push(`  ${camel(c.name)}(${sig(c.args).join(', ')}): ${retKinds[c.ret].nativeTs};`);
  for (const c of commandCalls) out.push(`  ${camel(c.name)}(${[...sig(c.args), 'flags: number'].join(', ')}): number;`);
  for (const c of optCalls) out.push(`  ${camel(c.name)}(${sig(c.args).join(', ')}): number;`);
  for (const c of connectCalls) out.push(`  ${camel(connectName(c))}(${sig(c.args).join(', ')}): number;`);
  out.push('  // The hand-written surface (scripts/api-table.mjs `nativeSurface`).');
  for (const m of nativeSurface) out.push(`  /** ${m.doc} */`, `  ${m.accessor ? 'readonly ' : ''}${m.js}${m.ts};`);
  out.push('}', '');
  out.push('/** What an extent, list, context or debug event carries, or a failed connect or disconnect (message). */');
  out.push('export interface NativePayload {');
  for (const [name, type] of wire.payloadFields) out.push(`  ${name}?: ${payloadTypes[type].ts};`);
  out.push('}', '');
  out.push('export interface NativeBinding {');
  out.push('  Handle: new (onEvents: (count: number, payloads?: (NativePayload | undefined)[]) => void, driver: string) => NativeHandle;');
  out.push('  constants: NbdConstants;');
  out.push('  have: NbdHave;');
  out.push('  strerror(errno: number): string;');
  for (const c of moduleCalls) out.push(`  ${camel(c.name)}(): ${c.ret === 'bool' ? 'boolean' : 'string'} | undefined;`);
  out.push('  eventStride: number;');
  out.push('  /** What libnbd records for a READ_ERROR chunk when it had no error (lib/semantics.ts). */');
  out.push('  readErrorMarker: number;');
  out.push('}', '');
  return out.join('\n');
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'typings/native.ts': typings(),  // a .ts, so that tsc emits dist/typings/native.d.ts for the shipped .d.ts files
});
