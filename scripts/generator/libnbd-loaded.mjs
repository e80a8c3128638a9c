// native/generated/libnbd_loaded.{h,cc}: the pointer table of libnbd's calls newer than 1.14, filled
// with dlvsym when the addon loads, and the ABI types and checks they need.
import {
  simpleCalls,
  commandCalls,
  optCalls,
  moduleCalls,
  argKinds,
  retKinds,
  cbArgKinds,
  closures,
  abiTypes,
} from '../api-table.mjs';
import {
  banner,
  macro,
  closureStruct,
  cParams,
} from './common.mjs';

/** Calls newer than libnbd 1.14, each with the family that shapes its prototype. */
const newerCalls = () => [
  ...simpleCalls.filter((c) => c.since).map((call) => ({ call, family: 'simple' })),
  ...commandCalls.filter((c) => c.since).map((call) => ({ call, family: 'command' })),
  ...optCalls.filter((c) => c.since).map((call) => ({ call, family: 'opt' })),
  ...moduleCalls.filter((c) => c.since).map((call) => ({ call, family: 'module' })),
];

/** libnbd's C prototype of a call, from the table's kinds, as a pointer declarator around `name`. */
function prototype({ call, family }, name) {
  const params = ['struct nbd_handle*'];
  for (const [, k] of call.args ?? []) params.push(argKinds[k].c, ...(argKinds[k].buffer ? ['size_t'] : []));
  if (family === 'command' || family === 'opt') {
    if (call.closure) params.push(closureStruct(call.closure));
    params.push(closureStruct('completion'));
    if (family === 'command') params.push('uint32_t');
  }
  const ret = { command: 'int64_t', opt: 'int' }[family] ?? retKinds[call.ret].c;
  return `${ret} (*${name})(${params.join(', ')})`;
}

/** A closure's C callback pointer type, as libnbd.h declares its struct's `callback`. */
const closureCallbackType = (cl) => `int (*)(${['void*', ...cl.args.flatMap(([, k]) => cbArgKinds[k].c.map((t) => t.replace(/\s+(\$n|\w+)$/, '')))].join(', ')})`;

function loadedHeader() {
  const out = [banner('//') + '// libnbd\'s calls newer than 1.14 (scripts/api-table.mjs: `since`), as pointers the addon fills',
    '// when it loads from the libnbd it is linked to, and the types they need where the build\'s',
    '// libnbd.h lacks them. The addon itself links nothing past LIBNBD_1.12 (scripts/check-symbols.mjs),',
    '// so one binary runs on every libnbd from 1.14 on and uses what the loaded one has.',
    '#pragma once', '', '#include <libnbd.h>', '', '#include <cstddef>', '#include <cstdint>', ''];
  for (const t of abiTypes) {
    out.push(`// libnbd >= ${t.since}.`, `#ifndef ${t.guard}`, 'typedef struct {', ...t.fields.map(([n, ty]) => `  ${ty} ${n};`), `} ${t.name};`, '#endif', '');
  }
  for (const [key, cl] of Object.entries(closures)) {
    if (!cl.since) continue;
    out.push(`// libnbd >= ${cl.since}.`, `#ifndef ${cl.have}`, 'typedef struct {',
      `  int (*callback)(${['void* user_data', ...cParams(cl)].join(', ')});`, '  void* user_data;', '  void (*free)(void* user_data);',
      `} ${closureStruct(key)};`, '#endif', '');
  }
  out.push('namespace nbdjs::loaded {', '', '// Null where the loaded libnbd lacks the call.');
  for (const n of newerCalls()) out.push(`extern ${prototype(n, `nbd_${n.call.name}`)};  // LIBNBD_${n.call.since}`);
  out.push('', '// Fills the pointers and reads the version, once per process (every env\'s Init calls it;',
    '// the pointers never change afterwards).', 'void Resolve();', '',
    '// The loaded libnbd\'s minor version (1.MINOR.x) and its version string (nbd_get_version).', 'int Minor();',
    'const char* Version();', '',
    '}  // namespace nbdjs::loaded', '');
  return out.join('\n');
}

function loadedSource() {
  const out = [banner('//'), '#include "libnbd_loaded.h"', '', '#include <dlfcn.h>', '', '#include <cstdlib>', '#include <cstring>',
    '#include <mutex>', '#include <type_traits>', '',
    '// Where the build\'s header has a type or call, it must be what the table says.'];
  for (const t of abiTypes) {
    const mirror = `TableLayout_${t.name}`;
    out.push(`#ifdef ${t.guard}`, `struct ${mirror} {`, ...t.fields.map(([n, ty]) => `  ${ty} ${n};`), '};',
      `static_assert(sizeof(${t.name}) == sizeof(${mirror}), "scripts/api-table.mjs: ${t.name}");`);
    for (const [n, ty] of t.fields) {
      out.push(`static_assert(offsetof(${t.name}, ${n}) == offsetof(${mirror}, ${n}) && std::is_same_v<decltype(${t.name}::${n}), ${ty}>,`,
        `              "scripts/api-table.mjs: ${t.name}.${n}");`);
    }
    out.push('#endif');
  }
  for (const [key, cl] of Object.entries(closures)) {
    if (!cl.since) continue;
    const st = closureStruct(key);
    out.push(`#ifdef ${cl.have}`,
      `static_assert(std::is_same_v<decltype(${st}::callback), ${closureCallbackType(cl)}> &&`,
      `              std::is_same_v<decltype(${st}::user_data), void*> && std::is_same_v<decltype(${st}::free), void (*)(void*)> &&`,
      `              offsetof(${st}, user_data) == sizeof(void*) && offsetof(${st}, free) == 2 * sizeof(void*),`,
      `              "scripts/api-table.mjs: ${st}");`, '#endif');
  }
  // libnbd.h's attributes (nonnull, warn_unused_result) are no part of the type compared.
  out.push('#pragma GCC diagnostic push', '#pragma GCC diagnostic ignored "-Wignored-attributes"');
  for (const n of newerCalls()) {
    out.push(`#ifdef ${macro(n.call.name)}`,
      `static_assert(std::is_same_v<decltype(&::nbd_${n.call.name}), decltype(nbdjs::loaded::nbd_${n.call.name})>, "scripts/api-table.mjs: nbd_${n.call.name}");`, '#endif');
  }
  out.push('#pragma GCC diagnostic pop', '', 'namespace nbdjs::loaded {', '');
  for (const n of newerCalls()) out.push(`${prototype(n, `nbd_${n.call.name}`)} = nullptr;`);
  out.push('', 'namespace {', '', 'std::once_flag resolved;', 'int minor = 0;', 'const char* version = "unknown";  // libnbd\'s static string', '',
    '// The symbol at its version node, as the linker would have bound it (plain dlsym without dlvsym).',
    'template <typename F>',
    'void Bind(void* lib, F*& slot, const char* name, const char* version) {',
    '#ifdef __GLIBC__',
    '  slot = reinterpret_cast<F*>(dlvsym(lib, name, version));',
    '#else',
    '  (void)version;',
    '  slot = reinterpret_cast<F*>(dlsym(lib, name));',
    '#endif',
    '}', '',
    'void ResolveOnce() {',
    '  // The libnbd this addon is linked to, already loaded (RTLD_NOLOAD): the file that holds',
    '  // its nbd_create, else the soname.',
    '  void* lib = nullptr;',
    '  Dl_info where{};',
    '  if (dladdr(reinterpret_cast<void*>(&nbd_create), &where) != 0 && where.dli_fname != nullptr) {',
    '    lib = dlopen(where.dli_fname, RTLD_NOW | RTLD_NOLOAD);',
    '  }',
    '  if (lib == nullptr) lib = dlopen("libnbd.so.0", RTLD_NOW | RTLD_NOLOAD);',
    '  if (lib != nullptr) {');
  for (const n of newerCalls()) out.push(`    Bind(lib, nbd_${n.call.name}, "nbd_${n.call.name}", "LIBNBD_${n.call.since}");`);
  out.push('    dlclose(lib);  // the addon\'s own link keeps libnbd loaded', '  }',
    '  // "1.MINOR.PATCH"', '  if (nbd_handle* h = nbd_create()) {', '    if (const char* v = nbd_get_version(h)) version = v;',
    '    const char* dot = std::strchr(version, \'.\');',
    '    if (dot != nullptr) minor = static_cast<int>(std::strtol(dot + 1, nullptr, 10));', '    nbd_close(h);', '  }',
    '}', '', '}  // namespace', '',
    'void Resolve() { std::call_once(resolved, ResolveOnce); }', '',
    'int Minor() { return minor; }', '', 'const char* Version() { return version; }', '', '}  // namespace nbdjs::loaded', '');
  return out.join('\n');
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'native/generated/libnbd_loaded.h': loadedHeader(),
  'native/generated/libnbd_loaded.cc': loadedSource(),
});
