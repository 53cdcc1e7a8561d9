import { describe, expect, it } from 'vitest';
import { classifyTensor } from '../app/engine/arch/classify.ts';
import { FAMILIES, configValue, detectArchitecture, familyByName } from '../app/engine/arch/families.ts';
import type { ArchitectureSpec } from '../app/engine/arch/types.ts';
import { MoeError } from '../app/engine/io.ts';
import type { TensorRole } from '../app/engine/model/types.ts';

function spec(name: string): ArchitectureSpec {
  const s = familyByName(name);
  if (!s) throw new Error(`no family ${name}`);
  return s;
}

type Case = [string, TensorRole];

function check(s: ArchitectureSpec, cases: Case[], layers = 0) {
  for (const [name, role] of cases) {
    expect({ name, role: classifyTensor(s, name, layers).role }).toEqual({ name, role });
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
  it('holds the families of 2025–26 with their router bias semantics and config keys', () => {
    expect(FAMILIES.map((f) => f.name)).toEqual([
      'mixtral', 'phimoe', 'qwen2_moe', 'qwen3_moe', 'olmoe', 'qwen3_next', 'qwen3_5_moe', 'qwen3_vl_moe', 'deepseek_v2', 'deepseek_v3',
      'glm4_moe', 'glm4v_moe', 'minimax_m2', 'ernie4_5_moe', 'nemotron_h', 'gpt_oss', 'llama4', 'granitemoe', 'dbrx', 'jamba',
      'hunyuan_v1_moe', 'bailing_moe',
    ]);
    for (const f of ['deepseek_v3', 'glm4_moe', 'glm4v_moe', 'minimax_m2', 'ernie4_5_moe', 'nemotron_h', 'bailing_moe']) expect(spec(f).routerBias).toBe('selection');
    expect(spec('gpt_oss').routerBias).toBe('logits');
    for (const f of ['mixtral', 'qwen2_moe', 'qwen3_moe', 'olmoe', 'deepseek_v2', 'llama4', 'granitemoe', 'dbrx', 'jamba']) expect(spec(f).routerBias).toBe('none');
    // One entry serves every model_type of a layout.
    for (const t of ['deepseek_v3', 'deepseek_v32', 'kimi_k2', 'dots1']) expect(detectArchitecture({ model_type: t }, []).name).toBe('deepseek_v3');
    // transformers ≥ 5 writes num_local_experts where hub configs say num_experts: both are read.
    expect(spec('qwen3_moe').config.experts).toEqual(['num_experts', 'num_local_experts']);
    expect(configValue(spec('qwen3_moe'), { num_local_experts: 4 }, 'experts')).toEqual({ path: 'num_local_experts', value: 4 });
    expect(configValue(spec('qwen3_5_moe'), { text_config: { num_experts: 256 } }, 'experts')).toEqual({ path: 'text_config.num_experts', value: 256 });
    expect(configValue(spec('dbrx'), { ffn_config: { moe_num_experts: 16 } }, 'experts')).toEqual({ path: 'ffn_config.moe_num_experts', value: 16 });
    expect(spec('deepseek_v3').config).toMatchObject({ experts: ['n_routed_experts', 'num_local_experts'], sharedExperts: ['n_shared_experts'], firstDenseLayers: ['first_k_dense_replace'] });
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
  ];

  it('deepseek_v3 (Kimi-K2, V3.2, dots1): MLA attention, dense layers, router bias, MTP layer 61, V3.2 indexer', () => {
    for (const f of ['deepseek_v3']) {
      check(spec(f), [
        ['model.layers.5.self_attn.indexer.wq_b.weight', { kind: 'attention', layer: 5 }],
        ['model.layers.5.self_attn.indexer.k_norm.bias', { kind: 'attention', layer: 5 }],
        ...deepseekCommon,
        ['model.layers.3.mlp.gate.e_score_correction_bias', { kind: 'router_bias', layer: 3 }],
        ['model.layers.61.embed_tokens.weight', { kind: 'embedding', layer: 61 }],
        ['model.layers.61.enorm.weight', { kind: 'norm', layer: 61 }],
        ['model.layers.61.hnorm.weight', { kind: 'norm', layer: 61 }],
        ['model.layers.61.eh_proj.weight', { kind: 'other', layer: 61 }],
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
    expect(classifyTensor(spec('mixtral'), 'model.layers.3.self_attn.rotary_emb.inv_freq').role).toEqual({ kind: 'other', layer: 3 });
    expect(classifyTensor(spec('deepseek_v3'), 'something.else').role).toEqual({ kind: 'other' });
  });
});

describe('classifyTensor: the families of 2025–26 (names as their loaders and releases write them)', () => {
  const fusedOf = (f: string, name: string, codec?: string) => classifyTensor(spec(f), name, 48, codec).fused;

  it('transformers ≥ 5 re-saves of per-expert families: fused gate_up_proj [E, 2I, H] (gate rows first) and down_proj', () => {
    for (const f of ['qwen2_moe', 'qwen3_moe', 'olmoe', 'deepseek_v3', 'glm4_moe']) {
      check(spec(f), [
        ['model.layers.3.mlp.experts.gate_up_proj', { kind: 'routed_expert', layer: 3 }],
        ['model.layers.3.mlp.experts.down_proj', { kind: 'routed_expert', layer: 3 }],
      ]);
      expect(fusedOf(f, 'model.layers.3.mlp.experts.gate_up_proj')).toEqual({ parts: ['gate', 'up'], mode: 'halves', input: 'cols' });
      expect(fusedOf(f, 'model.layers.3.mlp.experts.down_proj')).toEqual({ parts: ['down'], mode: 'halves', input: 'cols' });
    }
  });

  it('qwen3_next / qwen3_5_moe / qwen3_vl_moe: linear attention, shared expert and its gate, MTP, vision tower', () => {
    check(spec('qwen3_next'), [
      ['model.layers.0.linear_attn.in_proj_qkvz.weight', { kind: 'attention', layer: 0 }],
      ['model.layers.0.linear_attn.A_log', { kind: 'attention', layer: 0 }],
      ['model.layers.3.mlp.shared_expert_gate.weight', { kind: 'router', layer: 3 }],
      ['model.layers.3.mlp.shared_expert.up_proj.weight', { kind: 'shared_expert', layer: 3, proj: 'up' }],
      ['mtp.layers.0.mlp.experts.7.down_proj.weight', { kind: 'routed_expert', layer: 48, expert: 7, proj: 'down' }],
      ['mtp.fc.weight', { kind: 'other' }],
    ], 48);
    check(spec('qwen3_5_moe'), [
      ['model.language_model.layers.2.mlp.gate.weight', { kind: 'router', layer: 2 }],
      ['model.language_model.layers.2.mlp.experts.gate_up_proj', { kind: 'routed_expert', layer: 2 }],
      ['model.language_model.layers.2.linear_attn.conv1d.weight', { kind: 'attention', layer: 2 }],
      ['model.visual.blocks.0.attn.qkv.weight', { kind: 'other' }],
    ]);
    expect(fusedOf('qwen3_vl_moe', 'model.language_model.layers.2.mlp.experts.gate_up_proj')).toEqual({ parts: ['gate', 'up'], mode: 'halves', input: 'auto' });
  });

  it('glm4_moe / glm4v_moe / minimax_m2 / ernie4_5_moe / nemotron_h / bailing_moe: their selection biases', () => {
    check(spec('glm4_moe'), [['model.layers.5.mlp.gate.e_score_correction_bias', { kind: 'router_bias', layer: 5 }], ['model.layers.5.self_attn.q_proj.bias', { kind: 'attention', layer: 5 }]]);
    check(spec('glm4v_moe'), [
      ['model.language_model.layers.5.mlp.gate.e_score_correction_bias', { kind: 'router_bias', layer: 5 }],
      ['model.language_model.layers.5.mlp.experts.9.up_proj.weight', { kind: 'routed_expert', layer: 5, expert: 9, proj: 'up' }],
      ['model.visual.merger.proj.weight', { kind: 'other' }],
    ]);
    check(spec('minimax_m2'), [
      ['model.layers.5.block_sparse_moe.e_score_correction_bias', { kind: 'router_bias', layer: 5 }],
      ['model.layers.5.block_sparse_moe.experts.3.w2.weight', { kind: 'routed_expert', layer: 5, expert: 3, proj: 'down' }],
    ]);
    check(spec('ernie4_5_moe'), [
      ['model.layers.5.mlp.moe_statics.e_score_correction_bias', { kind: 'router_bias', layer: 5 }],
      ['model.mtp_block.0.mlp.experts.1.gate_proj.weight', { kind: 'routed_expert', layer: 28, expert: 1, proj: 'gate' }],
    ], 28);
    check(spec('nemotron_h'), [
      ['backbone.layers.1.mixer.gate.e_score_correction_bias', { kind: 'router_bias', layer: 1 }],
      ['backbone.layers.1.mixer.experts.0.up_proj.weight', { kind: 'routed_expert', layer: 1, expert: 0, proj: 'up' }],
      ['backbone.layers.0.mixer.in_proj.weight', { kind: 'attention', layer: 0 }],
      ['backbone.embeddings.weight', { kind: 'embedding' }],
    ]);
    check(spec('bailing_moe'), [['model.layers.5.mlp.gate.expert_bias', { kind: 'router_bias', layer: 5 }]]);
  });

  it('gpt_oss: MXFP4 experts [E, out, in] interleaved, BF16 re-saves transposed, a router bias on the logits', () => {
    const gu = 'model.layers.0.mlp.experts.gate_up_proj';
    expect(fusedOf('gpt_oss', gu, 'mxfp4')).toEqual({ parts: ['gate', 'up'], mode: 'interleaved', input: 'cols' });
    expect(fusedOf('gpt_oss', gu, 'plain')).toEqual({ parts: ['gate', 'up'], mode: 'interleaved', input: 'rows' });
    expect(fusedOf('gpt_oss', 'model.layers.0.mlp.experts.down_proj', 'mxfp4')).toEqual({ parts: ['down'], mode: 'halves', input: 'cols' });
    expect(fusedOf('gpt_oss', 'model.layers.0.mlp.experts.down_proj', 'plain')).toEqual({ parts: ['down'], mode: 'halves', input: 'rows' });
    expect(fusedOf('gpt_oss', 'model.layers.0.mlp.experts.gate_up_proj_bias')).toEqual({ parts: ['gate', 'up'], mode: 'interleaved', input: 'cols', bias: true });
    check(spec('gpt_oss'), [
      ['model.layers.0.mlp.router.bias', { kind: 'router_bias', layer: 0 }],
      ['model.layers.0.self_attn.sinks', { kind: 'attention', layer: 0 }],
    ]);
  });

  it('llama4 / granitemoe / dbrx / jamba / hunyuan_v1_moe / phimoe', () => {
    check(spec('llama4'), [
      ['language_model.model.layers.1.feed_forward.router.weight', { kind: 'router', layer: 1 }],
      ['language_model.model.layers.1.feed_forward.shared_expert.down_proj.weight', { kind: 'shared_expert', layer: 1, proj: 'down' }],
      ['language_model.model.layers.0.feed_forward.gate_proj.weight', { kind: 'dense_mlp', layer: 0, proj: 'gate' }],
      ['vision_model.patch_embedding.linear.weight', { kind: 'other' }],
    ]);
    expect(fusedOf('llama4', 'language_model.model.layers.1.feed_forward.experts.gate_up_proj')).toEqual({ parts: ['gate', 'up'], mode: 'halves', input: 'auto' });
    expect(fusedOf('granitemoe', 'model.layers.2.block_sparse_moe.input_linear.weight')).toEqual({ parts: ['gate', 'up'], mode: 'halves', input: 'cols' });
    expect(fusedOf('dbrx', 'transformer.blocks.2.ffn.experts.mlp.w2')).toEqual({ parts: ['down'], mode: 'halves', input: 'rows', stacked2d: true });
    check(spec('jamba'), [['model.layers.1.feed_forward.router.weight', { kind: 'router', layer: 1 }]]);
    check(spec('hunyuan_v1_moe'), [['model.layers.1.mlp.gate.wg.weight', { kind: 'router', layer: 1 }]]);
    check(spec('phimoe'), [['model.layers.1.block_sparse_moe.experts.2.w3.weight', { kind: 'routed_expert', layer: 1, expert: 2, proj: 'up' }]]);
  });
});

describe('detectArchitecture', () => {
  it('picks the family by model_type', () => {
    for (const f of FAMILIES) {
      expect(detectArchitecture({ model_type: f.modelTypes[0] }, []).name).toBe(f.name);
    }
  });

  it('falls back to generic for …layers.L…experts.E… names (and fused …experts.gate_up_proj)', () => {
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
    expect(configValue(s, { num_experts: 4 }, 'experts')).toEqual({ path: 'num_experts', value: 4 });
    expect(s.routerBias).toBe('none');
    const roles = names.map((n) => classifyTensor(s, n).role);
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
    expect(classifyTensor(s, 'model.layers.1.mlp.shared_experts.gate_proj.weight').role).toEqual({ kind: 'shared_expert', layer: 1, proj: 'gate' });
    const fused = detectArchitecture({ model_type: 'new_moe' }, ['model.layers.0.mlp.experts.gate_up_proj']);
    expect(classifyTensor(fused, 'model.layers.0.mlp.experts.gate_up_proj').fused).toMatchObject({ parts: ['gate', 'up'] });
  });

  it('refuses dense models with a reason', () => {
    expect(() => detectArchitecture({ model_type: 'llama' }, ['model.layers.0.mlp.gate_proj.weight'])).toThrow(MoeError);
    expect(() => detectArchitecture({ model_type: 'llama' }, ['model.layers.0.mlp.gate_proj.weight'])).toThrow(/does not look like a Mixture-of-Experts/);
  });
});
