// Number formatting shared by the UI and the workers' messages.

// Bytes and durations are formatted as the engine and the CLI do.
export { formatBytes, formatDuration } from '../../engine/report/format.ts';
import { rangeText } from '../../engine/report/format.ts';

/** A figure with 3 significant digits, exponent form when very small or large. */
export function formatFigure(x: number): string {
  if (Number.isNaN(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e5) return x.toExponential(2);
  return x.toPrecision(3);
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** "3-5, 7, 9-12" from integers in any order ('' for none). */
export function formatIndexList(xs: readonly number[]): string {
  return xs.length === 0 ? '' : rangeText([...new Set(xs)].sort((a, b) => a - b));
}
