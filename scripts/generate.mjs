#!/usr/bin/env node
// Writes the per-call glue, TS methods, typings and API reference from
// scripts/api-table.mjs (and the event wire from scripts/event-wire.mjs), as
// libnbd's generator does: the table is checked, then each emitter under
// scripts/generator/ gives the text of its files. `--check` writes nothing and
// fails when a generated file on disk differs from what the tables give (stale).
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkTable } from './generator/check-table.mjs';
import * as eventWire from './generator/event-wire.mjs';
import * as closures from './generator/closures.mjs';
import * as nativeMethods from './generator/native-methods.mjs';
import * as libnbdLoaded from './generator/libnbd-loaded.mjs';
import * as tsMethods from './generator/ts-methods.mjs';
import * as callbacks from './generator/callbacks.mjs';
import * as coverage from './generator/coverage.mjs';
import * as typings from './generator/typings.mjs';
import * as apiDoc from './generator/api-doc.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

for (const [table, problems] of [['scripts/api-table.mjs', checkTable()], ['scripts/event-wire.mjs', eventWire.checkWire()], ['closures and their events', closures.checkClosures()]]) {
  if (problems.length === 0) continue;
  console.error(`${table}:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}

const files = {};
for (const emitter of [eventWire, closures, nativeMethods, libnbdLoaded, tsMethods, callbacks, coverage, typings, apiDoc]) {
  for (const [rel, text] of Object.entries(emitter.outputs())) {
    if (rel in files) throw new Error(`two emitters write ${rel}`);
    files[rel] = text;
  }
}

const check = process.argv.includes('--check');
const stale = [];
for (const [rel, text] of Object.entries(files)) {
  const path = join(root, rel);
  let current = null;
  try { current = readFileSync(path, 'utf8'); } catch { /* missing */ }
  if (current === text) continue;
  if (check) stale.push(relative(root, path));
  else { mkdirSync(dirname(path), { recursive: true }); writeFileSync(path, text); console.log(`wrote ${rel}`); }
}
if (stale.length) {
  console.error(`generated files are stale (run npm run generate): ${stale.join(', ')}`);
  process.exit(1);
}
