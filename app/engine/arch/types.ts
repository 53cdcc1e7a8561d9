// A model family described as data (see families.json), in the manner of mergekit's
// architecture files: adding an MoE family is adding an entry, not code.
import type { Projection, TensorKind } from '../model/types.ts';

/**
 * How a fused tensor holds its experts' projections. The tensor is [E, R, C] (or, `stacked2d`,
 * [E·R, C]): slab e is expert e. `input` is the slab axis that runs along the projections' input:
 * 'cols' for [out, in] slabs as nn.Linear stores them, 'rows' for transposed [in, out] slabs
 * (Llama-4, Qwen3-VL-MoE, gpt-oss in BF16), 'auto' to tell from the hidden size (the input of gate
 * and up, the output of down). The projections `parts` sit side by side along the other axis, the
 * output, as consecutive `halves` (gate rows, then up rows) or `interleaved` (gate, up, gate, …).
 */
export interface FusedParts {
  parts: Projection[];
  mode: 'halves' | 'interleaved';
  input: 'rows' | 'cols' | 'auto';
  stacked2d?: boolean;
  /** A per-expert bias [E, out] (gpt-oss), not a weight. */
  bias?: boolean;
}

export interface TensorPattern {
  /**
   * Regular expression over the logical tensor name. Named groups: `layer`, `expert`, `proj` (an
   * on-disk projection name, mapped through `projections`), and `mtp` (a multi-token-prediction
   * layer numbered after the model's last layer: layer = layers + mtp).
   */
  match: string;
  kind: TensorKind;
  /** A routed-expert tensor holding every expert of its layer. */
  fused?: FusedParts;
  /** A router weight or bias whose first dimension (of its non-unit ones) is the expert. */
  perExpert?: boolean;
  /** A per-expert tensor that is a projection's bias (gpt-oss). */
  bias?: boolean;
  /**
   * Only for weights stored in this codec kind ("plain", "fp8", "mxfp4", …): gpt-oss stores its
   * MXFP4 experts [E, out, in] and their BF16 re-saves transposed [E, in, out] under one name.
   */
  codec?: string;
}

/**
 * config.json keys, each a list of alternatives (the first one present wins): transformers ≥ 5
 * writes `num_local_experts` where a hub config says `num_experts`. A dotted key reads inside an
 * object (`ffn_config.moe_num_experts`).
 */
export interface ConfigKeys {
  layers: string[];
  hiddenSize: string[];
  experts: string[];
  expertsPerToken: string[];
  sharedExperts: string[];
  vocabSize: string[];
  /** Extra multi-token-prediction layers after the last one. */
  mtpLayers: string[];
  /** Group-limited routing (DeepSeek `n_group`, `topk_group`). */
  groups: string[];
  topkGroups: string[];
  // Which layers are MoE: every key present applies (see moe-layers.ts).
  /** Layers below this are dense (DeepSeek's first_k_dense_replace). */
  firstDenseLayers: string[];
  /** MoE when l % n == 0 above the first dense layers (DeepSeek's moe_layer_freq). */
  moeLayerFreq: string[];
  /** MoE when (l + 1) % n == 0 (Qwen's decoder_sparse_step, ERNIE's moe_layer_interval, Llama-4's interleave_moe_layer_step). */
  sparseStep: string[];
  /** Explicit dense layers (Qwen's mlp_only_layers). */
  denseLayerList: string[];
  /** Explicit MoE layers (Llama-4's moe_layers). */
  moeLayerList: string[];
  /** A string with one character per layer, 'E' for MoE (Nemotron-H's hybrid_override_pattern). */
  layerPattern: string[];
  /** MoE when (l − offset) % period == 0 (Jamba). */
  expertPeriod: string[];
  expertOffset: string[];
  /** MoE from this layer on (ERNIE's moe_layer_start_index) up to the end index (−1: the last). */
  moeStart: string[];
  moeEnd: string[];
}

/**
 * What the router's bias is, which decides what an expert switch means:
 * - selection: added to the scores only to choose experts (DeepSeek-V3 noaux_tc and its kin);
 *   `off` is exact, `on` exact unless routing is group-limited (topk_group < n_group);
 * - logits: added to the logits before top-k and the softmax over the chosen ones (gpt-oss);
 *   `off` is exact, `on` is not (the forced expert's softmax weight would dominate);
 * - none: no bias; an expert can be muted or pruned, not switched.
 */
export type RouterBias = 'selection' | 'logits' | 'none';

export interface ArchitectureSpec {
  /** Family name, e.g. "deepseek_v3". */
  name: string;
  /** config.json `model_type` values this entry serves. */
  modelTypes: string[];
  /** Where the config keys live: "" the top level, "text_config" a VLM's text model. Tried in order. */
  configRoots: string[];
  config: ConfigKeys;
  /** First matching pattern decides a tensor's kind. */
  tensors: TensorPattern[];
  /** On-disk projection names to gate/up/down (Mixtral: w1 → gate, w3 → up, w2 → down). */
  projections: Record<string, Projection>;
  routerBias: RouterBias;
  /** What the family's loaders ship; shown by inspect. */
  notes?: string;
}
