// Can these parents be merged onto this base? Each parent is compared with the base.
//
// Severity (an `error` stops a merge; the planner treats warnings as warnings):
//  - error: a different skeleton (layer count, hidden size, routed expert count, which layers
//    are MoE, shared expert count, MTP layers) — nothing lines up then;
//  - error: a routed expert projection of the base that the parent lacks, or has in another
//    shape. Experts are compared as (layer, expert, projection) wherever each model keeps them:
//    a per-expert parent and a fused re-save of the same model are compatible. Routed experts are
//    what a donor is for in every method, so such a parent cannot serve;
//  - warning: any other tensor the parent lacks or has in another shape. The child can still
//    take it from the base; the planner refuses a rule that asks this parent for it;
//  - warning: tensors the parent has and the base does not (the child follows the base's list);
//  - warning: format differences, one line per pair (mixing happens in f32; not a problem);
//  - warning: F8_E4M3 weights without scales (copyable, not mixable);
//  - warning: parents that look unrelated — different model_type, vocab_size or
//    `architectures`. Expert i of one model and expert i of another only correspond when both
//    descend from one pretraining run. `_name_or_path` is not compared: base and instruct
//    releases of one model always differ in it, so it says nothing.
// Shard layouts and expert layouts (per-expert or fused) may differ freely.
import { configValue } from '../arch/families.ts';
import { codecName } from '../formats/codec.ts';
import { sameShape } from '../formats/dtype.ts';
import { MoeError } from '../io.ts';
import { regionDims } from './regions.ts';
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

/** How a model keeps its routed experts, in words: "one tensor per expert" or "fused". */
export function expertLayout(model: Model): 'per-expert' | 'fused' | 'mixed' {
  let fused = 0;
  let single = 0;
  for (const w of model.weights) {
    if (w.role.kind !== 'routed_expert') continue;
    if (w.fused) fused++;
    else single++;
  }
  return fused > 0 && single > 0 ? 'mixed' : fused > 0 ? 'fused' : 'per-expert';
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
    const [lb, lp] = [expertLayout(base), expertLayout(model)];
    if (lb !== lp) warn(`keeps its routed experts ${lp === 'fused' ? 'fused' : 'one tensor per expert'}, the base ${lb === 'fused' ? 'fused' : 'one tensor per expert'}: compatible (experts are matched by layer, expert and projection); the child follows the base's layout`);

    // Related at all?
    const unrelated: string[] = [];
    const bt = base.config['model_type'];
    const pt = model.config['model_type'];
    if (bt !== pt) unrelated.push(`model_type ${fmt(pt)} vs ${fmt(bt)}`);
    if (base.arch.name !== model.arch.name) unrelated.push(`family ${model.arch.name} vs ${base.arch.name}`);
    const bv = configValue(base.arch, base.config, 'vocabSize')?.value;
    const pv = configValue(model.arch, model.config, 'vocabSize')?.value;
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

    // Routed experts, by (layer, expert, projection), wherever each model keeps them.
    const codecPairs = new Map<string, { count: number; example: string }>();
    const notePair = (b: string, p: string, example: string) => {
      if (b === p) return;
      const key = `${b}→${p}`;
      const d = codecPairs.get(key);
      if (d) d.count++;
      else codecPairs.set(key, { count: 1, example });
    };
    for (const [layer, be] of base.experts) {
      const pe = model.experts.get(layer);
      if (!pe) continue; // a skeleton error above already says so
      let reported = 0;
      for (let e = 0; e < Math.min(be.experts, pe.experts); e++) {
        for (const part of be.parts[e]!) {
          const other = pe.parts[e]!.find((q) => q.proj === part.proj && q.bias === part.bias);
          const what = `layer ${layer} expert ${e} ${part.proj}${part.bias ? ' bias' : ''}`;
          if (!other) {
            if (reported++ < 3) err(`${what} is missing from this parent`, part.weight.name, 'routed_expert');
            continue;
          }
          const a = regionDims(part.region);
          const b = regionDims(other.region);
          if (a.out !== b.out || a.in !== b.in) {
            if (reported++ < 3) err(`${what} is ${b.out} × ${b.in} here, ${a.out} × ${a.in} in the base`, other.weight.name, 'routed_expert');
            continue;
          }
          notePair(codecName(part.weight.codec), codecName(other.weight.codec), other.weight.name);
        }
      }
      if (reported > 3) err(`layer ${layer}: ${reported - 3} more expert projections differ`);
    }

    // Everything else by name.
    for (const bw of base.weights) {
      if (bw.role.kind === 'routed_expert') continue;
      const pw = model.byName.get(bw.name);
      const kind = bw.role.kind;
      if (!pw) {
        warn('is missing from this parent (the child can take it from the base only)', bw.name, kind);
        continue;
      }
      if (!sameShape(bw.shape, pw.shape)) {
        warn(`shape ${shapeText(pw.shape)} here, ${shapeText(bw.shape)} in the base (the child can take it from the base only)`, bw.name, kind);
        continue;
      }
      notePair(codecName(bw.codec), codecName(pw.codec), bw.name);
    }
    for (const pw of model.weights) {
      if (pw.role.kind === 'routed_expert') continue;
      if (!base.byName.has(pw.name)) warn('is not in the base; the child follows the base and leaves it out', pw.name, pw.role.kind);
    }
    for (const [key, d] of codecPairs) {
      const [b, p] = key.split('→');
      warn(
        `${d.count} weight${d.count > 1 ? 's are' : ' is'} ${p} here and ${b} in the base (e.g. ${d.example}); ` +
          `not a problem: mixing happens in f32 and the output format is chosen by the recipe`,
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
  const list = model.weights.filter((w) => w.codec.kind === 'plain' && w.codec.dtype === 'F8_E4M3');
  if (list.length === 0) return;
  problems.push(
    problem(
      'warning',
      name,
      `${list.length} F8_E4M3 weight${list.length > 1 ? 's have' : ' has'} no scale (e.g. ${list[0]!.name}): ` +
        'they can be copied from this parent but not mixed',
    ),
  );
}

function fmt(v: unknown): string {
  return v === undefined ? 'unknown' : typeof v === 'string' ? v : JSON.stringify(v);
}
