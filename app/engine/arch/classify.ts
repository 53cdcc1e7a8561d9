// What a tensor is: the first pattern of the family that matches its logical name decides.
//
// Decisions worth knowing:
//  - Qwen2-MoE `mlp.shared_expert_gate.weight` ([1, H]) is a `router`: it gates (scales the
//    shared expert's output per token) and, like the router, comes from the base in every method.
//  - DeepSeek MTP layer (61 in V3): `enorm`/`hnorm`/`shared_head.norm` → norm, `eh_proj` →
//    other, `shared_head.head` → lm_head, `embed_tokens` → embedding; the rest of the layer
//    (attention, router, experts) classifies as in any MoE layer, with its layer index. Qwen's and
//    ERNIE's MTP blocks (`mtp.layers.N`, `model.mtp_block.N`) are numbered after the last layer.
//  - A name no pattern matches is `other` (with its layer when the name has `layers.L.`).
//  - Quantized companions (`…_scale_inv`, `…_blocks`/`…_scales`, `weight_packed`, …) are never
//    classified alone: openModel groups them with their weight first, and classifies the weight's
//    logical name.
import type { Projection, TensorRole } from '../model/types.ts';
import type { ArchitectureSpec, FusedParts } from './types.ts';

export interface Classified {
  role: TensorRole;
  fused?: FusedParts;
  /** A router weight or bias with one row or entry per expert. */
  perExpert?: boolean;
  /** Character range of the expert index in the name, for renaming a per-expert tensor. */
  expertSpan?: [number, number];
}

const compiled = new WeakMap<ArchitectureSpec, RegExp[]>();

function patternsOf(spec: ArchitectureSpec): RegExp[] {
  let res = compiled.get(spec);
  if (!res) {
    // `d`: group indices, for renaming per-expert tensors by their expert index.
    res = spec.tensors.map((p) => new RegExp(p.match, 'd'));
    compiled.set(spec, res);
  }
  return res;
}

const ANY_LAYER = /(?:^|\.)(?:layers|blocks|h|layer)\.(\d+)\./;

/**
 * `layers`: the config's layer count, after which MTP layers are numbered. `codec`: the kind of
 * codec the weight is stored in (patterns may apply to one only).
 */
export function classifyTensor(spec: ArchitectureSpec, name: string, layers = 0, codec?: string): Classified {
  const regs = patternsOf(spec);
  for (let i = 0; i < regs.length; i++) {
    const p = spec.tensors[i]!;
    if (p.codec !== undefined && p.codec !== codec) continue;
    const m = regs[i]!.exec(name);
    if (!m) continue;
    const role: TensorRole = { kind: p.kind };
    const g = m.groups;
    if (g?.['layer'] !== undefined) role.layer = Number(g['layer']);
    if (g?.['mtp'] !== undefined) role.layer = layers + Number(g['mtp']);
    const out: Classified = { role };
    if (g?.['expert'] !== undefined) {
      role.expert = Number(g['expert']);
      const span = (m as RegExpExecArray & { indices?: { groups?: Record<string, [number, number] | undefined> } }).indices?.groups?.['expert'];
      if (span) out.expertSpan = span;
    }
    if (g?.['proj'] !== undefined) {
      const proj: Projection | undefined = spec.projections[g['proj']];
      if (proj) role.proj = proj;
    }
    if (p.bias) role.bias = true;
    if (p.fused) out.fused = p.fused;
    if (p.perExpert) out.perExpert = true;
    return out;
  }
  const lm = ANY_LAYER.exec(name);
  return { role: lm ? { kind: 'other', layer: Number(lm[1]) } : { kind: 'other' } };
}
