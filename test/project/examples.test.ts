// The examples of examples/ (compiled to dist/examples by npm test's
// pretest) do what docs/guide.md says, against real servers.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { run } from '../helpers/cli';
import { pattern, startNbdkit, tempDir } from '../helpers/servers';

const MiB = 1024 * 1024;
const example = (name: string): string => join(__dirname, '..', '..', 'dist', 'examples', `${name}.js`);

describe('stream-gzip', () => {
  test('writes the export gzip-compressed: gunzipped, it equals the export', async () => {
    const size = 3 * MiB + 4096;
    const server = await startNbdkit('pattern', `size=${size}`);
    const out = join(tempDir(), 'disk.gz');
    const r = await run(process.execPath, [example('stream-gzip'), server.uri, out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(gunzipSync(readFileSync(out)).equals(pattern(0, size))).toBe(true);
  });

  test('gives up after --timeout with the AbortError of AbortSignal.timeout, exit status 1', async () => {
    // Every read takes 10 s: only the timeout can end it.
    const server = await startNbdkit('--filter=delay', 'pattern', 'size=64M', 'rdelay=10');
    const started = Date.now();
    const r = await run(process.execPath, [example('stream-gzip'), server.uri, join(tempDir(), 'disk.gz'), '--timeout', '0.5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('stream-gzip: The operation was aborted (The operation was aborted due to timeout)\n');
    expect(Date.now() - started).toBeLessThan(8000);
  });
});

describe('serve-http', () => {
  test('sends the export with GET, and the bytes of a Range (its end inclusive) with 206', async () => {
    const size = 2 * MiB;
    const data = pattern(0, size);
    const server = await startNbdkit('pattern', `size=${size}`);
    const child = spawn(process.execPath, [example('serve-http'), server.uri], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve(out.split('\n')[0]);
        });
        child.once('exit', (code) => reject(new Error(`serve-http exited (${code}) before listening`)));
      });
      const whole = await fetch(url);
      expect(whole.status).toBe(200);
      expect(whole.headers.get('content-length')).toBe(String(size));
      expect(Buffer.from(await whole.arrayBuffer()).equals(data)).toBe(true);

      const part = await fetch(url, { headers: { Range: 'bytes=1000-70999' } });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes 1000-70999/${size}`);
      expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(1000, 71000))).toBe(true);

      const tail = await fetch(url, { headers: { Range: `bytes=${size - 10}-` } });
      expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(size - 10))).toBe(true);

      const beyond = await fetch(url, { headers: { Range: `bytes=${size}-` } });
      expect(beyond.status).toBe(416);
      expect(beyond.headers.get('content-range')).toBe(`bytes */${size}`);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });
});
