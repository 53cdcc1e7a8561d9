// Text tables for `moe-studio diff`.
import type { TensorDiff } from '../engine/exec/diff.ts';
import type { KindDiffSummary } from '../engine/report/diff-summary.ts';
import { printable } from '../engine/io.ts';
import { table } from './table.ts';
export { summarizeDiff } from '../engine/report/diff-summary.ts';

const num = (x: number) => (Number.isFinite(x) ? (x === 0 ? '0' : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toFixed(6) : x.toExponential(3)) : String(x));

export function formatDiffTable(tensors: TensorDiff[]): string {
  const rows = tensors.map((t) => [
    printable(t.name, 300),
    t.role.kind,
    t.role.layer === undefined ? '' : String(t.role.layer),
    t.role.expert === undefined ? '' : String(t.role.expert),
    num(t.rmsDiff) + (t.sampled ? '~' : ''),
    num(t.relDiff),
    num(t.cosine),
  ]);
  const note = tensors.some((t) => t.sampled) ? '\n(~ sampled estimate)' : '';
  return table(['tensor', 'kind', 'layer', 'expert', 'rms_diff', 'rel_diff', 'cosine'], rows, [false, false, true, true, true, true, true]) + note;
}

export function formatKindSummary(kinds: KindDiffSummary[]): string {
  const rows = kinds.map((k) => [k.kind, String(k.tensors), String(k.identical), num(k.meanRmsDiff), num(k.maxRmsDiff), num(k.meanCosine), num(k.minCosine)]);
  return table(['kind', 'tensors', 'identical', 'mean rms', 'max rms', 'mean cos', 'min cos'], rows, [false, true, true, true, true, true, true]);
}
