// test/generated/coverage.ts: every libnbd function the table covers or owns (test-only: not shipped).
import {
  simpleCalls,
  commandCalls,
  optCalls,
  connectCalls,
  moduleCalls,
  customCalls,
  ownedCalls,
} from '../api-table.mjs';
import {
  banner,
  connectName,
} from './common.mjs';

/** Every C function name the table accounts for (checked against libnbd.h by the tests). */
function coverage() {
  const names = new Set();
  for (const c of simpleCalls) names.add(c.name);
  for (const c of commandCalls) names.add(c.name).add(c.sync);
  for (const c of optCalls) names.add(c.name).add(c.sync);
  for (const c of connectCalls) names.add(connectName(c)).add(`connect_${c.name}`);
  for (const c of moduleCalls) names.add(c.name);
  for (const c of customCalls) names.add(c.name);
  for (const c of ownedCalls) names.add(c.name);
  return banner('//') + `// The libnbd functions (without nbd_) the API table covers or owns.\nexport const coveredFunctions: readonly string[] = ${JSON.stringify([...names].sort(), null, 2)};\n`;
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'test/generated/coverage.ts': coverage(),
});
