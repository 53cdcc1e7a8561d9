// One status line on stderr, redrawn in place, only when stderr is a terminal.

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
      const eta = rate > 0 ? (total - done) / rate : 0;
      const pct = total > 0 ? ((100 * done) / total).toFixed(1) : '0.0';
      const amount = unit === 'bytes' ? `${formatBytes(done)} / ${formatBytes(total)}, ${formatBytes(rate)}/s` : `${done} / ${total}`;
      const width = Math.max(20, (stream.columns ?? 100) - 60);
      const text = `${pct}% ${amount}, ETA ${formatDuration(eta)}  ${label}`;
      stream.write(`\r\x1b[K${text.length > width + 40 ? text.slice(0, width + 37) + '...' : text}`);
    },
    done() {
      stream.write('\r\x1b[K');
    },
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
