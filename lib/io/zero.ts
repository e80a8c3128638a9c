// isZero: whether a buffer holds only zero bytes, at memory speed.
//
// nbdcopy's trick (common/include/iszero.h): once the first 16 bytes are
// zero, the buffer is all zero exactly when it equals itself shifted by 16
// bytes, which one memcmp(buf, buf + 16, len - 16) decides. Node's
// Buffer#compare with ranges is that memcmp (glibc's vectorised one), so
// no native code of ours is needed: bench/iszero.ts measures it beside a
// JS word loop and a C N-API function doing nbdcopy's is_zero (docs/performance.md,
// "isZero").
import { invalidArgType } from '../errors';

const compare = Buffer.prototype.compare;
/** Below this, a byte loop beats the call into memcmp. */
const SMALL = 64;

/** True when every byte of `buf` (any Buffer, TypedArray or DataView) is 0; true for an empty one. */
export function isZero(buf: ArrayBufferView): boolean {
  if (!ArrayBuffer.isView(buf)) throw invalidArgType('buf', 'an instance of Buffer, TypedArray, or DataView', buf);
  const u8 = buf instanceof Uint8Array ? buf : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return isZeroRange(u8, 0, u8.length);
}

/** Whether bytes [start, end) of `u8` are all 0 (no view made: copy() checks many blocks of one buffer). */
export function isZeroRange(u8: Uint8Array, start: number, end: number): boolean {
  const head = end - start < SMALL ? end : start + 16;
  for (let i = start; i < head; i++) if (u8[i] !== 0) return false;
  if (end === head) return true;
  // Buffer#compare takes any Uint8Array as `this` and as target.
  return compare.call(u8, u8, start, end - 16, start + 16, end) === 0;
}
