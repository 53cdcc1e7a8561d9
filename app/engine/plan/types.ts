// A merge plan: every output byte decided before any is written, so sizes, headers and the
// list of files are known up front (the safetensors header goes first in each shard).
//
// The child is described weight by weight. A child weight is slabs × rows × cols of values in
// one codec (the base's layout and format, or a dtype the recipe asks for); each slab is made of
// cells — the whole slab, or one projection's region of a fused slab — and each cell says where
// its values come from: a region of some parent's weight, copied or mixed, zeros, or a value.
import type { Codec } from '../formats/codec.ts';
import type { CompanionRole, Model, Projection, Region, TensorKind, TensorRole, Weight, WeightView } from '../model/types.ts';
import type { Recipe } from '../recipe/schema.ts';

/** A region of one slab of a parent's weight: where a cell's values are read from. */
export interface SourceCell {
  parent: string;
  weight: Weight;
  slab: number;
  region: Region;
}

export type CellOp =
  /** The source's values as they are (its stored bytes where the child's codec is the same). */
  | { type: 'copy'; from: SourceCell }
  /** A convex combination in f32, inputs in the recipe's parent order (zero weights left out). */
  | { type: 'mix'; inputs: { from: SourceCell; weight: number }[] }
  /** Every value zero (a muted expert: FP8 gets zero codes with a valid scale). */
  | { type: 'zero' }
  /** Every value this number (a switched router-bias entry). */
  | { type: 'value'; value: number };

export interface PlannedCell {
  /** Where the values sit in the child's slab. */
  region: Region;
  proj?: Projection;
  bias?: boolean;
  op: CellOp;
  /** Index of the rule that decided it, or −1 for "unmatched: from the base". */
  rule: number;
  edit?: 'mute' | 'off' | 'on';
  /** The threshold applies: if every mixed parent is within `below` of this cell of the base, it is copied from the base instead. */
  thresholdBase?: SourceCell;
}

/** Where a child slot's expert comes from. */
export interface ChildSlot {
  /** Its index in the base's (parents') numbering; absent for an added expert. */
  baseExpert?: number;
  how: 'kept' | 'transplanted' | 'added';
  /** Transplanted and added: the expert whose weights (all projections, scales, biases) it takes. */
  source?: { parent: string; layer: number; expert: number };
  /** Router row and bias entry: the base slot's, through the rules (`rules`), or the source expert's. */
  router: 'rules' | 'source';
  /** The recipe entry that made it ("transplant 1", "add 2"), for messages and the card. */
  entry?: string;
}

/** One tensor the child's files hold. */
export interface StoredTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  /** The weight's values, or one of its companions (a scale, an activation scale, …). */
  role: 'data' | CompanionRole;
  /** Holds one equal share per slab (the expert axis of a fused tensor, a router's rows); else it belongs to the whole weight. */
  perSlab: boolean;
}

/** How a child weight is finally made, for the report and the card. */
export type Made = 'copied' | 'converted' | 'mixed' | 'muted' | 'patched' | 'assembled';

export interface PlannedTensor {
  /** Logical name in the child (a per-expert tensor renumbered where experts moved). */
  name: string;
  /** The base weight this child weight takes the place of (its name in the base's numbering). */
  baseName: string;
  /** Role in the child: `expert` is the child's index. */
  role: TensorRole;
  codec: Codec;
  /** Logical shape of the values (the expert dimension resized where experts were removed or added). */
  shape: number[];
  view: WeightView;
  /** One per child slab. */
  slabs: PlannedCell[][];
  /** For weights whose slabs are experts (fused tensors, router rows, bias entries): the child slot of each. */
  slots?: ChildSlot[];
  /** Per-expert tensors: the child slot this tensor belongs to. */
  slot?: ChildSlot;
  /** What the files hold for it: the data tensor first, then its companions. */
  stored: StoredTensor[];
  /** The base weight it follows (layout, companions); a whole-tensor copy from another parent follows that parent's. */
  template: { parent: string; weight: Weight };
  /** A byte copy of the template as it is (every stored tensor). */
  wholeCopy: boolean;
  made: Made;
  /** The threshold may turn mixed cells into copies of the base. */
  thresholdCandidate: boolean;
}

/** One output shard: which stored tensors, in which order, at which offsets. */
export interface PlannedShard {
  file: string;
  /** The complete header bytes (8-byte length + JSON, padded). */
  header: Uint8Array;
  /** Stored tensors in file order, with their data offsets from the data start. */
  entries: { name: string; tensor: number; stored: number; begin: number; end: number }[];
  /** Header + data, the exact size of the file. */
  bytes: number;
}

export interface PlannedFile {
  name: string;
  bytes: number;
  what: 'shard' | 'index' | 'config' | 'copy' | 'card' | 'recipe';
}

/** Count of child weights per kind and where they came from. */
export interface KindSummary {
  kind: TensorKind;
  tensors: number;
  /** parent → weights copied (or converted) whole from it. */
  from: Record<string, number>;
  mixed: number;
  muted: number;
  patched: number;
  /** Weights assembled from regions of several sources (fused tensors with experts from different places, restructured routers). */
  assembled: number;
}

/** The child's experts of one layer, slot by slot. */
export interface LayerSlots {
  layer: number;
  slots: ChildSlot[];
}

export interface MergePlan {
  recipe: Recipe;
  /** Parent names in the recipe's order. */
  parentOrder: string[];
  base: string;
  parents: Map<string, Model>;
  /** Parents that only give experts (transplant, add): they need not share the base's skeleton. */
  donors: string[];
  tensors: PlannedTensor[];
  shards: PlannedShard[];
  /** Every file the merge writes, index last. */
  files: PlannedFile[];
  totalBytes: number;
  /** Sum of tensor bytes (index `metadata.total_size`). */
  tensorBytes: number;
  /** Files copied from the base folder as they are (tokenizer, generation config, …). */
  copiedFiles: string[];
  /** config.json of the child. */
  config: Record<string, unknown>;
  /** config.json bytes: the base's own bytes when nothing changed. */
  configBytes: Uint8Array;
  byKind: KindSummary[];
  /** Routed experts per MoE layer in the child (the base's unless experts were removed or added). */
  experts: number;
  /** Set when the recipe changes which experts the child has: every MoE layer's slots. */
  expertMap?: LayerSlots[];
  /** A sentence or two saying what the child will contain. */
  description: string;
  /** Warnings that do not stop the merge (compatibility notes, unrelated parents, re-quantized copies, …). */
  warnings: string[];
  outputDtype: string;
  shardSize: number;
}
