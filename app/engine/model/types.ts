// What an opened parent model looks like to the rest of the engine.
//
// A *weight* is one logical tensor: its values (in a codec: a plain float dtype or a quantized
// format) and the stored tensors that hold them (the data tensor and its companions: scales,
// shapes). A weight is viewed as slabs × rows × cols of values. Where experts are stacked in one
// tensor (fused expert tensors, a router's rows, a selection bias's entries), slab e is expert e;
// a fused tensor's slab may hold several projections (gate and up), each a *region* of the slab.
// A per-expert tensor (`…experts.5.up_proj.weight`) is one slab, one region.
import type { ByteSource, ModelFolder } from '../io.ts';
import type { ArchitectureSpec, FusedParts } from '../arch/types.ts';
import type { Codec } from '../formats/codec.ts';

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
  /** A bias of an expert projection (gpt-oss), not its weight. */
  bias?: boolean;
}

/** The roles of a weight's companion tensors. */
export type CompanionRole = 'scale' | 'scale2' | 'global_scale' | 'input_scale' | 'input_global_scale' | 'shape' | 'zero_point';

export interface Companion {
  role: CompanionRole;
  record: TensorRecord;
}

/** Values of a weight as slabs × rows × cols. */
export interface WeightView {
  slabs: number;
  rows: number;
  cols: number;
}

/**
 * Where a projection of an expert sits inside its slab: a set of rows and a set of columns of the
 * slab (start, count, step), and whether the slab stores it transposed (input along the rows).
 * As a matrix [out, in] (a bias: [out] over one row), value (o, i) is at
 *   transposed ? (row0 + i·rowStep, col0 + o·colStep) : (row0 + o·rowStep, col0 + i·colStep).
 */
export interface Region {
  row0: number;
  rowCount: number;
  rowStep: number;
  col0: number;
  colCount: number;
  colStep: number;
  transposed: boolean;
}

/** How experts sit in a weight. */
export type ExpertAxis =
  /** A per-expert tensor: the whole weight is this expert's projection. */
  | { kind: 'single'; expert: number; proj?: Projection }
  /** Slab e is expert e (fused experts, a router's rows, a bias's entries); `parts` its projections. */
  | { kind: 'slabs'; parts: { proj?: Projection; region: Region }[] };

export interface Weight {
  /** Logical name (a quantized weight's data tensor may be named otherwise: `…_blocks`). */
  name: string;
  role: TensorRole;
  codec: Codec;
  /** Logical shape of the values (MXFP4 [E, R, C] for blocks [E, R, C/32, 16]; INT4 its weight_shape). */
  shape: number[];
  view: WeightView;
  data: TensorRecord;
  companions: Companion[];
  experts?: ExpertAxis;
  /** The fused layout it was classified with (for messages and the studio). */
  fused?: FusedParts;
  /** A per-expert tensor: where its expert index is in its name (renumbering renames it there). */
  expertSpan?: [number, number];
}

/** Layers, experts and shared experts as read from config.json and checked against the tensors. */
export interface ModelLayout {
  layers: number;
  /** Layer indices that have routed experts. */
  moeLayers: number[];
  denseLayers: number[];
  /** Routed experts per MoE layer (from config, confirmed by tensors). */
  experts: number;
  /** Experts chosen per token, where the config says. */
  expertsPerToken?: number;
  sharedExperts: number;
  hiddenSize?: number;
  /** Group-limited routing (DeepSeek's n_group / topk_group), where the config says. */
  groups?: number;
  topkGroups?: number;
  /**
   * Layers past `layers` that the checkpoint holds as extra modules (DeepSeek-V3's
   * multi-token-prediction layer 61, Qwen's `mtp.layers.0`), numbered after the last layer.
   * Their tensors are classified with that index; they are in neither list above.
   */
  mtpLayers?: number[];
}

/** Where one projection of one expert lives: a weight, and a region of one of its slabs. */
export interface ExpertPart {
  weight: Weight;
  slab: number;
  region: Region;
  proj: Projection;
  bias: boolean;
}

/** The routed experts of one layer (MTP layers included), however they are stored. */
export interface LayerExperts {
  layer: number;
  experts: number;
  /** parts[e] lists expert e's projections (and biases), in the order the weights come. */
  parts: ExpertPart[][];
  /** Router weights and biases whose slab e is expert e's row or entry. */
  routers: Weight[];
}

export interface Model {
  /** Folder name, used in messages. */
  name: string;
  folder: ModelFolder;
  config: Record<string, unknown>;
  arch: ArchitectureSpec;
  layout: ModelLayout;
  /** Every weight, in file order (shard order, then offset). Companions are inside their weight. */
  weights: Weight[];
  byName: Map<string, Weight>;
  /** Routed experts by layer. */
  experts: Map<number, LayerExperts>;
  /** Shard files, in the order they are read. */
  shards: string[];
  /** Opened shard files, by file name. */
  sources: Map<string, ByteSource>;
  /** Files in the folder other than shards, index and config (tokenizer, generation config, …). */
  otherFiles: string[];
  /** Bytes of tensor data on disk, companions included. */
  sizeOnDisk: number;
  /** Things found while opening that do not stop a merge but a user should see. */
  warnings?: string[];
}
