// The layers import downwards only (docs/architecture.md, "Layers"):
// bin → lib (the public index) → lib/io → lib core (lib/*.ts, lib/handle/,
// lib/generated/) → native. A layer may skip those below it (nbdjs info
// stands on lib core alone, for its start-up time). Read from the sources, type-only imports included.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(__dirname, '..', '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\b(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The repository files a source imports (relative specifiers only). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith('.')) continue;
    const base = join(dirname(file), spec);
    const target = [`${base}.ts`, join(base, 'index.ts'), `${base}.d.ts`, base].find((p) => existsSync(join(root, p)) && statSync(join(root, p)).isFile());
    found.push(target ?? `${base} (unresolved)`);
  }
  return found;
}

/** A file's layer, lowest first; undefined outside lib/ and bin/. */
function layer(file: string): number | undefined {
  if (file.startsWith('typings/') || file.startsWith('native/')) return 0;
  if (file === 'lib/index.ts') return 3;
  if (file.startsWith('lib/io/')) return 2;
  if (file.startsWith('lib/')) return 1;
  if (file.startsWith('bin/')) return 4;
  return undefined;
}
const NAMES = ['native', 'lib core', 'lib/io', 'lib (index)', 'bin'];

const files = [...sources('lib'), ...sources('bin')];
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('every relative import of lib/ and bin/ names a file that exists', () => {
  const unresolved = [...graph].flatMap(([f, deps]) => deps.filter((d) => d.endsWith('(unresolved)')).map((d) => `${f} -> ${d}`));
  expect(unresolved).toEqual([]);
});

test('no module imports a layer above its own', () => {
  const upward: string[] = [];
  for (const [from, deps] of graph) {
    for (const to of deps) {
      const a = layer(from);
      const b = layer(to);
      if (a !== undefined && b !== undefined && b > a) upward.push(`${from} (${NAMES[a]}) -> ${to} (${NAMES[b]})`);
    }
  }
  expect(upward).toEqual([]);
});

test('no import cycle among the modules of lib/ and bin/', () => {
  // Tarjan's strongly connected components; a component of more than one
  // module (or a module importing itself) is a cycle.
  let index = 0;
  const seen = new Map<string, { index: number; low: number; onStack: boolean }>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (v: string) => {
    const node = { index, low: index, onStack: true };
    index++;
    seen.set(v, node);
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      const other = seen.get(w);
      if (other === undefined) {
        visit(w);
        node.low = Math.min(node.low, seen.get(w)!.low);
      } else if (other.onStack) node.low = Math.min(node.low, other.index);
    }
    if (node.low === node.index) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        seen.get(w)!.onStack = false;
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort().join(' <-> '));
    }
  };
  for (const f of graph.keys()) if (!seen.has(f)) visit(f);
  expect(cycles).toEqual([]);
});

test('the checker sees imports: lib/index.ts imports lib/handle/handle.ts and lib/io/handle-methods.ts', () => {
  expect(graph.get('lib/index.ts')).toEqual(expect.arrayContaining(['lib/handle/handle.ts', 'lib/io/handle-methods.ts']));
  expect(relative(root, join(root, 'lib', 'index.ts'))).toBe('lib/index.ts');
});
