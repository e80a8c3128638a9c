// The fault suite's fixtures (test/faults/fixtures) as child processes, and
// how to tell that one crashed.
import { join } from 'node:path';
import { runNode, type ChildResult } from '../../helpers/node-child';

export type { ChildResult };
export const FIXTURES = join(__dirname, '..', 'fixtures');

/** Signs of a crash of Node or of the addon. */
export const CRASH = /FATAL ERROR|Segmentation fault|Aborted|core dumped|Assertion failed|unexpected C\+\+ exception|FIXTURE FAILURE|node::|double free|corrupted/;

/** `node --no-warnings FIXTURE ARGS` with a hard timeout (SIGKILL). */
export function runFixture(fixture: string, args: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ChildResult> {
  return runNode(['--no-warnings', join(FIXTURES, fixture), ...args], opts);
}

/** A one-line account of how a child ended, for failure messages. */
export function howItEnded(r: ChildResult): string {
  const crash = CRASH.exec(r.stderr);
  return [
    r.timedOut ? `killed after ${r.ms} ms` : `exit ${r.code ?? r.signal}`,
    crash ? `stderr: ${r.stderr.slice(Math.max(0, crash.index - 100), crash.index + 200).replace(/\s+/g, ' ')}` : '',
    r.breadcrumb && (r.code !== 0 || r.timedOut) ? `last call ${r.breadcrumb.slice(1, 300)}` : '',
  ]
    .filter(Boolean)
    .join('; ');
}
