// docs/api.md: the API reference.
import {
  simpleCalls,
  commandCalls,
  optCalls,
  connectCalls,
  moduleCalls,
  customCalls,
  ownedCalls,
  constants,
  stringConstants,
  retKinds,
} from '../api-table.mjs';
import {
  banner,
  camel,
  pascal,
  constName,
  isOptionalConst,
  connectName,
  haveEntries,
  surface,
  tsType,
  params,
  withSince,
} from './common.mjs';

const esc = (s) => s.replace(/\|/g, '\\|');

function apiDoc() {
  const out = [banner('<!--').replace('\n', ' -->\n'), '# API reference', '',
    'Every libnbd call is named as in C without `nbd_`, in camelCase. Synchronous calls throw `NbdError`',
    '(libnbd\'s errno and message) on failure; Promise forms reject with it. A call the installed libnbd',
    'lacks fails with `NbdError` `ENOTSUP`. Bad JS arguments throw `TypeError`/`RangeError` with Node\'s codes.', '',
    '## Synchronous calls (never block)', '',
    '| Method | libnbd | Arguments | Returns | Permitted state | Notes |', '|---|---|---|---|---|---|'];
  for (const c of simpleCalls) {
    const ps = c.args.map(([n, k, fam]) => `${camel(n)}: ${tsType(k)}${fam ? ` (${fam}_*)` : ''}`).join(', ');
    out.push(`| \`${camel(c.name)}\` | \`nbd_${c.name}\` | ${esc(ps) || '—'} | ${esc(retKinds[c.ret].ts.replace('Int64<B>', 'number | bigint'))} | ${c.state ?? 'any'} | ${withSince(c)} |`);
  }
  out.push('', '## Data commands', '',
    'The aio form returns a cookie; its callbacks run after libnbd returns, never inside it. The Promise form',
    'resolves when the command succeeded. Both take the flags last (CMD_FLAG_*); the Promise form takes either',
    'the flags or `{ flags, signal }` there: aborting the signal rejects the Promise at once with an `AbortError`',
    '(the command still completes in libnbd and its result is dropped). Option and connect Promise forms take',
    '`{ signal }` last (aborting a connect also closes the handle).', '',
    '| Methods | libnbd | Arguments | Callback | Flags (CMD_FLAG_*) | Notes |', '|---|---|---|---|---|---|');
  for (const c of commandCalls) {
    out.push(`| \`${camel(c.name)}\`, \`${camel(c.sync)}\` | \`nbd_${c.name}\`, \`nbd_${c.sync}\` | ${esc(params(c.args).join(', ')) || '—'} | ${c.closure ?? '—'} | ${c.flags.join(', ') || '—'} | ${withSince(c)} |`);
  }
  out.push('', '## Option negotiation (after `setOptMode(true)`)', '',
    '| Methods | libnbd | Arguments | Callback | Notes |', '|---|---|---|---|---|');
  for (const c of optCalls) {
    out.push(`| \`${camel(c.name)}\`, \`${camel(c.sync)}\` | \`nbd_${c.name}\`, \`nbd_${c.sync}\` | ${esc(params(c.args).join(', ')) || '—'} | ${c.closure ?? '—'} | ${withSince(c)} |`);
  }
  out.push('', '## Connecting', '',
    'The Promise form (`connect…`) settles when the handshake ended. The aio form (`aioConnect…`) returns at once, as',
    'C\'s does: `aioIsConnecting()` is true from its return until libnbd\'s connect ended (poll it, then',
    '`aioIsReady()`); the call itself runs on the driver (a name lookup or a fork blocks inside libnbd), so what C',
    'would return as -1 from it (a bad URI, a refused connect, a failed lookup) is emitted as the handle\'s',
    '`\'connect\'` event (an `NbdError` named after the aio call; the event has no argument on success) and the',
    'state shows dead (or created, where libnbd refused the arguments). A handle that is not newly created',
    'throws `EINVAL` at once, as C\'s state check does.', '',
    '| Methods | libnbd | Arguments | Notes |', '|---|---|---|---|');
  for (const c of connectCalls) {
    out.push(`| \`connect${pascal(c.name)}\`, \`${camel(connectName(c))}\` | \`nbd_connect_${c.name}\`, \`nbd_${connectName(c)}\` | ${esc(params(c.args).join(', '))} | ${c.doc} |`);
  }
  out.push('', '## Module functions', '', '| Function | libnbd | Returns | Notes |', '|---|---|---|---|');
  for (const c of moduleCalls) out.push(`| \`${camel(c.name)}\` | \`nbd_${c.name}\` | ${c.ret === 'bool' ? 'boolean' : 'string'} | ${withSince(c)} |`);
  out.push('', '## Feature test', '',
    '`have` (exported) tells whether the libnbd loaded has each call newer than libnbd 1.14: the binding looks',
    'them up in the library when it loads (one binary serves every libnbd from 1.14 on); a call it lacks fails with',
    '`NbdError` `ENOTSUP` naming the release that added it. `getVersion()` is the loaded libnbd\'s version.', '',
    '| Key | libnbd | Since |', '|---|---|---|');
  for (const e of haveEntries()) out.push(`| \`have.${e.key}\` | \`nbd_${e.key === camel(e.call.name) ? e.call.name : e.call.sync}\` | ${e.call.since} |`);
  out.push('', '## Calls with hand-written glue', '', '| Method | libnbd | Native surface | Notes |', '|---|---|---|---|');
  for (const c of customCalls) out.push(`| \`${c.public}\` | \`nbd_${c.name}\` | \`${esc(surface(c.native).js + surface(c.native).ts)}\` | ${c.doc} |`);
  out.push('| `close` | `nbd_close` | `close(): void` | Synchronous, idempotent; completes every pending command with ENOTCONN. |');
  out.push('', '## Calls the binding owns', '', '| libnbd | Instead |', '|---|---|');
  for (const c of ownedCalls) out.push(`| \`nbd_${c.name}\` | ${c.why} |`);
  out.push('', '## Constants', '', constants.map((c) => `\`${constName(c)}\`${isOptionalConst(c) ? ` (libnbd ≥ ${c.since})` : ''}`).join(', '), '');
  out.push('## String constants', '', 'Exported on every build, with libnbd.h\'s values (the native build checks them against the header).', '', '| Constant | Value | Notes |', '|---|---|---|');
  for (const c of stringConstants) out.push(`| \`${c.name}\` | \`"${c.value}"\` | ${c.doc} |`);
  out.push('');
  return out.join('\n');
}

/** The files this emitter writes (paths from the repository root), each with its text. */
export const outputs = () => ({
  'docs/api.md': apiDoc(),
});
