// nbdinfo --can/--is (and, 1.18+, --has; 1.20+, --cannot and the other
// negations) (info/can.c): no output, the answer in the exit status.
import type { Handle } from '../../lib';
import { Fatal, fatal, type Session } from './session';

type Query = (h: Handle<true>) => boolean;

/** The features nbdinfo knows at this version, by every spelling it takes. */
function features(s: Session): [string[], Query][] {
  const structured = ['sr', 'structured', 'structured reply', 'structured-reply', 'structured_reply', 'structured replies', 'structured-replies', 'structured_replies'];
  const extended = ['eh', 'extended header', 'extended-header', 'extended_header', 'extended headers', 'extended-headers', 'extended_headers'];
  const newer = s.flavour.extendedFeatureNames;
  return [
    [['connect', 'read'], () => true],
    [['tls'], (h) => h.getTlsNegotiated()],
    [structured, (h) => h.getStructuredRepliesNegotiated()],
    ...(newer ? [[extended, (h) => h.getExtendedHeadersNegotiated()] as [string[], Query]] : []),
    [['readonly', 'read-only', 'read_only'], (h) => h.isReadOnly()],
    [['write'], (h) => !h.isReadOnly()],
    [['rotational'], (h) => h.isRotational()],
    ...(newer ? [[['block status payload', 'block-status-payload', 'block_status_payload'], (h) => h.canBlockStatusPayload()] as [string[], Query]] : []),
    [['cache'], (h) => h.canCache()],
    [['df'], (h) => h.canDf()],
    [['fastzero', 'fast-zero', 'fast_zero'], (h) => h.canFastZero()],
    [['flush'], (h) => h.canFlush()],
    [['fua'], (h) => h.canFua()],
    [['multiconn', 'multi-conn', 'multi_conn'], (h) => h.canMultiConn()],
    [['trim'], (h) => h.canTrim()],
    [['zero'], (h) => h.canZero()],
  ];
}

/** strcasecmp's idea of equal: ASCII letters without case. */
function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** do_can: exit status 0 if the feature is there (or, negated, is not), 2 if not. */
export function doCan(s: Session, h: Handle<true>, feature: string): number {
  const wanted = asciiLower(feature);
  const found = features(s).find(([names]) => names.includes(wanted));
  if (found === undefined) {
    const what = !s.flavour.negatedCan ? '--can or --is' : !s.options.cannot ? '--can/--is/--has' : '--cannot/--isnt/--hasnt';
    throw new Fatal(`unknown ${what} option: ${feature}`);
  }
  let answer: boolean;
  try {
    answer = found[1](h);
  } catch (e) {
    throw fatal(e);
  }
  if (s.options.cannot) answer = !answer;
  return answer ? 0 : 2;
}
