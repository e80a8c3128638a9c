// nbdjs info's printf: %5.1f and %g as C prints a double (its exact binary
// value rounded half to even), against Python's %-formatting, which rounds
// the same way, over seeded random doubles and the ties between them.
import { fixed, general } from '../../bin/info/text';
import { runPython } from '../helpers/python';

/** mulberry32: the same numbers every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Percentages as nbdinfo computes them (100.0 * part / size), with exact ties (6.25, 0.05...) and extremes among them. */
function percentages(): number[] {
  const next = random(7);
  const out = [0, 100, 6.25, 93.75, 0.05, 0.25, 0.35, 99.95, 2.5e-7, 1e-4, 9.99995e-5, 123456.5, 999999.5, 5e-324];
  for (let i = 0; i < 2000; i++) {
    const size = Math.floor(next() * 2 ** (10 + next() * 43)) + 1;
    const part = Math.floor(next() * size) + 1;
    out.push((100 * part) / size);
  }
  for (let i = 0; i < 200; i++) out.push(Math.floor(next() * 2000) / 8);
  return out;
}

const script = `
import json, sys
xs = json.load(sys.stdin)
print(json.dumps([['%5.1f' % x, '%g' % x] for x in xs]))
`;

test("%5.1f and %g print every percentage as C's printf does", async () => {
  const xs = percentages();
  const expected = await runPython<[string, string][]>(script, { input: xs });
  const ours = xs.map((x) => [fixed(x, 1).padStart(5), general(x)]);
  const wrong = ours.map((o, i) => [xs[i], o, expected[i]]).filter(([, o, e]) => JSON.stringify(o) !== JSON.stringify(e));
  expect(wrong).toEqual([]);
  expect(expected[2]).toEqual(['  6.2', '6.25']);
});
