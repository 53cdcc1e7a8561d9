// The one API the studio UI uses. Implemented by the coordinator worker
// (app/studio/worker/studio-worker.ts) and reached through one Comlink bridge
// (app/studio/client/bridge.ts). Everything that crosses it is plain, structured-cloneable data:
// no Model objects, no functions except Comlink.proxy callbacks.
import type { Recipe } from '../../engine/recipe/schema.ts';
import type { KindSummary, Made } from '../../engine/plan/types.ts';
import type { RouterBias } from '../../engine/arch/types.ts';
import type { TensorKind } from '../../engine/model/types.ts';
import type { EditExactness } from '../../engine/model/inspect.ts';
import type { InterruptedMerge, KeptWork, MergeProgress } from '../../engine/exec/merge.ts';
import { METRICS, type Metric } from '../../engine/report/metrics.ts';

export type { Recipe, KindSummary, RouterBias, EditExactness };
export type ParentId = string;

/** Where a parent's files come from: a directory handle (re-openable after reload) or loose files. */
export type ParentSource =
  | { kind: 'handle'; handle: FileSystemDirectoryHandleLike }
  | { kind: 'files'; files: FileLike[]; name: string }
  /** A Hub repository, hf://ORG/NAME[@REV]; the token (if any) lives only in the page's memory. */
  | { kind: 'hub'; ref: string; token?: string };

/**
 * Opaque stand-ins for FileSystemDirectoryHandle and File, so this project needs neither the DOM
 * nor the WebWorker lib. Both are structured-cloneable and arrive in the worker as the real thing.
 */
export interface FileSystemDirectoryHandleLike {
  readonly kind: 'directory';
  readonly name: string;
}
export interface FileLike {
  readonly name: string;
  readonly size: number;
  readonly webkitRelativePath: string;
}

export interface DtypeCount {
  dtype: string;
  tensors: number;
  bytes: number;
}

/** What the parents panel shows about one opened model. */
export interface ParentSummary {
  folderName: string;
  /** Architecture family ("deepseek_v3", "mixtral", …). */
  arch: string;
  modelType: string;
  layers: number;
  moeLayers: number[];
  denseLayers: number[];
  experts: number;
  expertsPerToken?: number;
  sharedExperts: number;
  hiddenSize?: number;
  dtypes: DtypeCount[];
  /** Tensor bytes on disk, FP8 scales included. */
  sizeOnDisk: number;
  /** Weights (FP8 scale tensors ride with their weight and are not counted). */
  tensorCount: number;
  /** The tensor kinds the model has (presets write rules for these only). */
  kinds: TensorKind[];
  shardCount: number;
  /** What the router's bias is: it decides which expert edits are exact. */
  routerBias: RouterBias;
  /** Group-limited routing (DeepSeek's n_group / topk_group), where the config says. */
  groups?: number;
  topkGroups?: number;
  /** What off / on / mute / remove mean for this router (the same verdicts `inspect` prints). */
  edits: EditExactness[];
  /** How routed experts are stored, and each fused tensor's layout. */
  expertLayout: 'per-expert' | 'fused' | 'mixed';
  fusedLayouts: string[];
  /** Weights per storage format ("BF16", "FP8 E4M3, 128×128 blocks (F32)", "MXFP4 …"). */
  formats: { format: string; weights: number; bytes: number }[];
  otherFiles: string[];
  /** The engine's own plain-text summary (formatSummary). */
  text: string;
}

export interface ParentInfo {
  id: ParentId;
  summary: ParentSummary;
}

/**
 * Every weight of one parent, column by column (compact for ~90,000 tensors).
 * `kind` indexes TENSOR_KINDS, `proj` indexes PROJECTIONS; -1 where a role has no such part.
 */
export interface TensorIndex {
  parent: ParentId;
  names: string[];
  kind: Uint8Array;
  layer: Int16Array;
  expert: Int32Array;
  proj: Int8Array;
  /** Elements per weight. */
  elements: Float64Array;
  /** Shape as written ("7168×2048"; an expert region's [out, in]). */
  shapes: string[];
  /** Storage format: an index into `formats` ("BF16", "FP8 E4M3, 128×128 blocks (F32)", …). */
  format: Uint8Array;
  formats: string[];
  /** Multi-token-prediction layers (DeepSeek's layer 61): labelled as such in the heatmaps. */
  mtpLayers: number[];
}

export type Severity = 'error' | 'warning' | 'info';
export interface CompatProblem {
  severity: Severity;
  parent: string;
  tensor?: string;
  message: string;
}
export interface CompatReport {
  ok: boolean;
  problems: CompatProblem[];
}

export type DiffMode = 'sampled' | 'exact';
export type DiffMetric = Metric;
export const DIFF_METRICS: readonly DiffMetric[] = METRICS;

/** Figures for some tensors of `other` against the base, by index into the base's TensorIndex. */
export interface DiffBatch {
  other: ParentId;
  index: Int32Array;
  rms: Float32Array;
  rel: Float32Array;
  cos: Float32Array;
  /** 1 where the figure is a sampled estimate. */
  sampled: Uint8Array;
}
export type DiffEvent =
  | { type: 'batch'; batch: DiffBatch }
  | { type: 'progress'; done: number; total: number; elapsedMs: number };
export interface DiffResult {
  tensors: number;
  elapsedMs: number;
  cancelled: boolean;
  /** Tensors of the base with no counterpart in the other parent, or of another shape. */
  skipped: number;
}

export interface PlanFile {
  name: string;
  bytes: number;
  what: 'shard' | 'index' | 'config' | 'copy' | 'card' | 'recipe';
}
export interface PlanSummary {
  files: PlanFile[];
  totalBytes: number;
  /** One sentence: what the child will contain. */
  description: string;
  /** Per tensor kind: how many tensors, from which parent, mixed, muted, bias-patched. */
  byKind: KindSummary[];
  tensors: number;
  /** Child tensors by how they are made. */
  made: Record<Made, number>;
  /** Tensors and expert regions each rule decides (first match wins), in rule order. */
  ruleCounts: number[];
  /** Routed experts per MoE layer in the child, and the expert changes in words (empty when none). */
  experts: number;
  expertChanges: string;
  /** The child slots that are not the base's own expert at its own index, grouped by layers. */
  expertRows: { layers: number[]; child: number; from: string }[];
  warnings: string[];
  /** Recipe parent names in recipe order; bit i of a candidate mask is parents[i]. */
  parents: string[];
  base: string;
  /**
   * Mixed tensors, which a threshold may keep from the base: index into the base's TensorIndex,
   * and the parents (bitmask over `parents`, base excluded) whose weight for it is non-zero.
   */
  candidates: { index: Int32Array; mask: Uint32Array };
  childMap: ChildMap;
}

/** Child-map codes beyond the parents' (0..7: copied, or converted, from `parents[k]`). */
export const CHILD = { mixed: 250, zero: 251, value: 252, assembled: 253, removed: 254, none: 255 } as const;

/**
 * How the plan makes each item of the base (a heatmap cell), indexed like the base's TensorIndex:
 * the heatmaps' "child" colouring and the cell inspector read it.
 */
export interface ChildMap {
  /** A parent's position in `parents` (copied from it), or a CHILD code. */
  how: Uint8Array;
  /** Mixed items: index into `mixes`, each the weights in `parents` order. */
  mix: Uint16Array;
  mixes: number[][];
  /** The rule that decides the item (the first that matches), −1 when none does (from the base). */
  rule: Int16Array;
  /** Routed experts of the base that are not kept in their slot: removed, or replaced by another expert. */
  slots: { layer: number; expert: number; how: 'removed' | 'transplanted'; text: string }[];
  /** Experts appended to a layer, in words (they have no cell in the base's grid). */
  added: { layer: number; text: string }[];
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

/** Which opened parent each recipe parent name stands for. */
export type Bindings = Record<string, ParentId>;

export type OutputTarget =
  | { kind: 'handle'; handle: FileSystemDirectoryHandleLike }
  | { kind: 'opfs'; folder: string };

export interface OutputCheck {
  ok: boolean;
  name: string;
  /** Why the folder cannot be used (a parent's folder, not writable, …). */
  problems: string[];
  /** Files already in the folder that the merge would replace. */
  existing: string[];
  freeBytes?: number;
  canRename: boolean;
  /** An interrupted merge in the folder: whether this recipe can resume it, and if not why. */
  interrupted?: InterruptedMerge;
}

export type { InterruptedMerge, KeptWork };

/** Progress of a merge, as the engine reports it. */
export type { MergeProgress };

export interface MergeResult {
  cancelled: boolean;
  /** A stopped merge's completed shards, kept for resume. */
  kept?: KeptWork;
  /** Shards this merge kept from an interrupted one instead of writing them again. */
  resumedShards: number;
  /** What the engine had to say along the way (a stale lock replaced, shards written again, …). */
  notices: string[];
  elapsedMs: number;
  bytesWritten: number;
  files: PlanFile[];
  folder: string;
  /** The engine's report, as plain data. */
  report: unknown;
  /** Where the kernel workers' time went (reading, computing, writing, checksums) and the most memory one held, in words. */
  runners?: string;
  warnings: string[];
}

export interface StudioStatus {
  crossOriginIsolated: boolean;
  kernelWorkers: number;
  /** "ready", or why the WASM kernels could not be loaded. */
  kernels: string;
  hardwareConcurrency: number;
}

export interface StudioApi {
  /** Starts the kernel pool (compiles the WASM once) and tells what the worker has. */
  status(): Promise<StudioStatus>;
  openParent(source: ParentSource): Promise<Result<ParentInfo>>;
  removeParent(id: ParentId): Promise<void>;
  tensorIndex(id: ParentId): Promise<TensorIndex>;
  compatibility(parents: { id: ParentId; name: string }[], baseName: string): Promise<CompatReport>;
  /** Streams figures of `other` against `base` through `listen` (batched); resolves when done or cancelled. */
  diff(job: string, base: ParentId, other: ParentId, mode: DiffMode, listen: (e: DiffEvent) => void): Promise<DiffResult>;
  /** Cancels a running diff or merge job. */
  cancel(job: string): Promise<void>;
  parseRecipe(text: string, fileName?: string): Promise<Result<Recipe>>;
  /** A recipe file, or a mergekit config mapped onto a recipe; `notes` say what was read differently or left out. */
  importRecipe(text: string, fileName: string): Promise<Result<{ recipe: Recipe; notes: string[] }>>;
  recipeToYaml(recipe: Recipe): Promise<string>;
  plan(recipe: Recipe, bindings: Bindings): Promise<Result<PlanSummary>>;
  /** Can the recipe's child be written there? `recipe` lets it tell whether an interrupted merge there can be resumed. */
  checkOutput(target: OutputTarget, bindings: Bindings, recipe?: Recipe): Promise<OutputCheck>;
  merge(
    job: string,
    recipe: Recipe,
    bindings: Bindings,
    target: OutputTarget,
    options: { overwrite: boolean; resume: boolean },
    listen: (p: MergeProgress) => void,
  ): Promise<Result<MergeResult>>;
  /**
   * A sweep: one child per recipe, each in a subfolder of `target` named after it, reading the
   * parents once for all of them; one result per child.
   */
  sweep(
    job: string,
    children: { name: string; recipe: Recipe }[],
    bindings: Bindings,
    target: OutputTarget,
    options: { overwrite: boolean },
    listen: (p: MergeProgress) => void,
  ): Promise<Result<MergeResult[]>>;
  /**
   * At start-up: in every folder of browser storage an interrupted merge left (the page closed or
   * reloaded mid-merge), removes what no resume can use and the stale lock, keeping completed
   * shards for Resume. One entry per such folder.
   */
  tidyBrowserStorage(): Promise<{ folder: string; removed: number; resumable: number }[]>;
  /** The parent's identity (its shard files and tensor headers), which keys the figures kept across reloads. */
  fingerprint(id: ParentId): Promise<string>;
  /** Removes an interrupted merge's temporary files and journal from a folder. */
  discardInterrupted(target: OutputTarget): Promise<Result<number>>;
  /**
   * Test hook, as `window.__moeStudio` is: hold the next merge at a pause point (see the engine's
   * PausePoint) until `releaseTestPause`, or until it is cancelled. `testPaused` says whether one waits.
   */
  setTestPause(point: string | null): Promise<void>;
  testPaused(): Promise<boolean>;
  releaseTestPause(): Promise<void>;
}
