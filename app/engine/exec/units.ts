// Work as data: every byte a merge writes (and every difference it measures) is made by a unit,
// a plain description of which file ranges to read, what to compute and where to write. Units
// are made by the coordinator (compile.ts) and run anywhere: in a worker that reads and writes the
// files itself, or in-process. Nothing in a unit refers to an object that cannot be posted to a
// worker; files are indices into the run's file table.
import type { Codec } from '../formats/codec.ts';
import type { DiffStats } from '../kernels/types.ts';
import type { Place } from '../model/regions.ts';

export type { Place };

/**
 * Bytes of a file of the run's table. `bytes`, when present, are those bytes already read by the
 * coordinator (a runner that cannot reach the file itself, or a sample of coalesced reads).
 */
export interface Span {
  file: number;
  offset: number;
  length: number;
  bytes?: Uint8Array;
}

/** Whole rows of one slab of a stored weight: its data and, for quantized codecs, its scale entries. */
export interface Band {
  codec: Codec;
  rows: number;
  cols: number;
  data: Span;
  scales?: Span;
}


/**
 * How part of a stripe is made. The stripe's values (slabs × rows × cols, flattened) start at +0;
 * `mix`, `convert` and `fill` set values, which are then encoded in the output codec; `move` and `rows` put
 * stored bytes in place afterwards, untouched by any arithmetic.
 */
export type Piece =
  /** values[dst] = values[dst] + f32(w) · decode(band)[src], input by input in order. */
  | { kind: 'mix'; nO: number; nI: number; dst: Place; inputs: { band: number; src: Place; weight: number }[] }
  /** values[dst] = value: a muted expert's zeros, a switched bias entry. */
  | { kind: 'fill'; nO: number; nI: number; dst: Place; value: number }
  /** values[dst] = decode(band)[src]: one parent's values in another codec, exactly (−0 and all). */
  | { kind: 'convert'; nO: number; nI: number; dst: Place; band: number; src: Place }
  /** Plain codecs: element bytes moved as they are (any strides: halves, interleaved, transposed). */
  | { kind: 'move'; nO: number; nI: number; dst: Place; band: number; src: Place }
  /**
   * Quantized codecs: stored rows moved with their scale entries: `rows` rows from band row
   * `srcRow` (every `srcStep`-th) to row `dstRow` of stripe slab `slab` (every `dstStep`-th).
   * Steps other than 1 only where the codec scales each row alone; rows start scale blocks.
   */
  | { kind: 'rows'; band: number; slab: number; rows: number; srcRow: number; srcStep: number; dstRow: number; dstStep: number };

/** One child's version of a stripe: how its values are made, and where they are written. */
export interface StripeOutput {
  /** The child tensor, for messages. */
  tensor: string;
  out: Codec;
  pieces: Piece[];
  data: Span;
  scales?: Span;
}

/**
 * Values of `slabs` consecutive slabs of a child weight (or `rows` rows of one slab), made from
 * bands of the parents and written, encoded, at `data` (and `scales`): consecutive slabs and
 * consecutive rows are contiguous in both. `more`: other children's versions of the same stripe,
 * made from the same bands (a sweep reads the parents once for all its children).
 */
export interface StripeUnit extends StripeOutput {
  kind: 'stripe';
  slabs: number;
  rows: number;
  cols: number;
  bands: Band[];
  more?: StripeOutput[];
}

/** Bytes copied as they are: each part's source range to its destination (same length). */
export interface CopyUnit {
  kind: 'copy';
  tensor: string;
  parts: { from: Span; to: Span }[];
}

/** Bytes the coordinator made (a shard's header), written at `to`. */
export interface BytesUnit {
  kind: 'bytes';
  tensor: string;
  to: Span;
  bytes: Uint8Array;
}

/** Difference statistics of region b against region a (both nO × nI values). */
export interface DiffUnit {
  kind: 'diff';
  tensor: string;
  bands: Band[];
  nO: number;
  nI: number;
  a: { band: number; src: Place };
  b: { band: number; src: Place };
}

export type Unit = StripeUnit | CopyUnit | BytesUnit | DiffUnit;

/** A range a unit wrote, with the XXH3-64 of its bytes; `bytes` when the runner could not write the file itself. */
export interface Written {
  file: number;
  offset: number;
  length: number;
  hash: bigint;
  bytes?: Uint8Array;
}

export interface UnitResult {
  written: Written[];
  /** Values the output codec could not hold (NaN; ±inf for MXFP4 and INT4). */
  bad: number;
  stats?: DiffStats;
  /** Where the runner's time on the unit went. */
  time?: RunnerTime;
  /**
   * Bytes of WASM memory the runner holds after the unit: its working memory, grown to hold the
   * units it has run (a stripe's inputs, outputs and scratch, a copy's block) and kept for the next
   * (WASM memory never shrinks).
   */
  memory?: number;
}

/**
 * A runner's time on units, in milliseconds: waiting for their inputs to land in wasm memory, the
 * kernels and the code around them, hashing what they wrote (the journal's checksums), writing it
 * (or handing it back to the coordinator). Reads in the browser overlap the unit before; what is
 * counted is the wait that is left.
 */
export interface RunnerTime {
  read: number;
  compute: number;
  hash: number;
  write: number;
}

export const noRunnerTime = (): RunnerTime => ({ read: 0, compute: 0, hash: 0, write: 0 });

/** Adds `b` into `a`. */
function addRunnerTime(a: RunnerTime, b: RunnerTime): void {
  a.read += b.read;
  a.compute += b.compute;
  a.hash += b.hash;
  a.write += b.write;
}

/** What a run's units took of their runners: time summed over runners, and the most WASM memory one held. */
export interface RunnerUse {
  time: RunnerTime;
  memory: number;
}

export const noRunnerUse = (): RunnerUse => ({ time: noRunnerTime(), memory: 0 });

/** Adds a unit's result into `use`. */
export function addRunnerUse(use: RunnerUse, r: UnitResult): void {
  if (r.time) addRunnerTime(use.time, r.time);
  if (r.memory !== undefined && r.memory > use.memory) use.memory = r.memory;
}

/** Bytes of input a unit reads: what its in-flight memory is sized by. */
export function unitInputBytes(u: Unit): number {
  switch (u.kind) {
    case 'stripe':
    case 'diff':
      return u.bands.reduce((n, b) => n + b.data.length + (b.scales?.length ?? 0), 0);
    case 'copy':
      return u.parts.reduce((n, p) => n + p.from.length, 0);
    case 'bytes':
      return u.bytes.length;
  }
}

/** Bytes a unit writes. */
export function unitOutputBytes(u: Unit): number {
  switch (u.kind) {
    case 'stripe':
      return [u, ...(u.more ?? [])].reduce((n, o) => n + o.data.length + (o.scales?.length ?? 0), 0);
    case 'copy':
      return u.parts.reduce((n, p) => n + p.to.length, 0);
    case 'bytes':
      return u.bytes.length;
    case 'diff':
      return 0;
  }
}
