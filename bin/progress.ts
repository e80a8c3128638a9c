// Progress of a copy: on stderr, a bar redrawn in place on a TTY (percent,
// bytes, rate, ETA; '\r' redraw, a final newline), or plain lines at most
// every PLAIN_INTERVAL_MS elsewhere; or nbdcopy's machine-readable lines
// ("N/100") to a file descriptor (--progress=FD). The copy reports at most
// every 100 ms.
import { writeSync } from 'node:fs';

export interface Sample {
  bytes: number;
  /** undefined when the size is not known (stdin). */
  total: number | undefined;
  /** Bytes per second, averaged since the start. */
  rate: number;
}

export const PLAIN_INTERVAL_MS = 1000;
const BAR = 20;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (x: number) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/** The fields of one report: "42%", "1.2 GiB / 4.0 GiB", "512.0 MiB/s", "ETA 00:05". */
function fields(s: Sample): { percent?: string; amount: string; rate: string; eta?: string } {
  const rate = `${formatBytes(s.rate)}/s`;
  if (s.total === undefined) return { amount: formatBytes(s.bytes), rate };
  const fraction = s.total > 0 ? Math.min(1, s.bytes / s.total) : 1;
  const left = s.rate > 0 ? (s.total - s.bytes) / s.rate : Infinity;
  return {
    percent: `${String(Math.floor(fraction * 100)).padStart(3)}%`,
    amount: `${formatBytes(s.bytes)} / ${formatBytes(s.total)}`,
    rate,
    eta: `ETA ${formatDuration(s.bytes >= s.total ? 0 : left)}`,
  };
}

export interface ProgressSink {
  /** The copy begins (both sides are open). */
  start?(): void;
  update(s: Sample): void;
  /** The last report (bytes === total on success); a TTY bar gets its newline. */
  done(s: Sample | undefined): void;
}

export const noProgress: ProgressSink = { update() {}, done() {} };

/** A bar redrawn with '\r' on a terminal. */
export function ttyProgress(write: (text: string) => void, columns = () => process.stderr.columns || 80): ProgressSink {
  let last = '';
  let drawn = false;
  const draw = (s: Sample) => {
    const f = fields(s);
    let line: string;
    if (f.percent !== undefined) {
      const fill = s.total! > 0 ? Math.round((Math.min(s.bytes, s.total!) / s.total!) * BAR) : BAR;
      line = `${f.percent} [${'#'.repeat(fill)}${'-'.repeat(BAR - fill)}] ${f.amount}  ${f.rate}  ${f.eta}`;
    } else {
      line = `${f.amount}  ${f.rate}`;
    }
    // A terminal of unknown width (0 columns, as a fresh pty has) counts as 80.
    line = line.slice(0, Math.max(40, columns() - 1));
    if (line === last) return;
    // Pad over what a longer previous line left.
    write(`\r${line}${' '.repeat(Math.max(0, last.length - line.length))}`);
    last = line;
    drawn = true;
  };
  return {
    update: draw,
    done(s) {
      if (s !== undefined) draw(s);
      if (drawn) write('\n');
    },
  };
}

/** Plain lines, at most one every PLAIN_INTERVAL_MS, and the last one always. */
export function plainProgress(write: (text: string) => void, now = () => performance.now()): ProgressSink {
  let lastAt = -Infinity;
  let lastLine = '';
  const line = (s: Sample) => {
    const f = fields(s);
    return `nbdjs: copy: ${[f.percent?.trim(), f.amount, f.rate, f.eta].filter((x) => x !== undefined).join(' ')}\n`;
  };
  return {
    update(s) {
      const t = now();
      if (t - lastAt < PLAIN_INTERVAL_MS) return;
      lastAt = t;
      lastLine = line(s);
      write(lastLine);
    },
    done(s) {
      if (s === undefined) return;
      const l = line(s);
      if (l !== lastLine) write(l);
    },
  };
}

/**
 * nbdcopy's --progress=FD: "N/100" lines (N the percent done, whole), "0/100"
 * at the start and "100/100" at the end, written to the descriptor as
 * nbdcopy writes them, errors ignored (the reader's business).
 */
export function fdProgress(fd: number): ProgressSink {
  let last = -1;
  const put = (percent: number) => {
    if (percent === last) return;
    last = percent;
    try {
      writeSync(fd, `${percent}/100\n`);
    } catch {
      // As nbdcopy: a progress descriptor that fails is not the copy's failure.
    }
  };
  return {
    start: () => put(0),
    update(s) {
      if (s.total !== undefined && s.total > 0) put(Math.min(99, Math.floor((100 * s.bytes) / s.total)));
    },
    done(s) {
      if (s !== undefined) put(100);
    },
  };
}
