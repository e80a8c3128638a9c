// Helpers of the lib/io tests: nbdinfo, qemu-img and friends as references.
import { spawnSync } from 'node:child_process';
import { Pool } from '../../lib';

/**
 * The stdout of a command run to its end (at most `timeoutMs`); throws with
 * its stderr unless it exits 0. It blocks this process: a server it connects
 * to must take more than one connection (qemu-nbd: -e N). (cli.ts's `run` is
 * the asynchronous one that resolves with any exit status.)
 */
export function commandOutput(cmd: string, args: string[], timeoutMs = 120_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' });
  if (r.error !== undefined) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export interface MapEntry {
  offset: number;
  length: number;
  flags: number;
}

/** `nbdinfo --map[=CONTEXT] --json URI` as { offset, length, flags } (nbdinfo merges neighbours of one type). */
export function nbdinfoMap(uri: string, context?: string): MapEntry[] {
  const out = commandOutput('nbdinfo', [context === undefined ? '--map' : `--map=${context}`, '--json', uri]);
  return (JSON.parse(out) as { offset: number; length: number; type: number }[]).map((e) => ({
    offset: e.offset,
    length: e.length,
    flags: e.type,
  }));
}

/** A map clipped to [start, end). */
export function clip(map: MapEntry[], start: number, end: number): MapEntry[] {
  const out: MapEntry[] = [];
  for (const e of map) {
    const from = Math.max(e.offset, start);
    const to = Math.min(e.offset + e.length, end);
    if (to > from) out.push({ offset: from, length: to - from, flags: e.flags });
  }
  return out;
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const pools: Pool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

/** Pool.connect(uri, options), the pool closed after the test file. */
export async function pool(uri: string, options?: Parameters<typeof Pool.connect>[1]): Promise<Pool> {
  const p = await Pool.connect(uri, options);
  pools.push(p);
  return p;
}
