// What an opened parent model looks like to the rest of the engine.
import type { ByteSource, ModelFolder } from '../io.ts';
import type { ArchitectureSpec } from '../arch/types.ts';

/** One entry of a safetensors header, with absolute offsets into its file. */
export interface TensorRecord {
  name: string;
  dtype: string;
  shape: number[];
  /** Shard file name inside the model folder. */
  file: string;
  /** Absolute byte offset of the first data byte in `file` (8 + header length + data_offsets[0]). */
  offset: number;
  /** Byte length (data_offsets[1] - data_offsets[0]). */
  length: number;
}

export const TENSOR_KINDS = [
  'embedding', 'attention', 'norm', 'router', 'router_bias', 'routed_expert',
  'shared_expert', 'dense_mlp', 'lm_head', 'other',
] as const;
export type TensorKind = (typeof TENSOR_KINDS)[number];

export const PROJECTIONS = ['gate', 'up', 'down'] as const;
export type Projection = (typeof PROJECTIONS)[number];

/** What a tensor is in the model: its kind and, where they apply, layer, expert and projection. */
export interface TensorRole {
  kind: TensorKind;
  layer?: number;
  expert?: number;
  proj?: Projection;
}

/**
 * A tensor as the engine merges it. An FP8 weight's `…_scale_inv` block-scale tensor is not a
 * weight of its own: it rides along in `scale` and is always copied, mixed or dropped with it.
 */
export interface Weight {
  name: string;
  role: TensorRole;
  data: TensorRecord;
  scale?: TensorRecord;
  /** An F8_E4M3 weight that came without a block-scale tensor: it can be copied, never mixed. */
  unscaledFp8?: boolean;
}

/** Layers, experts and shared experts as read from config.json and checked against the tensors. */
export interface ModelLayout {
  layers: number;
  /** Layer indices that have routed experts. */
  moeLayers: number[];
  denseLayers: number[];
  /** Routed experts per MoE layer (from config, confirmed by tensor names). */
  experts: number;
  /** Experts chosen per token, where the config says. */
  expertsPerToken?: number;
  sharedExperts: number;
  hiddenSize?: number;
  /**
   * Layers past `layers` that the checkpoint holds as extra modules (DeepSeek-V3's
   * multi-token-prediction layer 61, counted by config `num_nextn_predict_layers`).
   * Their tensors are classified with their layer index; they are in neither list above.
   */
  mtpLayers?: number[];
}

export interface Model {
  /** Folder name, used in messages. */
  name: string;
  folder: ModelFolder;
  config: Record<string, unknown>;
  arch: ArchitectureSpec;
  layout: ModelLayout;
  /** Every weight, in file order (shard order, then offset). Scale tensors are inside their weight. */
  weights: Weight[];
  byName: Map<string, Weight>;
  /** Shard files, in the order they are read. */
  shards: string[];
  /** Opened shard files, by file name. */
  sources: Map<string, ByteSource>;
  /** Files in the folder other than shards, index and config (tokenizer, generation config, …). */
  otherFiles: string[];
  /** Bytes of tensor data on disk, scales included. */
  sizeOnDisk: number;
  /** Things found while opening that do not stop a merge but a user should see. */
  warnings?: string[];
}
