// connect(uri, options): a new Handle, its settings, and connectUri (or, for
// a server command, systemd socket activation) in one call, with a timeout,
// an AbortSignal and retries of refused connections. Public Handle API only.
import { setTimeout as sleep } from 'node:timers/promises';
import { abortError, errno, invalidArgType, libnbdError } from '../errors';
import { Handle, type Driver } from '../handle/handle';
import { optionalInteger, optionalSignal, validateOptions } from './stream-support';

export interface ConnectOptions<B extends boolean = false> {
  /** Meta contexts to request (addMetaContext), e.g. ['base:allocation']. */
  metaContexts?: string[];
  /** Milliseconds the whole call may take, retries included; then it fails ETIMEDOUT. */
  timeout?: number;
  /** Aborting rejects with an AbortError (the signal's reason as cause). */
  signal?: AbortSignal;
  /** The handle's driver (see Handle). */
  driver?: Driver;
  /** Sizes and offsets as bigint (see Handle). */
  bigint?: B;
  /** How many more times to try when the connection is refused (ECONNREFUSED, or ENOENT for a Unix socket path); default 0. */
  retries?: number;
  /** Milliseconds between tries (default 1000). */
  retryDelay?: number;
  /** Called with each new Handle before it connects, after the meta contexts are added: settings (setUriAllowLocalFile, setOptMode, TLS, debug, ...). */
  configure?: (h: Handle<B>) => void;
}

/**
 * Errors worth another try: nobody listens (yet) at the address. libnbd
 * reports a missing Unix socket as ENOENT from its connect step, and a
 * missing export as ENOENT from the handshake: only the first is retried.
 */
function refused(e: unknown): boolean {
  const { code, message } = (e ?? {}) as { code?: unknown; message?: unknown };
  if (code === 'ECONNREFUSED') return true;
  return code === 'ENOENT' && typeof message === 'string' && /^nbd_\w+: connect: /.test(message);
}

/**
 * Connects a new Handle to `uri`: `new Handle({ driver, bigint })`, each of
 * `metaContexts` added, `configure` called, then `connectUri`; or, when
 * `uri` is an array, to the server that command starts by systemd socket
 * activation (`connectSystemdSocketActivation`: the server inherits a
 * socket libnbd made, and is stopped when the Handle is closed, as
 * nbdinfo's `[ CMD ARGS ]`). On any failure the Handle is
 * closed and the Promise rejects: with libnbd's NbdError, with an
 * AbortError when `signal` aborted, or with NbdError ETIMEDOUT after
 * `timeout` ms. A refused connection is tried again `retries` times,
 * `retryDelay` ms apart, each time with a fresh Handle.
 */
export function connect<B extends boolean = false>(uri: string | string[], options?: ConnectOptions<B>): Promise<Handle<B>> {
  if (Array.isArray(uri)) {
    if (uri.length === 0 || !uri.every((a) => typeof a === 'string')) throw invalidArgType('uri', 'a string or a non-empty array of strings', uri);
  } else if (typeof uri !== 'string') throw invalidArgType('uri', 'of type string', uri);
  const o = validateOptions(options, 'options');
  const metaContexts = o.metaContexts ?? [];
  if (!Array.isArray(metaContexts)) throw invalidArgType('options.metaContexts', 'an instance of Array', metaContexts);
  metaContexts.forEach((m, i) => {
    if (typeof m !== 'string') throw invalidArgType(`options.metaContexts[${i}]`, 'of type string', m);
  });
  const timeout = o.timeout === undefined ? undefined : optionalInteger(o.timeout, 'options.timeout', 1, 2 ** 31 - 1, 0);
  const signal = optionalSignal(o.signal, 'options.signal');
  const retries = optionalInteger(o.retries, 'options.retries', 0, 2 ** 31 - 1, 0);
  const retryDelay = optionalInteger(o.retryDelay, 'options.retryDelay', 0, 2 ** 31 - 1, 1000);
  const configure = o.configure;
  if (configure !== undefined && typeof configure !== 'function') throw invalidArgType('options.configure', 'of type function', configure);
  // The Handle checks driver and bigint itself (synchronously, below).
  const handleOptions = { driver: o.driver as Driver | undefined, bigint: o.bigint as B | undefined };
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const first = new Handle<B>(handleOptions);
  return run(uri, first, handleOptions, metaContexts as string[], configure as ((h: Handle<B>) => void) | undefined, timeout, signal, retries, retryDelay);
}

async function run<B extends boolean>(
  uri: string | string[],
  first: Handle<B>,
  handleOptions: { driver?: Driver; bigint?: B },
  metaContexts: string[],
  configure: ((h: Handle<B>) => void) | undefined,
  timeout: number | undefined,
  signal: AbortSignal | undefined,
  retries: number,
  retryDelay: number,
): Promise<Handle<B>> {
  // One signal for the connects and the waits between them: the caller's
  // signal or the timeout aborts it.
  const ac = new AbortController();
  let timedOut = false;
  const timer =
    timeout === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          ac.abort();
        }, timeout);
  const onAbort = (): void => ac.abort(signal!.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const stopped = (): Error =>
    timedOut ? libnbdError(typeof uri === 'string' ? 'nbd_connect_uri' : 'nbd_connect_systemd_socket_activation', errno.ETIMEDOUT, `timed out after ${timeout} ms`) : abortError(signal ?? ac.signal);
  try {
    for (let attempt = 0; ; attempt++) {
      const h = attempt === 0 ? first : new Handle<B>(handleOptions);
      try {
        for (const m of metaContexts) h.addMetaContext(m);
        configure?.(h);
        if (typeof uri === 'string') await h.connectUri(uri, { signal: ac.signal });
        else await h.connectSystemdSocketActivation(uri, { signal: ac.signal });
        return h;
      } catch (e) {
        h.close();
        if (ac.signal.aborted) throw stopped();
        if (attempt >= retries || !refused(e)) throw e;
      }
      try {
        await sleep(retryDelay, undefined, { signal: ac.signal });
      } catch {
        throw stopped();
      }
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
