// Numbers as people read them, shared by the engine's messages, the CLI and the studio.
import type { RunnerTime } from '../exec/units.ts';

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes in powers of 1000, as recipe shard sizes are written ("5GB"). */
export function formatBytes(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '—';
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  const s = i === 0 ? String(Math.round(v)) : v.toFixed(v >= 100 ? 0 : digits);
  return `${n < 0 ? '-' : ''}${s} ${UNITS[i]}`;
}

/** A duration in milliseconds: "4.2s", "35s", "3m 07s", "2h 05m". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** "0-2, 5, 7-60" from a sorted list of integers. */
export function rangeText(xs: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(j === i ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return parts.join(', ') || 'none';
}

/**
 * Where a merge's time in its kernel runners went: how busy they were over the merge, and each
 * part's share of their busy time, largest first ("2 workers busy 93% of 1.5s: computing 44%,
 * reading 31%, writing 19%, checksums 6%"). Reading the largest share tells whether the disk or
 * the cores bound this merge.
 */
export function runnerTimeText(t: RunnerTime, elapsedMs: number, runners: number): string {
  const busy = t.read + t.compute + t.hash + t.write;
  const who = runners > 0 ? `${runners} worker${runners > 1 ? 's' : ''}` : 'the kernels (in-process)';
  const over = elapsedMs > 0 ? ` busy ${Math.round((100 * busy) / (elapsedMs * Math.max(1, runners)))}% of ${formatDuration(elapsedMs)}` : '';
  if (!(busy > 0)) return `${who}: no units run`;
  const parts: [string, number][] = [
    ['computing', t.compute],
    ['reading', t.read],
    ['writing', t.write],
    ['checksums', t.hash],
  ];
  parts.sort((a, b) => b[1] - a[1]);
  return `${who}${over}: ${parts.map(([k, v]) => `${k} ${Math.round((100 * v) / busy)}%`).join(', ')}`;
}

/**
 * The kernel runners' working memory: the most WASM memory one held ("each of 2 workers held at
 * most 38 MB for its kernels"). The units set it (a stripe's inputs, outputs and scratch, a copy's
 * block), not the model, so it says what a merge of any size takes per worker.
 */
export function runnerMemoryText(bytes: number, runners: number): string {
  if (!(bytes > 0)) return 'no kernel memory used';
  const size = formatBytes(bytes);
  if (runners > 1) return `each of ${runners} workers held at most ${size} for its kernels`;
  if (runners === 1) return `the worker held at most ${size} for its kernels`;
  return `the kernels (in-process) held at most ${size}`;
}
