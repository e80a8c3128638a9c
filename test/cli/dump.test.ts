// nbdjs dump: nbddump's output (dump/dump.c). Each expected text is the
// format nbddump documents and prints; where nbddump is installed (libnbd
// 1.16 and later: Debian 13, not 12) nbddump's own output for the same export
// and options is compared too, byte for byte.
import { spawnSync } from 'node:child_process';
import { NBDJS, nbdjs, run } from '../helpers/cli';

const HAVE_NBDDUMP = spawnSync('nbddump', ['--version']).status === 0;

/** `nbdjs dump ARGS` prints `expected` and exits 0; so does nbddump where it exists. */
async function expectDump(args: string[], expected: string): Promise<void> {
  const ours = await nbdjs(['dump', ...args]);
  expect({ stdout: Buffer.from(ours.stdout, 'latin1').toString('utf8'), stderr: ours.stderr, code: ours.code }).toEqual({ stdout: expected, stderr: '', code: 0 });
  if (HAVE_NBDDUMP) {
    const theirs = await run('nbddump', args);
    expect({ stdout: ours.stdout, code: ours.code }).toEqual({ stdout: theirs.stdout, code: theirs.code });
  }
}

const zeroLine = (offset: string) => `${offset}: 00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00 |................|\n`;

describe('nbdjs dump prints what nbddump prints', () => {
  test('an export of zeroes and a string: 16 bytes a line, the repeated lines squashed into one *', async () => {
    await expectDump(
      ['--', '[', 'nbdkit', 'data', ' @0x1000 "hello!" ', ']'],
      zeroLine('0000000000') + '*\n' + '0000001000: 68 65 6c 6c 6f 21                                |hello!          |\n',
    );
  });

  test('a run of equal lines that are not zeroes is squashed too', async () => {
    await expectDump(
      ['--', '[', 'nbdkit', 'data', '( "ABCDEFGHIJKLMNOP" )*4 "x"', ']'],
      '0000000000: 41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50 |ABCDEFGHIJKLMNOP|\n' +
        '*\n' +
        '0000000040: 78                                               |x               |\n',
    );
  });

  test('the last line is printed even when it repeats the one before', async () => {
    await expectDump(['--', '[', 'nbdkit', 'memory', '64', ']'], zeroLine('0000000000') + '*\n' + zeroLine('0000000030'));
  });

  test('-n stops after N bytes, the last line short', async () => {
    const text = '"0123456789abcdefghijklmnopqrstuvwxyz"';
    const expected =
      '0000000000: 30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66 |0123456789abcdef|\n' +
      '0000000010: 67 68 69 6a                                      |ghij            |\n';
    await expectDump(['-n', '20', '--', '[', 'nbdkit', 'data', text, ']'], expected);
  });

  test('--length=N and --limit=N are -n', async () => {
    const text = '"0123456789abcdefghijklmnopqrstuvwxyz"';
    const expected = '0000000000: 30 31 32 33 34 35 36 37                          |01234567        |\n';
    await expectDump(['--length=8', '--', '[', 'nbdkit', 'data', text, ']'], expected);
    await expectDump(['--limit=8', '--', '[', 'nbdkit', 'data', text, ']'], expected);
  });

  test('--color colours the offset, each byte by its kind and the text, with Unicode bars and dots', async () => {
    const c = (code: string) => `\x1b[${code}m`;
    const [green, grey, blue, red, magenta] = ['22;32', '22;90', '1;34', '1;31', '1;35'].map(c);
    const expected =
      `${green}0000000000${grey}: ${blue}48 ${blue}69 ${blue}21 ${grey}00 ${blue}01 ${grey}${' '.repeat(34)}│` +
      `${red}H${red}i${magenta}!${grey}·${grey}·${grey}${' '.repeat(11)}│\n${c('0')}`;
    await expectDump(['--color', '--', '[', 'nbdkit', 'data', '"Hi!" 0 1', ']'], expected);
  });

  test('--color squashes repeated lines into one ☆', async () => {
    const ours = await nbdjs(['dump', '--colour', '--', '[', 'nbdkit', 'memory', '64', ']']);
    expect(ours.code).toBe(0);
    const lines = Buffer.from(ours.stdout, 'latin1').toString('utf8').split('\n');
    expect(lines.length).toBe(4);
    // Each printed line ends by restoring the colours (ESC [0m) after its newline.
    expect(lines[1]).toBe('\x1b[0m☆');
    if (HAVE_NBDDUMP) expect(ours.stdout).toBe((await run('nbddump', ['--colour', '--', '[', 'nbdkit', 'memory', '64', ']'])).stdout);
  });

  test('--no-color on a terminal prints the plain format', async () => {
    const command = `${process.execPath} ${NBDJS} dump --no-color -- [ nbdkit memory 32 ]`;
    const r = await run('script', ['-qfec', command, '/dev/null']);
    expect(r.code).toBe(0);
    expect(r.stdout.replace(/\r\n/g, '\n')).toBe(zeroLine('0000000000') + zeroLine('0000000010'));
  });
});
