import { describe, expect, it } from 'vitest';
import { classifyTensor } from '../app/engine/arch/classify.ts';
import { FAMILIES, detectArchitecture, familyByName } from '../app/engine/arch/families.ts';
import type { ArchitectureSpec } from '../app/engine/arch/types.ts';
import { MoeError } from '../app/engine/io.ts';
import type { TensorRole } from '../app/engine/model/types.ts';

function spec(name: string): ArchitectureSpec {
  const s = familyByName(name);
  if (!s) throw new Error(`no family ${name}`);
  return s;
}

type Case = [string, TensorRole];

function check(s: ArchitectureSpec, cases: Case[]) {
  for (const [name, role] of cases) {
    expect({ name, role: classifyTensor(s, name) }).toEqual({ name, role });
  }
}

const llamaCommon = (l: number): Case[] => [
  ['model.embed_tokens.weight', { kind: 'embedding' }],
  ['lm_head.weight', { kind: 'lm_head' }],
  ['model.norm.weight', { kind: 'norm' }],
  [`model.layers.${l}.input_layernorm.weight`, { kind: 'norm', layer: l }],
  [`model.layers.${l}.post_attention_layernorm.weight`, { kind: 'norm', layer: l }],
  [`model.layers.${l}.self_attn.q_proj.weight`, { kind: 'attention', layer: l }],
  [`model.layers.${l}.self_attn.k_proj.weight`, { kind: 'attention', layer: l }],
  [`model.layers.${l}.self_attn.v_proj.weight`, { kind: 'attention', layer: l }],
  [`model.layers.${l}.self_attn.o_proj.weight`, { kind: 'attention', layer: l }],
];

describe('families.json', () => {
  it('holds the seven families with their router bias semantics', () => {
    expect(FAMILIES.map((f) => f.name)).toEqual(['mixtral', 'qwen2_moe', 'qwen3_moe', 'olmoe', 'deepseek_v2', 'deepseek_v3', 'kimi_k2']);
    expect(spec('deepseek_v3').routerBias).toBe('selection_only');
    expect(spec('kimi_k2').routerBias).toBe('selection_only');
    expect(spec('deepseek_v2').routerBias).toBe('none');
    for (const f of ['mixtral', 'qwen2_moe', 'qwen3_moe', 'olmoe']) expect(spec(f).routerBias).toBe('none');
    expect(spec('deepseek_v3').scaleSuffix).toBe('_scale_inv');
    expect(spec('mixtral').config.experts).toBe('num_local_experts');
    expect(spec('deepseek_v3').config).toMatchObject({ experts: 'n_routed_experts', sharedExperts: 'n_shared_experts', firstDenseLayers: 'first_k_dense_replace' });
    expect(spec('kimi_k2').tensors).toEqual(spec('deepseek_v3').tensors);
  });
});

describe('classifyTensor', () => {
  it('mixtral: w1/w3/w2 are gate/up/down', () => {
    check(spec('mixtral'), [
      ...llamaCommon(5),
      ['model.layers.5.block_sparse_moe.gate.weight', { kind: 'router', layer: 5 }],
      ['model.layers.5.block_sparse_moe.experts.7.w1.weight', { kind: 'routed_expert', layer: 5, expert: 7, proj: 'gate' }],
      ['model.layers.5.block_sparse_moe.experts.7.w3.weight', { kind: 'routed_expert', layer: 5, expert: 7, proj: 'up' }],
      ['model.layers.5.block_sparse_moe.experts.7.w2.weight', { kind: 'routed_expert', layer: 5, expert: 7, proj: 'down' }],
      ['model.layers.31.block_sparse_moe.experts.0.w2.weight', { kind: 'routed_expert', layer: 31, expert: 0, proj: 'down' }],
    ]);
  });

  it('qwen2_moe: shared expert, its gate (a router), qkv biases', () => {
    check(spec('qwen2_moe'), [
      ...llamaCommon(2),
      ['model.layers.2.self_attn.q_proj.bias', { kind: 'attention', layer: 2 }],
      ['model.layers.2.self_attn.v_proj.bias', { kind: 'attention', layer: 2 }],
      ['model.layers.2.mlp.gate.weight', { kind: 'router', layer: 2 }],
      ['model.layers.2.mlp.shared_expert_gate.weight', { kind: 'router', layer: 2 }],
      ['model.layers.2.mlp.shared_expert.gate_proj.weight', { kind: 'shared_expert', layer: 2, proj: 'gate' }],
      ['model.layers.2.mlp.shared_expert.up_proj.weight', { kind: 'shared_expert', layer: 2, proj: 'up' }],
      ['model.layers.2.mlp.shared_expert.down_proj.weight', { kind: 'shared_expert', layer: 2, proj: 'down' }],
      ['model.layers.2.mlp.experts.59.down_proj.weight', { kind: 'routed_expert', layer: 2, expert: 59, proj: 'down' }],
      ['model.layers.0.mlp.gate_proj.weight', { kind: 'dense_mlp', layer: 0, proj: 'gate' }],
    ]);
  });

  it('qwen3_moe: q_norm/k_norm are norms', () => {
    check(spec('qwen3_moe'), [
      ...llamaCommon(47),
      ['model.layers.47.self_attn.q_norm.weight', { kind: 'norm', layer: 47 }],
      ['model.layers.47.self_attn.k_norm.weight', { kind: 'norm', layer: 47 }],
      ['model.layers.47.mlp.gate.weight', { kind: 'router', layer: 47 }],
      ['model.layers.47.mlp.experts.127.gate_proj.weight', { kind: 'routed_expert', layer: 47, expert: 127, proj: 'gate' }],
      ['model.layers.47.mlp.experts.127.up_proj.weight', { kind: 'routed_expert', layer: 47, expert: 127, proj: 'up' }],
    ]);
  });

  it('olmoe', () => {
    check(spec('olmoe'), [
      ...llamaCommon(15),
      ['model.layers.15.self_attn.q_norm.weight', { kind: 'norm', layer: 15 }],
      ['model.layers.15.self_attn.k_norm.weight', { kind: 'norm', layer: 15 }],
      ['model.layers.15.mlp.gate.weight', { kind: 'router', layer: 15 }],
      ['model.layers.15.mlp.experts.63.down_proj.weight', { kind: 'routed_expert', layer: 15, expert: 63, proj: 'down' }],
    ]);
  });

  const deepseekCommon: Case[] = [
    ['model.embed_tokens.weight', { kind: 'embedding' }],
    ['model.norm.weight', { kind: 'norm' }],
    ['lm_head.weight', { kind: 'lm_head' }],
    ['model.layers.0.input_layernorm.weight', { kind: 'norm', layer: 0 }],
    ['model.layers.0.post_attention_layernorm.weight', { kind: 'norm', layer: 0 }],
    ['model.layers.0.self_attn.q_a_proj.weight', { kind: 'attention', layer: 0 }],
    ['model.layers.0.self_attn.q_a_layernorm.weight', { kind: 'norm', layer: 0 }],
    ['model.layers.0.self_attn.q_b_proj.weight', { kind: 'attention', layer: 0 }],
    ['model.layers.0.self_attn.q_proj.weight', { kind: 'attention', layer: 0 }],
    ['model.layers.0.self_attn.kv_a_proj_with_mqa.weight', { kind: 'attention', layer: 0 }],
    ['model.layers.0.self_attn.kv_a_layernorm.weight', { kind: 'norm', layer: 0 }],
    ['model.layers.0.self_attn.kv_b_proj.weight', { kind: 'attention', layer: 0 }],
    ['model.layers.0.self_attn.o_proj.weight', { kind: 'attention', layer: 0 }],
    ['model.layers.0.mlp.gate_proj.weight', { kind: 'dense_mlp', layer: 0, proj: 'gate' }],
    ['model.layers.2.mlp.up_proj.weight', { kind: 'dense_mlp', layer: 2, proj: 'up' }],
    ['model.layers.2.mlp.down_proj.weight', { kind: 'dense_mlp', layer: 2, proj: 'down' }],
    ['model.layers.3.mlp.gate.weight', { kind: 'router', layer: 3 }],
    ['model.layers.3.mlp.shared_experts.gate_proj.weight', { kind: 'shared_expert', layer: 3, proj: 'gate' }],
    ['model.layers.3.mlp.shared_experts.down_proj.weight', { kind: 'shared_expert', layer: 3, proj: 'down' }],
    ['model.layers.60.mlp.experts.255.up_proj.weight', { kind: 'routed_expert', layer: 60, expert: 255, proj: 'up' }],
    // scales classify as their weight
    ['model.layers.60.mlp.experts.255.up_proj.weight_scale_inv', { kind: 'routed_expert', layer: 60, expert: 255, proj: 'up' }],
    ['model.layers.0.self_attn.kv_b_proj.weight_scale_inv', { kind: 'attention', layer: 0 }],
  ];

  it('deepseek_v3 / kimi_k2: MLA attention, dense layers, router bias, MTP layer 61', () => {
    for (const f of ['deepseek_v3', 'kimi_k2']) {
      check(spec(f), [
        ...deepseekCommon,
        ['model.layers.3.mlp.gate.e_score_correction_bias', { kind: 'router_bias', layer: 3 }],
        ['model.layers.61.embed_tokens.weight', { kind: 'embedding', layer: 61 }],
        ['model.layers.61.enorm.weight', { kind: 'norm', layer: 61 }],
        ['model.layers.61.hnorm.weight', { kind: 'norm', layer: 61 }],
        ['model.layers.61.eh_proj.weight', { kind: 'other', layer: 61 }],
        ['model.layers.61.eh_proj.weight_scale_inv', { kind: 'other', layer: 61 }],
        ['model.layers.61.shared_head.norm.weight', { kind: 'norm', layer: 61 }],
        ['model.layers.61.shared_head.head.weight', { kind: 'lm_head', layer: 61 }],
        ['model.layers.61.self_attn.q_a_layernorm.weight', { kind: 'norm', layer: 61 }],
        ['model.layers.61.mlp.gate.weight', { kind: 'router', layer: 61 }],
        ['model.layers.61.mlp.gate.e_score_correction_bias', { kind: 'router_bias', layer: 61 }],
        ['model.layers.61.mlp.experts.12.down_proj.weight', { kind: 'routed_expert', layer: 61, expert: 12, proj: 'down' }],
        ['model.layers.61.mlp.shared_experts.up_proj.weight', { kind: 'shared_expert', layer: 61, proj: 'up' }],
      ]);
    }
  });

  it('deepseek_v2', () => {
    check(spec('deepseek_v2'), deepseekCommon);
  });

  it('unknown names are other, with their layer', () => {
    expect(classifyTensor(spec('mixtral'), 'model.layers.3.self_attn.rotary_emb.inv_freq')).toEqual({ kind: 'other', layer: 3 });
    expect(classifyTensor(spec('deepseek_v3'), 'something.else')).toEqual({ kind: 'other' });
  });
});

describe('detectArchitecture', () => {
  it('picks the family by model_type', () => {
    for (const f of FAMILIES) {
      expect(detectArchitecture({ model_type: f.modelTypes[0] }, []).name).toBe(f.name);
    }
  });

  it('falls back to generic for …layers.L…experts.E… names', () => {
    const names = [
      'model.embed_tokens.weight',
      'model.layers.0.ln_1.weight',
      'model.layers.0.attn.qkv_proj.weight',
      'model.layers.0.attn.out_proj.weight',
      'model.layers.0.ln_2.weight',
      'model.layers.0.moe.router.weight',
      'model.layers.0.moe.experts.3.w_in.weight',
      'model.layers.0.moe.experts.3.w_out.weight',
      'model.final_norm.weight',
      'lm_head.weight',
    ];
    const s = detectArchitecture({ model_type: 'my_moe', num_hidden_layers: 1, hidden_size: 8, num_experts: 4, num_experts_per_tok: 2 }, names);
    expect(s.name).toBe('generic');
    expect(s.modelTypes).toEqual(['my_moe']);
    expect(s.config).toMatchObject({ layers: 'num_hidden_layers', hiddenSize: 'hidden_size', experts: 'num_experts', expertsPerToken: 'num_experts_per_tok', sharedExperts: null });
    expect(s.routerBias).toBe('none');
    const roles = names.map((n) => classifyTensor(s, n));
    expect(roles).toEqual([
      { kind: 'embedding' },
      { kind: 'norm', layer: 0 },
      { kind: 'attention', layer: 0 },
      { kind: 'attention', layer: 0 },
      { kind: 'norm', layer: 0 },
      { kind: 'router', layer: 0 },
      { kind: 'routed_expert', layer: 0, expert: 3, proj: 'up' },
      { kind: 'routed_expert', layer: 0, expert: 3, proj: 'down' },
      { kind: 'norm' },
      { kind: 'lm_head' },
    ]);
    // A Mixtral-like layout under another model_type (e.g. PhiMoE) keeps w1/w3/w2 meanings.
    const phi = detectArchitecture({ model_type: 'phimoe', num_local_experts: 16 }, ['model.layers.0.block_sparse_moe.experts.0.w1.weight']);
    expect(phi.config.experts).toBe('num_local_experts');
    expect(classifyTensor(phi, 'model.layers.0.block_sparse_moe.experts.15.w3.weight')).toEqual({ kind: 'routed_expert', layer: 0, expert: 15, proj: 'up' });
    expect(classifyTensor(phi, 'model.layers.0.block_sparse_moe.gate.weight')).toEqual({ kind: 'router', layer: 0 });
    expect(classifyTensor(s, 'model.layers.1.mlp.shared_experts.gate_proj.weight')).toEqual({ kind: 'shared_expert', layer: 1, proj: 'gate' });
  });

  it('refuses fused-expert families and dense models with a reason', () => {
    expect(() => detectArchitecture({ model_type: 'dbrx' }, ['transformer.blocks.0.ffn.experts.mlp.w1'])).toThrow(/dbrx.*not supported yet.*fused/);
    expect(() => detectArchitecture({ model_type: 'llama' }, ['model.layers.0.mlp.gate_proj.weight'])).toThrow(MoeError);
    expect(() => detectArchitecture({ model_type: 'llama' }, ['model.layers.0.mlp.gate_proj.weight'])).toThrow(/does not look like a Mixture-of-Experts/);
  });
});
