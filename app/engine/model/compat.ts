// Can these parents be merged onto this base? Each parent is compared with the base.
//
// Severity (an `error` stops a merge; the planner treats warnings as warnings):
//  - error: a different skeleton (layer count, hidden size, routed expert count, which layers
//    are MoE, shared expert count, MTP layers) — nothing lines up then;
//  - error: a routed expert tensor of the base that the parent lacks, or has in another shape.
//    Routed experts are what a donor is for in every method (MEA swaps them, AoE mixes them,
//    transplants copy them), so such a parent cannot serve;
//  - warning: any other tensor the parent lacks or has in another shape. The child can still
//    take it from the base; the planner refuses a rule that asks this parent for it;
//  - warning: tensors the parent has and the base does not (the child follows the base's list);
//  - warning: dtype differences, one line per dtype pair (mixing happens in f32; not a problem);
//  - warning: F8_E4M3 weights without block scales (copyable, not mixable);
//  - warning: parents that look unrelated — different model_type, vocab_size or
//    `architectures`. Expert i of one model and expert i of another only correspond when both
//    descend from one pretraining run. `_name_or_path` is not compared: base and instruct
//    releases of one model always differ in it, so it says nothing.
// Shard layouts may differ freely.
import { sameShape } from '../formats/dtype.ts';
import { MoeError } from '../io.ts';
import type { Model, TensorKind } from './types.ts';

export interface CompatProblem {
  severity: 'error' | 'warning';
  parent: string;
  tensor?: string;
  /** Kind of the tensor in the base (or in the parent for extra tensors), when a tensor is named. */
  kind?: TensorKind;
  message: string;
}

export interface CompatReport {
  /** No errors. */
  ok: boolean;
  problems: CompatProblem[];
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

export function checkCompatibility(parents: { name: string; model: Model }[], baseName: string): CompatReport {
  const problems: CompatProblem[] = [];
  const names = new Set<string>();
  for (const p of parents) {
    if (names.has(p.name)) problems.push({ severity: 'error', parent: p.name, message: `parent name "${p.name}" is used twice` });
    names.add(p.name);
  }
  const baseEntry = parents.find((p) => p.name === baseName);
  if (!baseEntry) {
    throw new MoeError(`base "${baseName}" is not one of the parents (${parents.map((p) => p.name).join(', ')})`);
  }
  const base = baseEntry.model;
  reportUnscaled(baseEntry.name, base, problems);

  for (const { name, model } of parents) {
    if (name === baseName) continue;
    const err = (message: string, tensor?: string, kind?: TensorKind) => problems.push(problem('error', name, message, tensor, kind));
    const warn = (message: string, tensor?: string, kind?: TensorKind) => problems.push(problem('warning', name, message, tensor, kind));

    // Skeleton.
    const bl = base.layout;
    const pl = model.layout;
    const skel: [string, unknown, unknown][] = [
      ['layers', bl.layers, pl.layers],
      ['hidden size', bl.hiddenSize, pl.hiddenSize],
      ['routed experts per layer', bl.experts, pl.experts],
      ['MoE layers', bl.moeLayers.join(','), pl.moeLayers.join(',')],
      ['shared experts', bl.sharedExperts, pl.sharedExperts],
      ['MTP layers', (bl.mtpLayers ?? []).join(','), (pl.mtpLayers ?? []).join(',')],
    ];
    for (const [what, b, p] of skel) {
      if (b !== p) err(`${what} differ: ${fmt(p)} here, ${fmt(b)} in the base "${baseName}"`);
    }
    if (bl.expertsPerToken !== pl.expertsPerToken) {
      warn(`experts per token differ: ${fmt(pl.expertsPerToken)} here, ${fmt(bl.expertsPerToken)} in the base (the child keeps the base's config)`);
    }

    // Related at all?
    const unrelated: string[] = [];
    const bt = base.config['model_type'];
    const pt = model.config['model_type'];
    if (bt !== pt) unrelated.push(`model_type ${fmt(pt)} vs ${fmt(bt)}`);
    if (base.arch.name !== model.arch.name) unrelated.push(`family ${model.arch.name} vs ${base.arch.name}`);
    const bv = base.config[base.arch.config.vocabSize ?? 'vocab_size'];
    const pv = model.config[model.arch.config.vocabSize ?? 'vocab_size'];
    if (bv !== undefined && pv !== undefined && bv !== pv) unrelated.push(`vocab_size ${fmt(pv)} vs ${fmt(bv)}`);
    const ba = JSON.stringify(base.config['architectures'] ?? null);
    const pa = JSON.stringify(model.config['architectures'] ?? null);
    if (ba !== pa && base.config['architectures'] !== undefined && model.config['architectures'] !== undefined) {
      unrelated.push(`architectures ${pa} vs ${ba}`);
    }
    if (unrelated.length > 0) {
      warn(
        `looks unrelated to the base (${unrelated.join('; ')}). Expert order is arbitrary between models of ` +
          `different pretraining runs: mixing expert i with expert i only makes sense for one release's variants`,
      );
    }

    // Tensors by name.
    const dtypePairs = new Map<string, { count: number; example: string }>();
    for (const bw of base.weights) {
      const pw = model.byName.get(bw.name);
      const kind = bw.role.kind;
      const hard = kind === 'routed_expert';
      if (!pw) {
        (hard ? err : warn)(
          hard ? 'routed expert tensor is missing from this parent' : 'is missing from this parent (the child can take it from the base only)',
          bw.name,
          kind,
        );
        continue;
      }
      if (!sameShape(bw.data.shape, pw.data.shape)) {
        (hard ? err : warn)(
          `shape ${shapeText(pw.data.shape)} here, ${shapeText(bw.data.shape)} in the base` + (hard ? '' : ' (the child can take it from the base only)'),
          bw.name,
          kind,
        );
        continue;
      }
      if (bw.data.dtype !== pw.data.dtype) {
        const key = `${bw.data.dtype}→${pw.data.dtype}`;
        const d = dtypePairs.get(key);
        if (d) d.count++;
        else dtypePairs.set(key, { count: 1, example: bw.name });
      }
    }
    for (const pw of model.weights) {
      if (!base.byName.has(pw.name)) warn('is not in the base; the child follows the base and leaves it out', pw.name, pw.role.kind);
    }
    for (const [key, d] of dtypePairs) {
      const [b, p] = key.split('→');
      warn(
        `${d.count} tensor${d.count > 1 ? 's are' : ' is'} ${p} here and ${b} in the base (e.g. ${d.example}); ` +
          `not a problem: mixing happens in f32 and the output dtype is chosen by the recipe`,
      );
    }
    reportUnscaled(name, model, problems);
  }
  return { ok: !problems.some((p) => p.severity === 'error'), problems };
}

function problem(severity: 'error' | 'warning', parent: string, message: string, tensor?: string, kind?: TensorKind): CompatProblem {
  const p: CompatProblem = { severity, parent, message };
  if (tensor !== undefined) p.tensor = tensor;
  if (kind !== undefined) p.kind = kind;
  return p;
}

function reportUnscaled(name: string, model: Model, problems: CompatProblem[]): void {
  const list = model.weights.filter((w) => w.unscaledFp8);
  if (list.length === 0) return;
  problems.push(
    problem(
      'warning',
      name,
      `${list.length} F8_E4M3 weight${list.length > 1 ? 's have' : ' has'} no block scale (e.g. ${list[0]!.name}): ` +
        'they can be copied from this parent but not mixed',
    ),
  );
}

function fmt(v: unknown): string {
  return v === undefined ? 'unknown' : typeof v === 'string' ? v : JSON.stringify(v);
}
