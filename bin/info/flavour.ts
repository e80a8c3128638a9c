// Which nbdinfo `nbdjs info` is: the one shipped with the libnbd loaded
// (getVersion()), as far as the binding can call what that nbdinfo calls
// (`have`). Behaviour is read from nbdinfo's sources at 1.14.2 and 1.22.2;
// the versions between are placed by libnbd's release notes (1.16: no meta
// context request while listing; 1.18: extended headers, --has, an
// oversized export size; 1.20: option mode for every mode, --cannot, --uri,
// human block sizes, the quieter colours).
import { getPackageName, getVersion, have } from '../../lib/generated/module-api';

export interface Flavour {
  /** The loaded libnbd's version ("1.14.2"): nbdinfo's own version is the same. */
  version: string;
  /** libnbd's package name, for --version. */
  packageName: string;
  /** show_one_export turns off nbd_set_request_meta_context (1.16). */
  skipMetaContextRequest: boolean;
  /** Extended headers: "extended" in --json, "using extended packets", --has eh, 64-bit --map (1.18). */
  extendedHeaders: boolean;
  /** --can knows extended-headers and block-status-payload (1.18). */
  extendedFeatureNames: boolean;
  /** can_block_status_payload among the flags (1.18). */
  blockStatusPayload: boolean;
  /** --has and --have (1.18). */
  hasAliases: boolean;
  /** A size nbd_get_size refuses is "unavailable" instead of an error (1.18). */
  sizeOptional: boolean;
  /**
   * Option mode in every mode (opt_info right after connecting, --size and
   * --can answered while negotiating, --map going on with opt_go), no
   * opt_abort before probing listed exports (1.20).
   */
  optModeAlways: boolean;
  /** --cannot, --isnt, --hasnt and their spellings (1.20). */
  negatedCan: boolean;
  /** --uri (1.20). */
  uriOption: boolean;
  /** block_size_* with a human suffix in text output (1.20). */
  humanBlockSizes: boolean;
  /** 1.22's colours (magenta export line, no grey) rather than 1.14's. */
  quietColours: boolean;
}

/** "1.22.2" -> 22 (libnbd's major version has stayed 1). */
function minorOf(version: string): number {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (m === null) return 0;
  return Number(m[1]) > 1 ? Number.MAX_SAFE_INTEGER : Number(m[2]);
}

export function flavourOf(version: string, packageName: string, can: Partial<typeof have> = have): Flavour {
  const minor = minorOf(version);
  return {
    version,
    packageName,
    skipMetaContextRequest: minor >= 16 && can.setRequestMetaContext === true,
    extendedHeaders: minor >= 18 && can.getExtendedHeadersNegotiated === true,
    extendedFeatureNames: minor >= 18,
    blockStatusPayload: minor >= 18 && can.canBlockStatusPayload === true,
    hasAliases: minor >= 18,
    sizeOptional: minor >= 18,
    optModeAlways: minor >= 20,
    negatedCan: minor >= 20,
    uriOption: minor >= 20,
    humanBlockSizes: minor >= 20,
    quietColours: minor >= 20,
  };
}

/** The nbdinfo of the libnbd this process loaded. */
export function loadedFlavour(): Flavour {
  return flavourOf(getVersion(), getPackageName());
}
