// Callback throws that no NbdError carries: reported as warnings, never lost.

/** Reads a property of a thrown value that may throw itself (a getter, a Proxy). */
function shown(value: unknown, read: (v: object) => unknown): string | undefined {
  try {
    if (typeof value !== 'object' || value === null) return undefined;
    const v = read(value);
    return v === undefined ? undefined : String(v);
  } catch {
    return undefined;
  }
}

function text(value: unknown): string {
  const message = shown(value, (v) => ('message' in v ? (v as { message: unknown }).message : undefined));
  if (message !== undefined) return message;
  try {
    return String(value);
  } catch {
    return '(a thrown value that cannot be shown)';
  }
}

/**
 * Reports callback throws that no NbdError will carry. A string warning:
 * process.emitWarning refuses Error objects of another realm (jest, vm).
 * Never throws, whatever was thrown: event delivery must go on.
 */
export function reportLostCauses(causes: unknown[] | undefined, what = 'a libnbd callback threw but its command succeeded'): void {
  if (causes === undefined) return;
  for (const c of causes) {
    try {
      const stack = shown(c, (v) => ('stack' in v ? (v as { stack: unknown }).stack : undefined));
      process.emitWarning(`${what}: ${text(c)}`, { type: 'NbdCallbackWarning', detail: stack });
    } catch {
      // Nothing left to report it with.
    }
  }
}
