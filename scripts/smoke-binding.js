// Loads the binding (LIBNBD_BINDING may name another build, e.g. cmake-js's),
// reads from `nbdkit -s pattern` and checks the data.
const { Handle } = require('../dist/lib');

(async () => {
  const h = new Handle();
  await h.connectCommand(['nbdkit', '-s', '--exit-with-parent', 'pattern', 'size=1M']);
  const buf = Buffer.alloc(4096);
  await h.pread(buf, 65536);
  for (let i = 0; i < buf.length; i += 8) {
    if (buf.readBigUInt64BE(i) !== BigInt(65536 + i)) throw new Error(`bad data at ${65536 + i}`);
  }
  h.close();
  console.log(`binding ok: ${process.env.LIBNBD_BINDING || 'build/Release/nbd.node'}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
