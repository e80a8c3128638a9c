// libnbd's closure-lifetime tests in JS terms: where C's .free callback
// runs (libnbd is done with the closure), the binding must let go of the JS
// function (it becomes collectable), and it must hold it, and call it as C
// calls it, until then (DESIGN §3: close() releases every callback the handle
// held). tests/closure-lifetimes.c, errors-not-negotiating-aio.c,
// errors-pread-structured.c, opt-list.c and newstyle-limited.c's "freed"
// checks.
import { chmodSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Handle, type ErrorRef } from '../../lib';
import { tempDir, tempFile } from '../helpers/servers';
import { Tracked } from '../helpers/collect';
import { nbdkitArgv } from '../helpers/replay';
import { waitFor } from '../helpers/wait';

const ENOTCONN = 107;

/** Callback calls seen by a test (the callbacks hold this; it holds no callback). */
class Calls {
  chunk = 0;
  extent = 0;
  list = 0;
  completion: number[] = [];
  debug = 0;
}

describe('the debug callback (closure-lifetimes part 1)', () => {
  test('replacing the debug callback releases the old one; close() releases the new one', async () => {
    const t = new Tracked();
    const h = new Handle();
    const calls = new Calls();
    h.setDebugCallback(t.track('first', () => void calls.debug++));
    h.setDebugCallback(t.track('second', () => void calls.debug++));
    expect(await t.collected()).toEqual(['first']);
    h.close();
    expect(await t.collected()).toEqual(['first', 'second']);
  });

  test('clearDebugCallback releases the debug callback', async () => {
    const t = new Tracked();
    const h = new Handle();
    try {
      h.setDebugCallback(t.track('debug', () => 0));
      h.clearDebugCallback();
      expect(await t.collected()).toEqual(['debug']);
    } finally {
      h.close();
    }
  });
});

describe('a command\'s callbacks (closure-lifetimes parts 2 to 4)', () => {
  test('a read\'s chunk and completion callbacks are held while it is in flight, each called once, and released once it is retired', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    try {
      // Reads wait until the test removes the witness file: in flight for as long as the test needs.
      const witness = join(tempDir(), 'witness');
      writeFileSync(witness, '');
      const script = tempFile('held-read.sh', `#!/bin/sh
case "$1" in
  get_size) echo 512 ;;
  pread) while test -e ${witness}; do sleep 0.05; done; dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null ;;
  *) exit 2 ;;
esac
`);
      chmodSync(script, 0o755);
      await h.connectCommand(nbdkitArgv('sh', script));
      const cookie = h.aioPreadStructured(
        Buffer.alloc(512),
        0,
        t.track('chunk', () => {
          calls.chunk++;
          return 0;
        }),
        t.track('completion', (e: ErrorRef) => {
          calls.completion.push(e.value);
          return 0;
        }),
      );
      expect(await t.collected()).toEqual([]);
      expect(calls.completion).toEqual([]);
      unlinkSync(witness);
      await waitFor(() => h.aioCommandCompleted(cookie), 'the read to complete');
      expect([calls.chunk, calls.completion]).toEqual([1, [0]]);
      expect(await t.collected()).toEqual(['chunk', 'completion']);
    } finally {
      h.close();
    }
  });

  test('a read pending when the server is killed and the handle closed: its completion runs once (ENOTCONN), then both callbacks are released', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    await h.connectCommand(nbdkitArgv('--filter=delay', 'null', 'size=512', 'rdelay=10'));
    h.aioPreadStructured(
      Buffer.alloc(512),
      0,
      t.track('chunk', () => void calls.chunk++),
      t.track('completion', (e: ErrorRef) => void calls.completion.push(e.value)),
    );
    h.killSubprocess(0);
    h.close();
    expect(calls.completion).toEqual([ENOTCONN]);
    expect(await t.collected()).toEqual(['chunk', 'completion']);
    expect(calls.completion).toEqual([ENOTCONN]);
  });

  test('blockStatus refused before it is sent (no meta context; not connected, then connected): no callback runs and both are released', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    try {
      for (const when of ['before connecting', 'after connecting']) {
        if (when === 'after connecting') await h.connectCommand(nbdkitArgv('null', 'size=512'));
        expect(() =>
          h.aioBlockStatus(
            512,
            0,
            t.track(`extent ${when}`, () => void calls.extent++),
            t.track(`completion ${when}`, (e: ErrorRef) => void calls.completion.push(e.value)),
          ),
        ).toThrow(expect.objectContaining({ name: 'NbdError' }));
      }
      expect([calls.extent, calls.completion]).toEqual([0, []]);
      expect(await t.collected()).toEqual(['completion after connecting', 'completion before connecting', 'extent after connecting', 'extent before connecting']);
    } finally {
      h.close();
    }
  });

  test('a structured read refused for its offset: no callback runs and both are released (errors-pread-structured)', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    try {
      await h.connectCommand(nbdkitArgv('memory', '1M'));
      expect(() =>
        h.aioPreadStructured(
          Buffer.alloc(512),
          2n ** 64n - 1n,
          t.track('chunk', () => void calls.chunk++),
          t.track('completion', (e: ErrorRef) => void calls.completion.push(e.value)),
        ),
      ).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      expect(await t.collected()).toEqual(['chunk', 'completion']);
      expect([calls.chunk, calls.completion]).toEqual([0, []]);
    } finally {
      h.close();
    }
  });

  test('a Promise form\'s chunk callback is released once its Promise settled', async () => {
    const t = new Tracked();
    const h = new Handle();
    try {
      await h.connectCommand(nbdkitArgv('memory', '1M'));
      await h.preadStructured(Buffer.alloc(512), 0, t.track('chunk', () => 0));
      await h.blockStatus(512, 0, t.track('extent', () => 0)).catch(() => undefined);
      expect(await t.collected()).toEqual(['chunk', 'extent']);
    } finally {
      h.close();
    }
  });
});

describe('option callbacks (opt-list, errors-not-negotiating-aio, newstyle-limited)', () => {
  test('aioOptList before connecting and after connecting without option mode: refused, no callback runs, both released', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    try {
      for (const when of ['created', 'ready']) {
        if (when === 'ready') await h.connectCommand(nbdkitArgv('memory', '1M'));
        expect(() =>
          h.aioOptList(
            t.track(`list ${when}`, () => void calls.list++),
            t.track(`completion ${when}`, (e: ErrorRef) => void calls.completion.push(e.value)),
          ),
        ).toThrow(expect.objectContaining({ code: when === 'created' ? 'ENOTCONN' : 'EINVAL' }));
      }
      expect([calls.list, calls.completion]).toEqual([0, []]);
      expect(await t.collected()).toEqual(['completion created', 'completion ready', 'list created', 'list ready']);
    } finally {
      h.close();
    }
  });

  test('optList on a server that cannot list (not fixed newstyle): fails ENOTSUP, the list callback never runs and is released', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    try {
      h.setOptMode(true);
      await h.connectCommand(nbdkitArgv('--mask-handshake', '0', 'null'));
      await expect(h.optList(t.track('list', () => void calls.list++))).rejects.toMatchObject({ code: 'ENOTSUP' });
      expect(calls.list).toBe(0);
      expect(await t.collected()).toEqual(['list']);
    } finally {
      h.close();
    }
  });

  test('aioOptList\'s list and completion callbacks are released once the option completed', async () => {
    const t = new Tracked();
    const calls = new Calls();
    const h = new Handle();
    try {
      h.setOptMode(true);
      await h.connectCommand(nbdkitArgv('--filter=exportname', 'null', 'exportname-list=explicit', 'exportname=a', 'exportname=b'));
      h.aioOptList(
        t.track('list', () => void calls.list++),
        t.track('completion', (e: ErrorRef) => void calls.completion.push(e.value)),
      );
      await waitFor(() => calls.completion.length > 0, 'the listing to complete');
      expect([calls.list, calls.completion]).toEqual([2, [0]]);
      expect(await t.collected()).toEqual(['completion', 'list']);
    } finally {
      h.close();
    }
  });
});
