// What a tensor is: the first pattern of the family that matches its name decides.
//
// Decisions worth knowing:
//  - Qwen2-MoE `mlp.shared_expert_gate.weight` ([1, H]) is a `router`: it gates (scales the
//    shared expert's output per token) and, like the router, comes from the base in every method.
//  - DeepSeek MTP layer (61 in V3): `enorm`/`hnorm`/`shared_head.norm` → norm, `eh_proj` →
//    other, `shared_head.head` → lm_head, `embed_tokens` → embedding; the rest of the layer
//    (attention, router, experts) classifies as in any MoE layer, with its layer index.
//  - A name no pattern matches is `other` (with its layer when the name has `layers.L.`).
//  - An FP8 block-scale tensor (`<weight>_scale_inv`) is not classified on its own: asking for
//    one returns its weight's role (openModel attaches scales to weights before classifying).
import type { Projection, TensorRole } from '../model/types.ts';
import type { ArchitectureSpec } from './types.ts';

const compiled = new WeakMap<ArchitectureSpec, RegExp[]>();

function patternsOf(spec: ArchitectureSpec): RegExp[] {
  let res = compiled.get(spec);
  if (!res) {
    res = spec.tensors.map((p) => new RegExp(p.match));
    compiled.set(spec, res);
  }
  return res;
}

const ANY_LAYER = /(?:^|\.)(?:layers|blocks|h|layer)\.(\d+)\./;

export function classifyTensor(spec: ArchitectureSpec, name: string): TensorRole {
  const suffix = spec.scaleSuffix;
  if (suffix && name.endsWith(suffix) && name.length > suffix.length) name = name.slice(0, -suffix.length);
  const regs = patternsOf(spec);
  for (let i = 0; i < regs.length; i++) {
    const m = regs[i]!.exec(name);
    if (!m) continue;
    const role: TensorRole = { kind: spec.tensors[i]!.kind };
    const g = m.groups;
    if (g?.['layer'] !== undefined) role.layer = Number(g['layer']);
    if (g?.['expert'] !== undefined) role.expert = Number(g['expert']);
    if (g?.['proj'] !== undefined) {
      const proj: Projection | undefined = spec.projections[g['proj']];
      if (proj) role.proj = proj;
    }
    return role;
  }
  const lm = ANY_LAYER.exec(name);
  return lm ? { kind: 'other', layer: Number(lm[1]) } : { kind: 'other' };
}
