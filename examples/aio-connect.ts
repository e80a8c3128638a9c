// C's aio connect loop, ported line by line:
//
//   if (nbd_aio_connect_uri (nbd, uri) == -1) { error }
//   while (nbd_aio_is_connecting (nbd)) { poll ... }
//   if (!nbd_aio_is_ready (nbd)) { error }
//
// Here the "poll" is one turn of Node's event loop (the handle's driver does
// the socket work); what C returns as -1 from the call arrives as 'connect'.
//
//   node dist/examples/aio-connect.js [URI]
//
// Without a URI it starts `nbdkit -s memory size=1M` through
// aioConnectCommand.
import { CONTEXT_BASE_ALLOCATION, Handle, NbdError, have } from '../lib';

async function main(): Promise<void> {
  const uri = process.argv[2];
  const h = new Handle();
  let failure: NbdError | undefined;
  h.on('connect', (e: NbdError | undefined) => (failure = e));
  h.addMetaContext(CONTEXT_BASE_ALLOCATION);
  if (uri !== undefined) h.aioConnectUri(uri);
  else h.aioConnectCommand(['nbdkit', '-s', 'memory', 'size=1M']);
  while (h.aioIsConnecting()) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r)); // the 'connect' event of a failed call
  if (!h.aioIsReady()) throw failure ?? new Error(`not connected: ${h.connectionState()}`);
  console.log(`size ${h.getSize()}, base:allocation ${h.canMetaContext(CONTEXT_BASE_ALLOCATION)}`);
  if (have.statsBytesReceived) console.log(`received ${h.statsBytesReceived()} bytes so far`);
  await h.shutdown();
  h.close();
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
