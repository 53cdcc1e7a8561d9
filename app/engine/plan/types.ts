// A merge plan: every output byte decided before any is written, so sizes, headers and the
// list of files are known up front (the safetensors header goes first in each shard).
import type { FloatDtype } from '../formats/dtype.ts';
import type { Model, TensorKind, TensorRole } from '../model/types.ts';
import type { Recipe } from '../recipe/schema.ts';

/** How a child tensor's bytes are made. */
export type TensorOp =
  /** Byte-for-byte copy of one parent's tensor (and its FP8 scale). Never decoded. */
  | { type: 'copy'; parent: string }
  /** One parent's tensor decoded and encoded in another dtype (`output.dtype` differs). */
  | { type: 'convert'; parent: string }
  /** A convex combination of parents (weights in the recipe's parent order, zeros included). */
  | { type: 'mix'; weights: { parent: string; weight: number }[] }
  /** An expert muted by an edit: every value zero (FP8: zero codes with a valid scale). */
  | { type: 'zero' };

/** An expert edit applied to a router-bias tensor after its op ran: entry → value. */
export interface BiasPatch {
  expert: number;
  value: number;
  action: 'off' | 'on';
}

export interface PlannedTensor {
  name: string;
  role: TensorRole;
  shape: number[];
  op: TensorOp;
  /** Index of the rule that decided this tensor, or -1 for "unmatched: from the base". */
  rule: number;
  /** Output dtype of the weight itself. */
  dtype: string;
  /** Bytes of the weight itself. */
  bytes: number;
  /** FP8 output only: the scale tensor written right after the weight (`<name>_scale_inv`, F32). */
  scale?: { name: string; shape: number[]; bytes: number };
  /** The threshold applies: if every mixed parent is within `below` of the base, copy the base instead. */
  thresholdCandidate: boolean;
  /** Router-bias entries switched off/on by edits. */
  patches?: BiasPatch[];
  /** Set when an edit (mute) replaced the op. */
  edit?: 'mute';
}

/** One output shard: which tensors, in which order, at which offsets. */
export interface PlannedShard {
  file: string;
  /** The complete header bytes (8-byte length + JSON, padded). */
  header: Uint8Array;
  /** Tensors in write order; each entry is a weight or a scale, with its data offset from the data start. */
  entries: { name: string; tensor: number; part: 'weight' | 'scale'; begin: number; end: number }[];
  /** Header + data, the exact size of the file. */
  bytes: number;
}

export interface PlannedFile {
  name: string;
  bytes: number;
  what: 'shard' | 'index' | 'config' | 'copy' | 'card' | 'recipe';
}

/** Count of child tensors per kind and where they came from. */
export interface KindSummary {
  kind: TensorKind;
  tensors: number;
  /** parent → tensors copied (or converted) from it. */
  from: Record<string, number>;
  mixed: number;
  muted: number;
  patched: number;
}

export interface MergePlan {
  recipe: Recipe;
  /** Parent names in the recipe's order. */
  parentOrder: string[];
  base: string;
  parents: Map<string, Model>;
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
  /** A sentence or two saying what the child will contain. */
  description: string;
  /** Warnings that do not stop the merge (compatibility notes, unrelated parents, …). */
  warnings: string[];
  outputDtype: FloatDtype | 'keep';
  shardSize: number;
}
