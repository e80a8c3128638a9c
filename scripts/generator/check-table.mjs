// Checks scripts/api-table.mjs before anything is emitted: a table mistake fails the generation.
import {
  simpleCalls,
  commandCalls,
  optCalls,
  connectCalls,
  moduleCalls,
  customCalls,
  ownedCalls,
  constants,
  stringConstants,
  argKinds,
  retKinds,
  cbArgKinds,
  closures,
  abiTypes,
  nativeSurface,
} from '../api-table.mjs';
import {
  camel,
  constName,
  isOptionalConst,
  isMask,
  connectName,
} from './common.mjs';

/** The table's mistakes (unknown kinds, duplicate names, constant families or flags that do not exist); none: []. */
export function checkTable() {
  const problems = [];
  const constNames = new Set(constants.map(constName));
  const version = (v) => /^1\.\d+$/.test(v) && Number(v.split('.')[1]) > 14;
  const checkArgs = (where, args) => {
    const seen = new Set();
    for (const [n, k, fam] of args) {
      if (!(k in argKinds)) problems.push(`${where}: argument ${n} has unknown kind ${k}`);
      if (seen.has(n)) problems.push(`${where}: duplicate argument ${n}`);
      seen.add(n);
      if (fam !== undefined) {
        if (!argKinds[k]?.family) problems.push(`${where}: argument ${n} of kind ${k} cannot name a constant family`);
        if (![...constNames].some((c) => c.startsWith(`${fam}_`))) problems.push(`${where}: no constant of family ${fam}_*`);
      }
    }
  };
  const checkCall = (where, c) => {
    if (c.have !== undefined && c.have !== true) problems.push(`${where}: have must be true (the macro follows from the name)`);
    if (c.have && !version(c.since ?? '')) problems.push(`${where}: a call guarded by have needs since: '1.NN' (> 1.14)`);
    if (!c.have && c.since !== undefined) problems.push(`${where}: since without have (calls of libnbd 1.14 need no guard)`);
    if (c.closure !== undefined && !(c.closure in closures)) problems.push(`${where}: unknown closure ${c.closure}`);
  };
  for (const c of simpleCalls) {
    checkArgs(c.name, c.args);
    checkCall(c.name, c);
    if (!(c.ret in retKinds)) problems.push(`${c.name}: unknown return kind ${c.ret}`);
    if (c.whileConnectQueued !== undefined && c.ret !== 'bool') problems.push(`${c.name}: whileConnectQueued needs ret bool`);
    if (c.seenState !== undefined && !['created', 'connecting', 'negotiating', 'ready', 'processing', 'dead', 'closed', 'name'].includes(c.seenState)) {
      problems.push(`${c.name}: seenState names no state`);
    }
  }
  for (const c of [...commandCalls, ...optCalls]) {
    checkArgs(c.name, c.args);
    checkCall(c.name, c);
  }
  for (const c of commandCalls) {
    if (!Array.isArray(c.flags)) problems.push(`${c.name}: flags (the accepted CMD_FLAG_* names) missing`);
    for (const f of c.flags ?? []) if (!constNames.has(`CMD_FLAG_${f}`)) problems.push(`${c.name}: no constant CMD_FLAG_${f}`);
    if (c.args.filter(([, k]) => argKinds[k]?.buffer).length > 1) problems.push(`${c.name}: more than one buffer`);
  }
  for (const c of connectCalls) checkArgs(c.name, c.args);
  for (const c of moduleCalls) {
    checkCall(c.name, c);
    if (!['bool', 'static_string'].includes(c.ret)) problems.push(`${c.name}: module functions return bool or static_string`);
  }
  for (const c of customCalls) {
    if (!nativeSurface.some((m) => m.js === c.native)) problems.push(`${c.name}: native ${c.native} is not in nativeSurface`);
  }
  for (const [key, cl] of Object.entries(closures)) {
    for (const [n, k] of [...cl.args, ...(cl.jsArgs ?? [])]) if (!(k in cbArgKinds)) problems.push(`closure ${key}: argument ${n} has unknown kind ${k}`);
    if (!['many', 'once', 'until replaced'].includes(cl.calls)) problems.push(`closure ${key}: calls must be many, once or until replaced`);
  }
  // Names: each libnbd function once, each JS name once.
  const dup = (what, names) => {
    const seen = new Set();
    for (const n of names) {
      if (seen.has(n)) problems.push(`duplicate ${what} ${n}`);
      seen.add(n);
    }
  };
  dup('libnbd call', [...simpleCalls, ...commandCalls, ...optCalls, ...moduleCalls, ...customCalls, ...ownedCalls].map((c) => c.name)
    .concat(commandCalls.map((c) => c.sync), optCalls.map((c) => c.sync), connectCalls.flatMap((c) => [connectName(c), `connect_${c.name}`])));
  for (const c of constants) {
    if (typeof c === 'string') continue;
    if (isOptionalConst(c) && !version(c.since)) problems.push(`constant ${c.name}: since must be '1.NN' (> 1.14)`);
    if (isOptionalConst(c) !== Number.isInteger(c.value)) problems.push(`constant ${c.name}: a value goes with since (and only with it)`);
    if (isMask(c) && !constants.some((m) => m !== c && constName(m).startsWith(`${c.mask}_`))) problems.push(`constant ${c.name}: no member of family ${c.mask}_*`);
    if (!isOptionalConst(c) && !isMask(c)) problems.push(`constant ${c.name}: an object needs since and value, or mask`);
  }
  for (const t of abiTypes) if (!version(t.since) || !t.guard) problems.push(`type ${t.name}: needs since (> 1.14) and the guard macro of its header`);
  dup('constant', [...constants.map(constName), ...stringConstants.map((c) => c.name)]);
  dup('native method', [...simpleCalls.map((c) => c.name), ...optCalls.map((c) => c.name), ...commandCalls.map((c) => c.name),
    ...connectCalls.map(connectName)].map(camel).concat(nativeSurface.map((m) => m.js)));
  return problems;
}
