// lib/generated/{handle-api,constants,module-api}.ts: the TS facade of every table call (HandleApi, the
// constants, the module functions and `have`).
import {
  simpleCalls,
  commandCalls,
  optCalls,
  connectCalls,
  moduleCalls,
  constants,
  stringConstants,
  argKinds,
  retKinds,
  closures,
} from '../api-table.mjs';
import {
  banner,
  camel,
  pascal,
  constName,
  isOptionalConst,
  connectName,
  closureTs,
  haveEntries,
  toNative,
  params,
  validations,
  docLine,
  withSince,
  flagsNote,
} from './common.mjs';

function tsSimpleMethod(call) {
  const names = call.args.map(([n]) => camel(n));
  const R = retKinds[call.ret];
  const failTest = R.nativeFail === 'null' ? 'r === null' : 'r === -1';
  const lines = [docLine([`\`nbd_${call.name}\`: ${withSince(call)}`, call.state && `Permitted in state: ${call.state}.`]),
    `  ${camel(call.name)}(${params(call.args).join(', ')}): ${R.ts} {`, ...validations(call.args),
    `    const r = this._native().${camel(call.name)}(${names.join(', ')});`, '    this._afterCall();',
    `    if (${failTest}) this._raise();`, `    ${R.jsReturn}`, '  }'];
  return lines.join('\n');
}

function tsCommandMethods(call) {
  const aio = camel(call.name);
  const sync = camel(call.sync);
  const buffer = call.args.find(([, k]) => argKinds[k].buffer);
  const offset = call.args.find(([n]) => n === 'offset');
  // A buffer libnbd keeps goes through Handle#_lend (as it is, or a copy of the binding's).
  const nativeArg = ([n, k]) => (argKinds[k].persist ? `this._lend(${camel(n)}, ${argKinds[k].replyData === true})` : toNative([n, k]));
  const nativeCall = `n.${aio}(${[...call.args.map(nativeArg), 'flags'].join(', ')})`;
  const reg = (completion, settle) =>
    `this._register(${nativeCall}, '${call.type}', ${buffer ? camel(buffer[0]) : 'undefined'}, ${offset ? 'offset' : 'undefined'}, ${call.closure ? call.closure : 'undefined'}, ${completion}, ${settle})`;
  const closureParam = call.closure ? [`${call.closure}: ${closureTs(call.closure)}`] : [];
  const closureCheck = call.closure ? [`    validateFunction(${call.closure}, '${call.closure}');`] : [];
  const aioLines = [docLine([`\`nbd_${call.name}\`: ${withSince(call)}`, flagsNote(call), 'Returns the cookie.']),
    `  ${aio}(${[...params(call.args), ...closureParam, 'completion?: CompletionCallback | null', 'flags = 0'].join(', ')}): number {`,
    ...validations(call.args), ...closureCheck, "    validateOptionalFunction(completion, 'completion');", "    validateUint32(flags, 'flags');",
    '    const n = this._native();', `    return ${reg('completion', 'undefined')};`, '  }'];
  // The Promise form: its closure is wrapped by `live` (not called once the Promise was aborted).
  const liveReg = `this._register(${nativeCall}, '${call.type}', ${buffer ? camel(buffer[0]) : 'undefined'}, ${offset ? 'offset' : 'undefined'}, ${call.closure ? `live(${call.closure})` : 'undefined'}, undefined, settle)`;
  const syncLines = [docLine([`\`nbd_${call.sync}\` as a Promise: ${withSince(call)}`, flagsNote(call), '`options`: the flags, or `{ flags, signal }`.']),
    `  ${sync}(${[...params(call.args), ...closureParam, 'options: number | CommandOptions = 0'].join(', ')}): Promise<void> {`,
    ...validations(call.args), ...closureCheck, '    const { flags, signal } = commandOptions(options);',
    `    return this._promise('nbd_${call.sync}', '${call.type}', signal, (settle${call.closure ? ', live' : ''}) => {`, '      const n = this._native();',
    `      ${liveReg};`, '    });', '  }'];
  return [...aioLines, '', ...syncLines].join('\n');
}

function tsOptMethods(call) {
  const aio = camel(call.name);
  const sync = camel(call.sync);
  const closureParam = call.closure ? [`${call.closure}: ${closureTs(call.closure)}`] : [];
  const closureCheck = call.closure ? [`    validateFunction(${call.closure}, '${call.closure}');`] : [];
  const nativeCall = `this._native().${aio}(${call.args.map(toNative).join(', ')})`;
  const closureArg = call.closure ?? 'undefined';
  const result = call.closure ? 'count' : call.accepted ? 'accepted' : 'none';
  const syncRet = { count: 'Promise<number>', accepted: 'Promise<boolean>', none: 'Promise<void>' }[result];
  const words = call.refusal === undefined ? 'undefined' : `'${call.refusal}'`;
  const refusal = call.refusalBefore === undefined ? words
    : `this._libnbdAtLeast('${call.refusalBefore[0]}') ? ${words} : '${call.refusalBefore[1]}'`;
  return [docLine([`\`nbd_${call.name}\`: ${withSince(call)}`, 'The completion callback runs once; libnbd retires option commands itself.']),
    `  ${aio}(${[...params(call.args), ...closureParam, 'completion?: CompletionCallback | null'].join(', ')}): void {`,
    ...validations(call.args), ...closureCheck, "    validateOptionalFunction(completion, 'completion');",
    `    this._registerOpt(${nativeCall}, ${closureArg}, completion, undefined);`, '  }', '',
    docLine([`\`nbd_${call.sync}\` as a Promise: ${withSince(call)}`, call.closure ? `Resolves with the number of ${call.closure} callbacks.` : '',
      call.accepted ? 'Resolves true when the server accepted, false when it refused (the handle still negotiating); rejects when the connection did not survive.' : '']),
    `  ${sync}(${[...params(call.args), ...closureParam, 'options?: SignalOptions'].join(', ')}): ${syncRet} {`,
    ...validations(call.args), ...closureCheck, '    const signal = signalOption(options);',
    `    return this._promiseOpt('nbd_${call.sync}', '${result}', ${refusal}, signal, (settle${call.closure ? ', live' : ''}) => this._registerOpt(${nativeCall}, ${call.closure ? `live(${call.closure})` : 'undefined'}, undefined, settle)) as ${syncRet};`,
    '  }'].join('\n');
}

function tsConnectMethod(call) {
  const name = connectName(call);
  return [docLine([`\`nbd_connect_${call.name}\` as a Promise (the driver runs \`nbd_${name}\`): ${call.doc}`,
    'Aborting `options.signal` rejects the Promise and closes the handle.']),
    `  connect${pascal(call.name)}(${[...params(call.args), 'options?: SignalOptions'].join(', ')}): Promise<void> {`, ...validations(call.args),
    '    const signal = signalOption(options);',
    `    return this._connect('nbd_connect_${call.name}', signal, (n) => n.${camel(name)}(${call.args.map(toNative).join(', ')}));`, '  }', '',
    docLine([`\`nbd_${name}\`: ${call.doc}`, 'Returns at once; the driver makes the call and drives the handshake.',
      'aioIsConnecting() is true from now until it ends (then aioIsReady(), aioIsNegotiating() or aioIsDead()).',
      'A failure libnbd reports from the call itself is emitted as `\'connect\'` (an NbdError), as is every outcome.',
      'Throws at once (EINVAL) when the handle is not newly created.']),
    `  ${camel(name)}(${params(call.args).join(', ')}): void {`, ...validations(call.args),
    `    this._aioConnect('nbd_${name}', (n) => n.${camel(name)}(${call.args.map(toNative).join(', ')}));`, '  }'].join('\n');
}

function tsApi() {
  const out = [banner('//'), "import { EventEmitter } from 'node:events';", "import type { NativeHandle } from '../../typings/native';",
    `import type { ${[...new Set(['Int64', ...[...commandCalls, ...optCalls].map((c) => c.closure).filter(Boolean).map((k) => closures[k].ts), closures.completion.ts])].sort().join(', ')} } from './callbacks';`,
    'import {', '  commandOptions,', '  signalOption,', '  toNativeUint64,', '  validateBoolean,', '  validateBuffer,', '  validateFd,', '  validateFunction,', '  validateInt32,',
    '  validateOptionalFunction,', '  validateService,', '  validateString,', '  validateStringArray,', '  validateUint32,', '  validateUint64,',
    "} from '../validate';", "import type { CommandOptions, SignalOptions } from '../validate';", '',
    "export type { Int64 } from './callbacks';", '',
    "import type { Live } from '../abort';", '',
    '// Wraps a Promise form\'s callback so that it is no longer called once its Promise was aborted (lib/abort.ts).',
    'export type { Live };', '',
    '/**',
    ' * Settles a Promise form: the command\'s errno, a callback\'s throw, the calls of its list/context closure, what',
    ' * failed (in place of the call\'s words), and, for an option, the error libnbd recorded as it failed: [errno, message].',
    ' */',
    'export type Settle = (error: number, cause: unknown, closureCalls: number, what?: string, recorded?: [number, string]) => void;', '',
    '// Keep every validator referenced even when no call of the table uses one.',
    'void [validateBoolean, validateBuffer, validateFd, validateFunction, validateInt32, validateOptionalFunction,',
    '  validateService, validateString, validateStringArray, validateUint32, validateUint64, toNativeUint64];', '',
    '/** The libnbd calls whose glue is generated from the API table (an EventEmitter: see Handle). */',
    'export abstract class HandleApi<B extends boolean = false> extends EventEmitter {',
    '  /** The open native handle; throws NbdError EINVAL when closed. */',
    '  protected abstract _native(): NativeHandle;',
    '  /** Throws the NbdError libnbd recorded for the failed call. */',
    '  protected abstract _raise(): never;',
    '  protected abstract _int64(v: number | bigint): Int64<B>;',
    '  /** Delivers events libnbd recorded inside the call just made (debug messages, a completion on a dead connection). */',
    '  protected abstract _afterCall(): void;',
    '  /** The view libnbd gets for a buffer it keeps until the command completes (`out`: it writes into it): the buffer, or a copy. */',
    '  protected abstract _lend(buf: ArrayBufferView, out: boolean): ArrayBufferView;',
    '  /** Records an issued data command (throws on -1) and returns its cookie. */',
    '  protected abstract _register(cookie: number, type: string, buf: ArrayBufferView | undefined, offset: number | bigint | undefined,',
    '    closure: ((...args: never[]) => unknown) | undefined, completion: CompletionCallback | null | undefined, settle: Settle | undefined): number;',
    '  /** Records an issued option command (throws on -1). */',
    '  protected abstract _registerOpt(id: number, closure: ((...args: never[]) => unknown) | undefined,',
    '    completion: CompletionCallback | null | undefined, settle: Settle | undefined): void;',
    '  /** A data command\'s Promise form; `signal` aborts it (AbortError), `live` wraps its callbacks. */',
    '  protected abstract _promise(api: string, type: string, signal: AbortSignal | undefined, start: (settle: Settle, live: Live) => void): Promise<void>;',
    '  /**',
    '   * An option\'s Promise form: resolves with the closure\'s calls (`count`), nothing (`none`) or whether the server',
    '   * accepted (`accepted`); `refusal`: libnbd\'s words for a server\'s refusal (the table\'s `refusal`).',
    '   */',
    '  protected abstract _promiseOpt(api: string, result: \'count\' | \'none\' | \'accepted\', refusal: string | undefined,',
    '    signal: AbortSignal | undefined, start: (settle: Settle, live: Live) => void): Promise<number | boolean | void>;',
    '  /** Whether the libnbd loaded is at least `version` (\'1.NN\'). */',
    '  protected abstract _libnbdAtLeast(version: string): boolean;',
    '  /** A connect\'s Promise form; aborting `signal` rejects it and closes the handle. */',
    '  protected abstract _connect(api: string, signal: AbortSignal | undefined, start: (n: NativeHandle) => number): Promise<void>;',
    '  /** An aio connect: starts it (throws on a synchronous failure); its end is emitted as `\'connect\'`. */',
    '  protected abstract _aioConnect(api: string, start: (n: NativeHandle) => number): void;', '',
    '  // ---------------------------------------------------------------- synchronous calls', ''];
  for (const c of simpleCalls) out.push(tsSimpleMethod(c), '');
  out.push('  // ---------------------------------------------------------------- data commands', '');
  for (const c of commandCalls) out.push(tsCommandMethods(c), '');
  out.push('  // ---------------------------------------------------------------- option negotiation', '');
  for (const c of optCalls) out.push(tsOptMethods(c), '');
  out.push('  // ---------------------------------------------------------------- connects', '');
  for (const c of connectCalls) out.push(tsConnectMethod(c), '');
  out.push('}', '');
  out.push('/** Whether the libnbd loaded has each call newer than libnbd 1.14 (looked up when the binding loads); a call it lacks fails with NbdError ENOTSUP. */');
  out.push('export interface NbdHave {');
  for (const e of haveEntries()) out.push(`  /** \`nbd_${e.key === camel(e.call.name) ? e.call.name : e.call.sync}\`: libnbd ≥ ${e.call.since}. */`, `  readonly ${e.key}: boolean;`);
  out.push('}', '');
  out.push('/** Names of the libnbd constants this build exports, with those added after 1.14 marked optional. */');
  out.push('export interface NbdConstants {');
  for (const c of constants) {
    if (isOptionalConst(c)) out.push(`  /** libnbd ≥ ${c.since}. */`);
    out.push(`  readonly ${constName(c)}${isOptionalConst(c) ? '?' : ''}: number;`);
  }
  out.push('}', '');
  return out.join('\n');
}

function tsConstants() {
  const out = [banner('//'), "import { binding } from '../binding';", ''];
  for (const c of constants) {
    const n = constName(c);
    const t = isOptionalConst(c) ? 'number | undefined' : 'number';
    if (isOptionalConst(c)) out.push(`/** libnbd ≥ ${c.since}: undefined where the libnbd loaded is older. */`);
    out.push(`export const ${n}: ${t} = binding.constants.${n}${isOptionalConst(c) ? '' : ' as number'};`);
  }
  out.push('', '// String constants (meta context namespaces and names), as libnbd.h defines them.');
  for (const c of stringConstants) out.push(`/** \`LIBNBD_${c.name}\`: ${c.doc}${c.newer ? ' (in libnbd.h after 1.14; exported on every build)' : ''} */`, `export const ${c.name} = ${JSON.stringify(c.value).replace(/"/g, "'")};`);
  out.push('');
  return out.join('\n');
}

function tsModule() {
  const out = [banner('//'), "import { binding } from '../binding';", "import { notSupported } from '../errors';",
    "import type { NbdHave } from './handle-api';", '',
    '/** Feature test: whether the libnbd loaded has the call (C\'s `#ifdef LIBNBD_HAVE_NBD_<CALL>` asks the header; this asks the library). */',
    'export const have: Readonly<NbdHave> = binding.have;', ''];
  for (const c of moduleCalls) {
    const t = c.ret === 'bool' ? 'boolean' : 'string';
    out.push(`/** \`nbd_${c.name}\`: ${withSince(c)} */`, `export function ${camel(c.name)}(): ${t} {`,
      `  const r = binding.${camel(c.name)}();`, `  if (r === undefined) throw notSupported('nbd_${c.name}'${c.since ? `, '${c.since}'` : ''});`, '  return r;', '}', '');
  }
  return out.join('\n');
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'lib/generated/handle-api.ts': tsApi(),
  'lib/generated/constants.ts': tsConstants(),
  'lib/generated/module-api.ts': tsModule(),
});
