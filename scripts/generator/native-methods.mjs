// native/generated/api_methods.{h,cc}: the C++ glue of every table call (NbdHandle methods, the raw
// data-command functions, module functions, ExportConstants, the `have` object).
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
  nativeSurface,
} from '../api-table.mjs';
import {
  banner,
  camel,
  pascal,
  macro,
  constName,
  isOptionalConst,
  isMask,
  minorOf,
  connectName,
  subst,
  callee,
  closureStruct,
  trampoline,
  closureMaker,
  cParams,
  haveEntries,
  nativeHandleMethods,
} from './common.mjs';

/**
 * Converts JS arguments info[start..] to C: returns the lines declaring
 * locals and the C expressions to pass. Locals are named `a_<name>`.
 */
function nativeArgs(args, start = 0, declOf = (k) => k.decl) {
  const pre = [];
  const exprs = [];
  args.forEach(([name, kind], k) => {
    const K = argKinds[kind];
    const v = `a_${name}`;
    pre.push(...declOf(K).map((l) => `  ${subst(l, v, start + k)}`));
    exprs.push(...K.pass.map((e) => subst(e, v, start + k)));
  });
  return { pre, exprs };
}

/**
 * A call's glue: a call newer than libnbd 1.14 goes through its pointer in
 * `loaded::` (null where the loaded libnbd lacks it: ENOTSUP naming the
 * release that added it); an older one is linked, under its LIBNBD_HAVE_*.
 */
function guarded(call, body, failValue) {
  if (call.since) {
    return [`  if (${callee(call)} == nullptr) {`, `    RecordNotSupported("nbd_${call.name}", "${call.since}");`, `    return ${failValue};`, '  }', ...body];
  }
  return [`#ifdef ${macro(call.name)}`, ...body, '#else', `  RecordNotSupported("nbd_${call.name}", nullptr);`, `  return ${failValue};`, '#endif'];
}

/** What a native method returns on failure, when closed or when not built. */
const nativeFailValue = (R) => (R.nativeFail === 'null' ? 'env.Null()' : 'Napi::Number::New(env, -1)');

function simpleMethod(call) {
  const fn = callee(call);
  const { pre, exprs } = nativeArgs(call.args);
  const R = retKinds[call.ret];
  const failValue = nativeFailValue(R);
  const callExpr = `${fn}(${['h_', ...exprs].join(', ')})`;
  const body = [`  if (h_ == nullptr) { RecordClosed(); return ${failValue}; }`, ...pre];
  if (call.whileConnectQueued !== undefined) {
    // A connect task queued on the driver has not called libnbd yet (lock-free checks: the task may hold the lock).
    const cond = call.whileConnectQueued ? 'connects_queued_ > 0 && quiet::IsCreated(h_)' : 'connects_queued_ > 0';
    body.push(`  if (${cond}) return Napi::Boolean::New(env, ${call.whileConnectQueued});`);
  }
  body.push('  StagedEvents staged(this);  // debug messages');
  if (R.cDecl === null) {
    body.push(`  if (${callExpr} ${R.fail}) { RecordError(); return ${failValue}; }`);
    if (call.after !== undefined) body.push(`  ${call.after}`);
  } else {
    body.push(`  ${R.cDecl} = ${callExpr};`);
    if (R.fail !== null) body.push(`  if (r ${R.fail}) { RecordError(); return ${failValue}; }`);
  }
  if (call.seenState !== undefined) {
    // As of the events JS has been handed (EventQueue::PendingBefore).
    const seen = call.seenState === 'name' ? 'seen.name' : `(seen.is & state::k${pascal(call.seenState)}) != 0`;
    body.push(`  if (StateSnapshot seen; queue_.PendingBefore(&seen)) r = ${seen};`);
  }
  body.push(...R.toJs.map((l) => `  ${l}`));
  return [`Napi::Value NbdHandle::${pascal(call.name)}(const Napi::CallbackInfo& info) {`, '  Napi::Env env = info.Env();',
    ...guarded(call, body, failValue), '}'].join('\n');
}

/** Free functions: libnbd's trampolines (defined in native/generated/closures.cc) and the makers. */
function closureDecls() {
  const out = ['// Libnbd callbacks (run inside libnbd with the handle lock held; defined in native/generated/closures.cc).'];
  for (const [key, cl] of Object.entries(closures)) {
    out.push(`int ${trampoline(key)}(${['void* user_data', ...cParams(cl)].join(', ')});`);
  }
  out.push('// A command\'s closures: user_data is its CommandContext.');
  for (const [key, cl] of Object.entries(closures)) {
    if (cl.noMaker) continue;
    out.push(`inline ${closureStruct(key)} ${closureMaker(key)}(CommandContext* c) { return {${trampoline(key)}, c, nullptr}; }`);
  }
  return out;
}

function commandMethod(call, opt) {
  const fn = callee(call);
  const { pre, exprs } = nativeArgs(call.args);
  const cArgs = ['h_', ...exprs];
  if (call.closure) cArgs.push(`${closureMaker(call.closure)}(c)`);
  cArgs.push(`${closureMaker('completion')}(c)`);
  if (!opt) {
    pre.push(`  uint32_t a_flags = info[${call.args.length}].As<Napi::Number>().Uint32Value();`);
    cArgs.push('a_flags');
  }
  const buffer = call.args.find(([, k]) => argKinds[k].buffer);
  const base = buffer ? `a_${buffer[0]}` : 'nullptr';
  // What the reply carries: a read's whole buffer (the drain counts it).
  const replyBytes = buffer && argKinds[buffer[1]].replyData ? `a_${buffer[0]}_len` : '0';
  const body = [...pre,
    `  return Issue(env, ${base}, ${replyBytes}, ${opt}, [&](CommandContext* c) -> int64_t { return ${fn}(${cArgs.join(', ')}); });`];
  const lines = guarded(call, body, 'Napi::Number::New(env, -1)');
  // Data commands are the hot path: raw per-handle functions (native/util/raw_method.h).
  const infoType = opt ? 'Napi::CallbackInfo' : 'RawArgs';
  return [`Napi::Value NbdHandle::${pascal(call.name)}(const ${infoType}& info) {`, '  Napi::Env env = info.Env();',
    ...lines, '}'].join('\n');
}

function connectMethod(call) {
  const name = connectName(call);
  // The task may run on the I/O thread: it owns copies of the arguments.
  const { pre, exprs } = nativeArgs(call.args, 0, (K) => K.ownedDecl ?? K.decl);
  const captures = call.args.map(([n, k]) => subst(argKinds[k].owned ?? '$v', `a_${n}`));
  const taskPre = call.args.map(([n, k]) => (argKinds[k].taskDecl ? subst(argKinds[k].taskDecl, `a_${n}`) : ''));
  const taskExprs = exprs;
  const lock = call.subprocess ? 'InheritStdio keep_stdio; ' : '';
  const refused = call.args.filter(([, k]) => argKinds[k].refusedAtOnce).map(([n, k]) => subst(argKinds[k].refusedAtOnce, `a_${n}`));
  const now = refused.length === 0 ? [] : [
    `  if (${refused.join(' || ')}) {  // libnbd refuses it at once: its error now, as in C`,
    `    ${taskPre.join('')}return RefusedConnect(env, [&] { return nbd_${name}(${['h_', ...taskExprs].join(', ')}); });`, '  }'];
  const body = [...pre, ...now,
    `  return StartConnect(env, [${captures.join(', ')}](nbd_handle* h) mutable {`,
    `    ${taskPre.join('')}${lock}return nbd_${name}(${['h', ...taskExprs].join(', ')});`, `  }, ${call.subprocess ? 'true' : 'false'});`];
  return [`Napi::Value NbdHandle::${pascal(name)}(const Napi::CallbackInfo& info) {`, '  Napi::Env env = info.Env();',
    ...guarded({ name }, body, 'Napi::Number::New(env, -1)'), '}'].join('\n');
}

function moduleFunction(call) {
  const fail = 'env.Undefined()';  // lib/ turns it into NbdError ENOTSUP
  const convert = call.ret === 'bool' ? 'Napi::Boolean::New(env, r == 1)' : 'Napi::String::New(env, r)';
  const decl = call.ret === 'bool' ? 'int r' : 'const char* r';
  const body = ['  // These calls read nothing from the handle, but libnbd wants one.',
    '  nbd_handle* h = nbd_create();', `  if (h == nullptr) return ${fail};`,
    `  ${decl} = ${callee(call)}(h);`, `  Napi::Value v = ${convert};`, '  nbd_close(h);', '  return v;'];
  const lines = call.since ? [`  if (${callee(call)} == nullptr) return ${fail};`, ...body]
    : [`#ifdef ${macro(call.name)}`, ...body, '#else', `  return ${fail};`, '#endif'];
  return [`Napi::Value Module${pascal(call.name)}(const Napi::CallbackInfo& info) {`, '  Napi::Env env = info.Env();',
    ...lines, '}'].join('\n');
}

function nativeDecls() {
  const member = (decl) => `  ${decl}; \\`;
  return [banner('//') + '// What the table makes of NbdHandle (native/handle/nbd_handle.h): libnbd\'s callbacks and a',
    '// command\'s closures as free functions, and its methods\' declarations as one macro its class body names.',
    '#pragma once', '', '#include <libnbd.h>', '#include <napi.h>', '', '#include "libnbd_loaded.h"', '', 'namespace nbdjs {', '',
    'struct CommandContext;', 'class RawArgs;', '',
    ...closureDecls(), '', '}  // namespace nbdjs', '',
    '// NbdHandle\'s methods: the generated glue (native/generated/api_methods.cc), then the hand-written',
    '// glue (each in the native/ file of its stage; scripts/api-table.mjs `nativeSurface`).',
    '#define NBDJS_HANDLE_API_METHODS \\',
    ...nativeHandleMethods().map((n) => member(`Napi::Value ${pascal(n)}(const Napi::CallbackInfo& info)`)),
    ...commandCalls.map((c) => member(`Napi::Value ${pascal(c.name)}(const RawArgs& info)`)),
    ...nativeSurface.map((m) => member(`Napi::Value ${m.cpp}(const Napi::CallbackInfo& info)`)),
    '  /* end of NBDJS_HANDLE_API_METHODS */', ''].join('\n');
}

function nativeDefs() {
  const out = [banner('//'), '#include <cstdlib>', '#include <string_view>', '', '#include "../handle/nbd_handle.h"', '', 'namespace nbdjs {', '',
    '// ---------------------------------------------------------------- synchronous calls', ''];
  for (const c of simpleCalls) out.push(simpleMethod(c), '');
  out.push('// ---------------------------------------------------------------- data commands', '');
  for (const c of commandCalls) out.push(commandMethod(c, false), '');
  out.push('// ---------------------------------------------------------------- option negotiation', '');
  for (const c of optCalls) out.push(commandMethod(c, true), '');
  out.push('// ---------------------------------------------------------------- connects', '');
  for (const c of connectCalls) out.push(connectMethod(c), '');
  out.push('void NbdHandle::AddGeneratedMethods(std::vector<PropertyDescriptor>& methods) {');
  for (const m of nativeSurface) {
    out.push(`  methods.push_back(${m.accessor ? 'InstanceAccessor' : 'InstanceMethod'}<&NbdHandle::${m.cpp}>("${m.js}"));`);
  }
  for (const n of nativeHandleMethods()) out.push(`  methods.push_back(InstanceMethod<&NbdHandle::${pascal(n)}>("${camel(n)}"));`);
  out.push('}', '');
  out.push('void NbdHandle::AddRawMethods(napi_env env, napi_value target, HandleLink* link) {');
  for (const c of commandCalls) out.push(`  InstallRawMethod<&NbdHandle::${pascal(c.name)}>(env, target, "${camel(c.name)}", link);`);
  out.push('}', '');
  out.push('// ---------------------------------------------------------------- module functions', '');
  for (const c of moduleCalls) out.push(moduleFunction(c), '');
  out.push('void ExportModuleFunctions(Napi::Env env, Napi::Object target) {');
  for (const c of moduleCalls) out.push(`  target.Set("${camel(c.name)}", Napi::Function::New(env, Module${pascal(c.name)}, "${camel(c.name)}"));`);
  out.push('  // What the loaded libnbd has (its calls newer than 1.14, looked up when the addon loaded).', '  Napi::Object have = Napi::Object::New(env);');
  for (const e of haveEntries()) out.push(`  have.Set("${e.key}", Napi::Boolean::New(env, ${e.cond}));`);
  out.push('  target.Set("have", have);', '}', '');
  out.push(...exportConstants());
  out.push('// The string constants lib/ exports are the header\'s, where it defines them.');
  for (const c of stringConstants) {
    out.push(`#ifdef LIBNBD_${c.name}`,
      `static_assert(std::string_view(LIBNBD_${c.name}) == std::string_view(${JSON.stringify(c.value)}), "scripts/api-table.mjs: ${c.name}");`, '#endif');
  }
  out.push('', '}  // namespace nbdjs', '');
  return out.join('\n');
}

/**
 * ExportConstants: 1.14's constants with the header's values; newer ones
 * with the table's where the loaded libnbd has them; each mask the OR of its
 * family's members exported. The header must agree with the table.
 */
function exportConstants() {
  const masks = constants.filter(isMask);
  const familyMask = (n) => masks.find((m) => n.startsWith(`${m.mask}_`));
  const maskVar = (m) => `${camel(m.mask.toLowerCase())}Mask`;
  const out = ['void ExportConstants(Napi::Env env, Napi::Object target) {', '  const int minor = loaded::Minor();',
    '  auto set = [&](const char* name, double value) { target.Set(name, Napi::Number::New(env, value)); };',
    ...masks.map((m) => `  uint32_t ${maskVar(m)} = 0;`)];
  for (const c of constants) {
    const n = constName(c);
    if (isMask(c)) {
      out.push(`  set("${n}", ${maskVar(c)});`);
      continue;
    }
    const value = isOptionalConst(c) ? `0x${c.value.toString(16)}` : `LIBNBD_${n}`;
    const m = familyMask(n);
    const lines = [`set("${n}", ${value});`, ...(m ? [`${maskVar(m)} |= ${value};`] : [])];
    if (isOptionalConst(c)) out.push(`  if (minor >= ${minorOf(c.since)}) {`, ...lines.map((l) => `    ${l}`), '  }');
    else out.push(...lines.map((l) => `  ${l}`));
  }
  out.push('}', '', '// The header\'s values, where it has them, are the table\'s.');
  for (const c of constants.filter(isOptionalConst)) {
    out.push(`#ifdef LIBNBD_${c.name}`, `static_assert(LIBNBD_${c.name} == 0x${c.value.toString(16)}, "scripts/api-table.mjs: ${c.name}");`, '#endif');
  }
  for (const m of masks) {
    out.push(`static_assert(LIBNBD_${m.name} == (0u`);
    for (const c of constants) {
      const n = constName(c);
      if (isMask(c) || !n.startsWith(`${m.mask}_`)) continue;
      if (isOptionalConst(c)) out.push(`#ifdef LIBNBD_${n}`, `                                | LIBNBD_${n}`, '#endif');
      else out.push(`                                | LIBNBD_${n}`);
    }
    out.push(`                                ), "scripts/api-table.mjs: ${m.name} is the OR of its family");`);
  }
  out.push('');
  return out;
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'native/generated/api_methods.h': nativeDecls(),
  'native/generated/api_methods.cc': nativeDefs(),
});
