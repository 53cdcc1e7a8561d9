// One status line on stderr, redrawn in place, only when stderr is a terminal.
import { formatBytes, formatDuration } from '../engine/report/format.ts';

export interface ProgressLine {
  update(done: number, total: number, label: string): void;
  done(): void;
}

export function progressLine(stream: NodeJS.WriteStream = process.stderr, unit: 'bytes' | 'items' = 'bytes'): ProgressLine {
  if (!stream.isTTY) return { update() {}, done() {} };
  const started = Date.now();
  let last = 0;
  return {
    update(done, total, label) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const secs = (now - started) / 1000;
      const rate = secs > 0 ? done / secs : 0;
      const eta = rate > 0 ? (total - done) / rate : Infinity;
      const pct = total > 0 ? ((100 * done) / total).toFixed(1) : '0.0';
      const amount = unit === 'bytes' ? `${formatBytes(done)} / ${formatBytes(total)}, ${formatBytes(rate)}/s` : `${done} / ${total}`;
      const width = Math.max(20, (stream.columns ?? 100) - 60);
      const text = `${pct}% ${amount}, ETA ${formatDuration(eta * 1000)}  ${label}`;
      stream.write(`\r\x1b[K${text.length > width + 40 ? text.slice(0, width + 37) + '...' : text}`);
    },
    done() {
      stream.write('\r\x1b[K');
    },
  };
}
