// Measures Handle#createReadStream / #createWriteStream and
// Pool#createReadStream against nbdcopy on one `nbdkit memory` server, over a
// grid of request sizes, queue depths, highWaterMarks, connections and
// drivers: what the streams' and the Pool's defaults were chosen from.
//
//   npx tsc -p tsconfig.json && node dist/bench/streams.js [--size 1G] [--runs 3] [--quick]
//
// Prints one line per configuration: median seconds, MiB/s and CPU time over
// the runs, each run going through every configuration in turn.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createReadStream as fileReadStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Pool, connect, type Driver } from '../lib';

const KiB = 1024;
const MiB = 1024 * KiB;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const quick = process.argv.includes('--quick');
const sizeArg = arg('--size', quick ? '256M' : '1G');
const size = Number(sizeArg.replace(/[GMK]$/, '')) * ({ G: 1024 * MiB, M: MiB, K: KiB }[sizeArg.slice(-1)] ?? 1);
const runs = Number(arg('--runs', quick ? '1' : '3'));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Case {
  group: string;
  what: string;
  run: () => Promise<void>;
  secs: number[];
  cpu: number[];
}

/** Runs `f`, returning wall seconds and this process's CPU seconds (user + system; child processes such as nbdcopy not counted). */
async function time(f: () => Promise<void>): Promise<[number, number]> {
  const c = process.cpuUsage();
  const t = process.hrtime.bigint();
  await f();
  const used = process.cpuUsage(c);
  return [Number(process.hrtime.bigint() - t) / 1e9, (used.user + used.system) / 1e6];
}

const discard = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'libnbd-bench-streams-'));
  const socket = join(dir, 'nbd.sock');
  const pidfile = join(dir, 'nbdkit.pid');
  const uri = `nbd+unix:///?socket=${socket}`;
  const server = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', socket, '-P', pidfile, 'memory', `size=${size}`], { stdio: 'inherit' });
  try {
    while (!existsSync(pidfile)) await new Promise((r) => setTimeout(r, 20));
    execFileSync('nbdcopy', ['--', '[', 'nbdkit', 'random', `size=${size}`, 'seed=1', ']', uri]);
    const file = join(dir, 'data.raw');
    execFileSync('nbdcopy', [uri, file]);

    const cases: Case[] = [];
    const add = (group: string, what: string, run: () => Promise<void>): void => void cases.push({ group, what, run, secs: [], cpu: [] });
    const withHandle = (f: (h: Awaited<ReturnType<typeof connect>>) => Promise<void>) => async (): Promise<void> => {
      const h = await connect(uri);
      try {
        await f(h);
      } finally {
        h.close();
      }
    };

    const read = 'read: export -> discarding Writable';
    add(read, 'nbdcopy --connections=1 URI null: (256K x 64)', async () => {
      spawnSync('nbdcopy', ['--connections=1', uri, 'null:'], { stdio: 'inherit' });
    });
    const readGrid: [number, number, number][] = [];
    for (const rs of quick ? [256 * KiB, 1 * MiB] : [128 * KiB, 256 * KiB, 1 * MiB]) {
      for (const qd of quick ? [16] : [4, 16, 64]) readGrid.push([rs, qd, 1 * MiB]);
    }
    if (!quick) readGrid.push([256 * KiB, 16, 16 * KiB], [256 * KiB, 16, 4 * MiB]);
    for (const [requestSize, queueDepth, highWaterMark] of readGrid) {
      add(read, `stream requestSize=${requestSize / KiB}K queueDepth=${queueDepth} hwm=${highWaterMark / KiB}K`,
        withHandle((h) => pipeline(h.createReadStream({ requestSize, queueDepth, highWaterMark }), discard())));
    }

    const pooled = 'read: Pool -> discarding Writable';
    add(pooled, 'nbdcopy URI null: (its defaults)', async () => {
      spawnSync('nbdcopy', [uri, 'null:'], { stdio: 'inherit' });
    });
    const poolGrid: [number, Driver, number, number][] = quick
      ? [[2, 'thread', 1 * MiB, 16]]
      : [
          [2, 'loop', 1 * MiB, 16],
          [2, 'thread', 1 * MiB, 16],
          [3, 'thread', 1 * MiB, 16],
          [4, 'thread', 1 * MiB, 16],
          [2, 'thread', 1 * MiB, 8],
          [2, 'thread', 1 * MiB, 32],
          [2, 'thread', 2 * MiB, 8],
          [2, 'thread', 512 * KiB, 32],
          [2, 'thread', 256 * KiB, 64],
        ];
    for (const [connections, driver, requestSize, queueDepth] of poolGrid) {
      add(pooled, `pool connections=${connections} ${driver} requestSize=${requestSize / KiB}K queueDepth=${queueDepth}`, async () => {
        const pool = await Pool.connect(uri, { connections, driver });
        try {
          await pipeline(pool.createReadStream({ requestSize, queueDepth }), discard());
        } finally {
          await pool.close();
        }
      });
    }

    const write = 'write: file (fs.createReadStream, 64 KiB chunks) -> export';
    add(write, 'cat FILE | nbdcopy --connections=1 - URI', async () => {
      spawnSync('sh', ['-c', `cat '${file}' | nbdcopy --connections=1 - '${uri}'`], { stdio: 'inherit' });
    });
    for (const hwm of quick ? [1 * MiB] : [256 * KiB, 1 * MiB, 4 * MiB]) {
      for (const qd of quick ? [8] : [2, 8, 32]) {
        add(write, `file -> stream hwm=${hwm / KiB}K queueDepth=${qd}`,
          withHandle((h) => pipeline(fileReadStream(file), h.createWriteStream({ highWaterMark: hwm, queueDepth: qd }))));
      }
    }
    // An in-memory producer of 64 KiB chunks: the stream's own cost, without the file.
    const chunk = Buffer.alloc(64 * KiB, 0x5a);
    const memory = 'write: in-memory 64 KiB chunks -> export';
    for (const hwm of quick ? [1 * MiB] : [256 * KiB, 1 * MiB, 4 * MiB]) {
      add(memory, `memory -> stream hwm=${hwm / KiB}K queueDepth=8`,
        withHandle((h) => {
          const source = Readable.from((function* () {
            for (let n = 0; n < size; n += chunk.length) yield chunk;
          })());
          return pipeline(source, h.createWriteStream({ highWaterMark: hwm, queueDepth: 8 }));
        }));
    }

    // Interleaved: run r of every case, then run r + 1, so that every case
    // sees the same share of whatever else the machine is doing.
    for (let r = 0; r < runs; r++) {
      for (const c of cases) {
        const [secs, cpu] = await time(c.run);
        c.secs.push(secs);
        c.cpu.push(cpu);
      }
      process.stderr.write(`run ${r + 1}/${runs} done\n`);
    }
    console.log(`# export ${sizeArg}, ${runs} run(s), interleaved; median wall time, MiB/s, and this process's median CPU time`);
    let group = '';
    for (const c of cases) {
      if (c.group !== group) console.log(`## ${(group = c.group)}`);
      const m = median(c.secs);
      console.log(`${c.what.padEnd(58)} ${m.toFixed(3).padStart(7)} s ${(size / MiB / m).toFixed(0).padStart(6)} MiB/s  cpu ${median(c.cpu).toFixed(2)} s`);
    }
  } finally {
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
