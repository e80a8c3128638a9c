// lib/generated/callbacks.ts: the JS types of libnbd's closures (the table's `closures`).
import {
  cbArgKinds,
  closures,
} from '../api-table.mjs';
import {
  banner,
  closureStruct,
  isGeneric,
} from './common.mjs';

function tsCallbacks() {
  const out = [banner('//'), '// The JS callback types of libnbd\'s closures (scripts/api-table.mjs `closures`). Every callback',
    '// runs after libnbd has returned (never inside it), so it may call back into the handle.', '',
    '/** A 64-bit output: number, or bigint on a handle made with `{ bigint: true }`. */',
    'export type Int64<B extends boolean> = B extends true ? bigint : number;', '',
    '/** A mutable errno, as libnbd\'s `int *error`; valid during the call. */',
    'export interface ErrorRef {', '  value: number;', '}', ''];
  for (const [key, cl] of Object.entries(closures)) {
    const args = cl.jsArgs ?? cl.args;
    const calls = { many: 'libnbd may call it any number of times while its command runs', once: 'libnbd calls it exactly once',
      'until replaced': 'called until cleared or replaced' }[cl.calls];
    out.push('/**', ...cl.doc.map((l) => ` * ${l}`), ` * ${cl.ret}`, ` * (libnbd's \`${closureStruct(key)}\`: ${calls}${cl.since ? `; libnbd ≥ ${cl.since}` : ''}.)`, ' */');
    const generic = isGeneric(cl) ? '<B extends boolean = boolean>' : '';
    out.push(`export type ${cl.ts}${generic} = (`, ...args.map(([n, k]) => `  ${n}: ${cbArgKinds[k].ts},`), ') => unknown;', '');
  }
  return out.join('\n');
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'lib/generated/callbacks.ts': tsCallbacks(),
});
