// The difference figures shown in `diff`, the heatmaps and the threshold, from summed statistics.
import type { DiffStats } from '../kernels/types.ts';

export const METRICS = ['rms_diff', 'rel_diff', 'cosine'] as const;
export type Metric = (typeof METRICS)[number];

export interface DiffFigures {
  /** sqrt(mean((b − a)²)) over finite pairs. */
  rmsDiff: number;
  /** ‖b − a‖ / ‖a‖ (Infinity when a is all zeros and b is not; 0 when both are). */
  relDiff: number;
  /** a·b / (‖a‖‖b‖); 1 when both are all zeros, 0 when exactly one is. */
  cosine: number;
}

export function figuresOf(s: DiffStats): DiffFigures {
  const n = s.count - s.nonFinite;
  const rmsDiff = n > 0 ? Math.sqrt(s.sumSqDiff / n) : 0;
  const normA = Math.sqrt(s.sumSqA);
  const normB = Math.sqrt(s.sumSqB);
  const normD = Math.sqrt(s.sumSqDiff);
  const relDiff = normA > 0 ? normD / normA : normD > 0 ? Infinity : 0;
  // Clamped: rounding in the norms can put identical tensors a hair above 1.
  const cosine = normA > 0 && normB > 0 ? Math.max(-1, Math.min(1, s.dot / (normA * normB))) : normA === 0 && normB === 0 ? 1 : 0;
  return { rmsDiff, relDiff, cosine };
}
