// Per-kind summary of a diff: how many tensors of each kind differ, and by how much.
import type { TensorDiff } from '../exec/diff.ts';
import { TENSOR_KINDS, type TensorKind } from '../model/types.ts';

export interface KindDiffSummary {
  kind: TensorKind;
  tensors: number;
  /** Tensors with no difference at all (every compared pair equal, no non-finite values). */
  identical: number;
  meanRmsDiff: number;
  maxRmsDiff: number;
  /** Largest-rms tensor of the kind. */
  maxTensor: string;
  meanCosine: number;
  minCosine: number;
}

export function summarizeDiff(tensors: TensorDiff[]): KindDiffSummary[] {
  const out: KindDiffSummary[] = [];
  for (const kind of TENSOR_KINDS) {
    const list = tensors.filter((t) => t.role.kind === kind);
    if (list.length === 0) continue;
    let max = list[0]!;
    for (const t of list) if (t.rmsDiff > max.rmsDiff) max = t;
    out.push({
      kind,
      tensors: list.length,
      identical: list.filter((t) => t.stats.sumSqDiff === 0 && t.stats.nonFinite === 0).length,
      meanRmsDiff: list.reduce((s, t) => s + t.rmsDiff, 0) / list.length,
      maxRmsDiff: max.rmsDiff,
      maxTensor: max.name,
      meanCosine: list.reduce((s, t) => s + t.cosine, 0) / list.length,
      minCosine: list.reduce((m, t) => Math.min(m, t.cosine), Infinity),
    });
  }
  return out;
}
