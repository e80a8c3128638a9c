// Optimized code loads an imported function from its module's exports object
// as a constant only while that object has fast (non-dictionary) properties.
// A re-export (`export { x } from './y'`) makes tsc define a getter on the
// exports object, which turns it into a dictionary: every such load then
// calls V8's generic LoadIC (~100 instructions; 800 per command when it was
// lib/semantics.ts). lib/index.ts re-exports by design and is not on the
// per-command path.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const dist = join(__dirname, '..', '..', 'dist', 'lib');

function modules(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return modules(p);
    return p.endsWith('.js') ? [p] : [];
  });
}

test('every module of dist/lib but the index keeps a fast-mode exports object', () => {
  const files = modules(dist).filter((p) => relative(dist, p) !== 'index.js');
  expect(files.length).toBeGreaterThan(10);
  const probe = `
    const slow = [];
    for (const f of ${JSON.stringify(files)}) if (!%HasFastProperties(require(f))) slow.push(f);
    process.stdout.write(JSON.stringify(slow));`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '-e', probe], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  expect(JSON.parse(r.stdout).map((f: string) => relative(dist, f))).toEqual([]);
});

test('the probe tells a dictionary-mode exports object from a fast one', () => {
  // The check above could pass vacuously if %HasFastProperties said true of everything.
  const probe = `
    const e = {};
    e.a = e.b = void 0;
    const fast = %HasFastProperties(e);
    Object.defineProperty(e, 'a', { enumerable: true, get() { return 1; } });
    process.stdout.write(JSON.stringify([fast, %HasFastProperties(e)]));`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '-e', probe], { encoding: 'utf8' });
  expect(JSON.parse(r.stdout)).toEqual([true, false]);
});
