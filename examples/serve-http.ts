// Serves an export over HTTP from a Pool: GET / sends it whole, a Range
// header (bytes=A-B, B inclusive as createReadStream's end; bytes=A- to the
// end) sends a part with 206. A client that goes away destroys its stream,
// which stops issuing reads; the pool stays open for the next request.
//
//   node dist/examples/serve-http.js URI [PORT]     (PORT 0 or none: any free port)
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Pool } from '../lib';

/** [start, end] inclusive, or undefined for the whole export, or 'unsatisfiable'. */
function parseRange(header: string | undefined, size: number): [number, number] | undefined | 'unsatisfiable' {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header);
  if (m === null) return undefined; // not a single range: send everything, as servers may
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start <= end ? [start, end] : 'unsatisfiable';
}

async function main(): Promise<void> {
  const [uri, port = '0'] = process.argv.slice(2);
  if (uri === undefined) throw new Error('usage: serve-http URI [PORT]');
  const pool = await Pool.connect(uri);
  const size = pool.getSize();

  const send = (res: ServerResponse, start: number, end: number): void => {
    if (end < start) {
      res.end(); // an empty export
      return;
    }
    pipeline(pool.createReadStream({ start, end }), res).catch((e: NodeJS.ErrnoException) => {
      // The client went away: not worth a line. Anything else is.
      if (e.code !== 'ERR_STREAM_PREMATURE_CLOSE') console.error(`serve-http: ${e.message}`);
    });
  };

  const server = createServer((req, res) => {
    if (req.method !== 'GET') {
      res.writeHead(405, { Allow: 'GET' }).end();
      return;
    }
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
    } else if (range === undefined) {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size, 'Accept-Ranges': 'bytes' });
      send(res, 0, size - 1);
    } else {
      const [start, end] = range;
      res.writeHead(206, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': end - start + 1,
        'Content-Range': `bytes ${start}-${end}/${size}`,
      });
      send(res, start, end);
    }
  });
  server.listen(Number(port), '127.0.0.1', () => {
    console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  });
  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    void pool.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: Error) => {
  console.error(`serve-http: ${e.message}`);
  process.exitCode = 1;
});
