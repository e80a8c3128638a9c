// Opening an endpoint as a connected Handle: an NBD URI (connectUri) or a
// server command in brackets, started by systemd socket activation as
// nbdcopy and nbdinfo start it (libnbd makes the socket, the server inherits
// it, and closing the handle stops the server). Public API only.
import { Handle } from '../lib';
import { describeEndpoint, UsageError, type Endpoint } from './args';

export interface OpenOptions {
  /** Meta contexts added before connecting. */
  metaContexts?: string[];
  /** Called on the new handle before it connects (opt mode, full info, ...). */
  configure?: (h: Handle) => void;
  signal?: AbortSignal;
}

/** A new Handle connected to `e` (a URI or a command); closed again if the connect fails. */
export async function openHandle(e: Endpoint, options: OpenOptions = {}): Promise<Handle> {
  if (e.kind !== 'uri' && e.kind !== 'command') throw new UsageError(`'${describeEndpoint(e)}' is not an NBD URI or a [ server command ]`);
  const h = new Handle();
  try {
    // nbdinfo allows ?tls-psk-file= in URIs.
    h.setUriAllowLocalFile(true);
    for (const m of options.metaContexts ?? []) h.addMetaContext(m);
    options.configure?.(h);
    if (e.kind === 'uri') await h.connectUri(e.uri, { signal: options.signal });
    else await h.connectSystemdSocketActivation(e.argv, { signal: options.signal });
    return h;
  } catch (err) {
    h.close();
    throw err;
  }
}

/** Disconnects cleanly if it can, then closes (stopping a server it started). Never throws. */
export async function closeHandle(h: Handle): Promise<void> {
  await h[Symbol.asyncDispose]();
}
