// Where info, dump, shell and copy's `[ CMD ]` connect: an NBD URI, or a
// server command in brackets started by systemd socket activation, as
// libnbd's tools start it (libnbd makes the socket, the server inherits it,
// and closing the handle stops the server). Opened with lib/io's connect().
import { connect, type Handle } from '../lib';

export type Target = { kind: 'uri'; uri: string } | { kind: 'command'; argv: string[] };

/**
 * The operands of nbdinfo, nbddump and nbdsh: one NBD URI, or `[ CMD ARGS
 * ... ]` (the brackets as words of their own); undefined for anything else.
 */
export function targetOf(operands: readonly string[]): Target | undefined {
  if (operands.length >= 3 && operands[0] === '[' && operands[operands.length - 1] === ']') return { kind: 'command', argv: operands.slice(1, -1) };
  if (operands.length === 1) return { kind: 'uri', uri: operands[0] };
  return undefined;
}

export function describeTarget(t: Target): string {
  return t.kind === 'uri' ? t.uri : `[ ${t.argv.join(' ')} ]`;
}

export interface OpenOptions {
  /** Meta contexts added before connecting. */
  metaContexts?: string[];
  /** Called on the new handle before it connects (opt mode, debug, ...). */
  configure?: (h: Handle) => void;
  signal?: AbortSignal;
}

/** A Handle connected to `t`; URIs may name local files (?tls-psk-file=), as libnbd's tools allow. */
export function openTarget(t: Target, options: OpenOptions = {}): Promise<Handle> {
  return connect(t.kind === 'uri' ? t.uri : t.argv, {
    metaContexts: options.metaContexts,
    signal: options.signal,
    configure: (h) => {
      h.setUriAllowLocalFile(true);
      options.configure?.(h);
    },
  });
}

/** Disconnects cleanly if it can, then closes (stopping a server it started). Never throws. */
export async function closeHandle(h: Handle): Promise<void> {
  await h[Symbol.asyncDispose]();
}
