// Whether objects can be garbage collected, in the test's own process: V8's
// gc() exposed at run time, WeakRefs to what a test gave away. In JS terms,
// libnbd's closure "free" callback running means the binding let go of the
// function: it becomes collectable.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setImmediate as turn } from 'node:timers/promises';

setFlagsFromString('--expose-gc');
/** V8's full garbage collection. */
export const gc = runInNewContext('gc') as () => void;

/** Weak references to objects by name, so that a test can ask which were collected. */
export class Tracked {
  readonly #refs = new Map<string, WeakRef<object>>();

  /** Tracks `o` under `name` and returns it. */
  track<T extends object>(name: string, o: T): T {
    this.#refs.set(name, new WeakRef(o));
    return o;
  }

  /**
   * The names of the tracked objects collected by a full collection, sorted.
   * It runs after a turn of the event loop: a WeakRef keeps its target alive
   * until the end of the job that made or dereferenced it.
   */
  async collected(): Promise<string[]> {
    await turn();
    gc();
    await turn();
    return [...this.#refs].filter(([, r]) => r.deref() === undefined).map(([name]) => name).sort();
  }
}
