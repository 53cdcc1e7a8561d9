// A model family described as data (see families.json), in the manner of mergekit's
// architecture files: adding an MoE family is adding an entry, not code.
import type { Projection, TensorKind } from '../model/types.ts';

export interface TensorPattern {
  /** Regular expression over the tensor name; named groups `layer`, `expert`, `proj` are read. */
  match: string;
  kind: TensorKind;
}

export interface ArchitectureSpec {
  /** Family name, e.g. "deepseek_v3". */
  name: string;
  /** config.json `model_type` values this entry serves. */
  modelTypes: string[];
  /** config.json keys for the skeleton; null where the family has no such key. */
  config: {
    layers: string;
    hiddenSize: string;
    experts: string;
    expertsPerToken: string | null;
    sharedExperts: string | null;
    /** Layers below this index are dense (DeepSeek's first_k_dense_replace). */
    firstDenseLayers: string | null;
    /** Key of an explicit list of dense layers (Qwen's `mlp_only_layers`). */
    denseLayerList?: string | null;
    /** Key of "every n-th layer is MoE", counted from 1 (Qwen's `decoder_sparse_step`: MoE when (l+1) % n == 0). */
    sparseStep?: string | null;
    /** Key of "MoE when l % n == 0" above the first dense layers (DeepSeek's `moe_layer_freq`). */
    moeLayerFreq?: string | null;
    /** Key of the number of extra multi-token-prediction layers after the last layer (DeepSeek's `num_nextn_predict_layers`). */
    mtpLayers?: string | null;
    /** Key of the vocabulary size. */
    vocabSize?: string | null;
  };
  /** First matching pattern decides a tensor's kind. */
  tensors: TensorPattern[];
  /** On-disk projection names to gate/up/down (Mixtral: w1 → gate, w3 → up, w2 → down). */
  projections: Record<string, Projection>;
  /**
   * "selection_only": the router has a bias used only to choose experts (DeepSeek-V3 noaux_tc),
   * so an expert can be switched off/on exactly by editing it. "none": no such bias.
   */
  routerBias: 'selection_only' | 'none';
  /** Suffix of FP8 block-scale tensors that belong to a weight. */
  scaleSuffix?: string;
}
