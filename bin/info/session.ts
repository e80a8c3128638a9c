// What nbdinfo's files share (its globals), its do_connect, and its way of
// failing: a message on stderr and exit status 1 (Fatal here).
// lib core only: loading the package's entry would load lib/io (Pool, copy) too.
import { NbdError } from '../../lib/errors';
import { Handle } from '../../lib/handle/handle';
import type { Flavour } from './flavour';
import type { InfoOptions } from './options';
import type { Output } from './text';

/** nbdinfo's two modes: an NBD URI, or a server command run by systemd socket activation. */
export type Target = { kind: 'uri'; uri: string } | { kind: 'command'; argv: string[] };

export interface Session {
  flavour: Flavour;
  options: InfoOptions;
  target: Target;
  /** probe_content. */
  probeContent: boolean;
  out: Output;
  /** One line on stderr, after "nbdjs: info: ". */
  warn(line: string): void;
  /** Every handle made, closed at the end whatever happens. */
  handles: Set<Handle<true>>;
  /** Set by Ctrl-C: no new handle. */
  interrupted: boolean;
}

/** nbdinfo's `fprintf (stderr, ...); exit (EXIT_FAILURE)`. */
export class Fatal extends Error {
  override name = 'Fatal';
}

/** nbd_get_error() of a failed call, then `more`, then the errno's name as nbdjs adds it ("... (ENOENT)"). */
export function errorText(e: unknown, more = ''): string {
  if (e instanceof NbdError) return e.message.includes(`(${e.code})`) ? `${e.message}${more}` : `${e.message}${more} (${e.code})`;
  return `${e instanceof Error ? e.message : String(e)}${more}`;
}

/** A failed libnbd call that ends nbdinfo. */
export function fatal(e: unknown): Fatal {
  return e instanceof Fatal ? e : new Fatal(errorText(e), { cause: e });
}

/** The value of a getter, or undefined where libnbd returns -1 or NULL (nbdinfo then leaves the field out). */
export function maybe<T>(get: () => T): T | undefined {
  try {
    return get();
  } catch {
    return undefined;
  }
}

/** nbd_create and the settings every nbdinfo handle gets. */
export function createHandle(s: Session): Handle<true> {
  if (s.interrupted) throw new Fatal('interrupted');
  const h = new Handle({ bigint: true });
  s.handles.add(h);
  // nbdinfo allows ?tls-psk-file= in URIs.
  h.setUriAllowLocalFile(true);
  return h;
}

/** do_connect: the URI or the command; in option mode (1.20+), NBD_OPT_INFO on the URI's export, its failure left for later. */
export async function doConnect(s: Session, h: Handle<true>): Promise<void> {
  try {
    if (s.target.kind === 'uri') await h.connectUri(s.target.uri);
    else await h.connectSystemdSocketActivation(s.target.argv);
  } catch (e) {
    throw fatal(e);
  }
  if (s.flavour.optModeAlways && h.aioIsNegotiating()) {
    try {
      await h.optInfo();
    } catch {
      // Later code may try another export name.
    }
  }
}

/** Closes a handle as nbdinfo does at its end (option abort or shutdown, then close); never throws. */
export async function closeHandle(s: Session, h: Handle<true>): Promise<void> {
  s.handles.delete(h);
  await h[Symbol.asyncDispose]();
}
