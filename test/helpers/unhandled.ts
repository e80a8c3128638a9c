// A per-file collector of unhandled Promise rejections, checked in afterAll:
// the io layer must never leave one, on any path.
//
// Jest gives each test file a copy of `process` with listeners of its own:
// `process.on('unhandledRejection')` there never fires. Node emits the event
// on the real process object, which code of the outer realm sees: `Buffer`
// is the outer realm's (jest-environment-node passes it through), so its
// Function constructor evaluates there. (jest-circus listens there too, and
// fails the running test; this collector also covers rejections reported
// between tests and after the last one, and says which they were.)
type Listener = (reason: unknown) => void;
interface RealProcess {
  on(event: 'unhandledRejection', l: Listener): unknown;
  off(event: 'unhandledRejection', l: Listener): unknown;
  listeners(event: 'unhandledRejection'): Listener[];
}
const realProcess = (Buffer.constructor as FunctionConstructor)('return process')() as RealProcess;

/**
 * Installs the collector for this test file: afterAll fails if any
 * rejection went unhandled. Adds a test showing that the collector sees one.
 */
export function collectUnhandledRejections(): void {
  const seen: unknown[] = [];
  const onRejection: Listener = (reason) => {
    seen.push(reason);
  };
  beforeAll(() => {
    realProcess.on('unhandledRejection', onRejection);
  });
  afterAll(async () => {
    // Rejections are reported once the microtask queue has drained.
    await new Promise((r) => setTimeout(r, 20));
    realProcess.off('unhandledRejection', onRejection);
    expect(seen).toEqual([]);
  });

  test('the unhandled-rejection collector of this file sees a rejection nobody handles', async () => {
    // Only the collector listens meanwhile (jest's own listener would fail this test).
    const others = realProcess.listeners('unhandledRejection').filter((l) => l !== onRejection);
    for (const l of others) realProcess.off('unhandledRejection', l);
    const probe = new Error('probe: deliberately unhandled');
    try {
      void Promise.reject(probe);
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      for (const l of others) realProcess.on('unhandledRejection', l);
    }
    const i = seen.indexOf(probe);
    expect(i).toBeGreaterThanOrEqual(0);
    seen.splice(i, 1);
  });
}
