// How each child tensor's bytes are made: copied, converted, mixed, zeroed or patched, chunk by
// chunk on the kernel pool, as tasks the merge writes in order. The threshold decides here too.
import { elementCount, isFloatDtype, type FloatDtype } from '../formats/dtype.ts';
import { MoeError } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import type { Encoded } from '../kernels/types.ts';
import type { Model, TensorRecord, Weight } from '../model/types.ts';
import type { MergePlan, PlannedTensor } from '../plan/types.ts';
import { figuresOf } from '../report/metrics.ts';
import { chunkSpans, type ChunkSpan } from './tensor-view.ts';
import { diffTensor, readChunk, readRecord, readScales, usesStripes } from './tensor-read.ts';

/** Bytes per read (and write) when a tensor is copied as it is. */
export const COPY_BLOCK = 16 * 1024 * 1024;

export interface ThresholdDecision {
  name: string;
  /** Largest rms_diff from the base over the mixed parents (Infinity when non-finite values differ). */
  rmsDiff: number;
  kept: boolean;
}

export type Task = () => Promise<Uint8Array[]>;

/** How one tensor's bytes are produced: weight tasks in write order, and its FP8 scale. */
export interface TensorJob {
  weight: Task[];
  /** `read`: a task written in sequence. `later`: fresh scales, known once every weight chunk is done. */
  scale?: { kind: 'read'; task: Task } | { kind: 'later'; bytes: Promise<Uint8Array> };
}

/** What every tensor job needs. */
export interface JobContext {
  plan: MergePlan;
  pool: KernelPool;
  chunkElements: number;
}

/** Decides a tensor's final op (the threshold may turn a mix into a copy of the base) and makes its tasks. */
/** How a tensor was finally made, for the merge report. */
export type Made = 'copied' | 'converted' | 'mixed' | 'muted' | 'patched';

export async function tensorJob(ctx: JobContext, t: PlannedTensor): Promise<{ job: TensorJob; made: Made; threshold?: ThresholdDecision }> {
  const { plan } = ctx;
  let op = t.op;
  let threshold: ThresholdDecision | undefined;
  if (op.type === 'mix' && t.thresholdCandidate) {
    const decision = await thresholdDecision(ctx, t);
    threshold = decision;
    if (decision.kept) {
      const same = t.dtype === inputOf(plan, t, plan.base).data.dtype;
      op = same ? { type: 'copy', parent: plan.base } : { type: 'convert', parent: plan.base };
    }
  }
  const made = (job: TensorJob, how: Made) => (threshold ? { job, made: how, threshold } : { job, made: how });
  if (t.patches) return made(await patchedJob(ctx, t, op), 'patched');
  switch (op.type) {
    case 'copy':
      return made(copyJob(plan, t, op.parent), 'copied');
    case 'convert':
      return made(convertJob(ctx, t, op.parent), 'converted');
    case 'mix':
      return made(mixJob(ctx, t, op.weights), 'mixed');
    case 'zero':
      return made(zeroJob(ctx, t), 'muted');
  }
}

/** A promise settled from outside; `promise` never counts as an unhandled rejection on its own. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Weight tasks that also collect each chunk's fresh FP8 scales into one scale tensor. */
function withFreshScales(count: number, make: (k: number) => Promise<Encoded>, check: (e: Encoded) => void = () => {}): TensorJob {
  const parts = Array.from({ length: count }, () => deferred<Float32Array>());
  const weight: Task[] = parts.map((part, k) => async () => {
    try {
      const e = await make(k);
      check(e);
      part.resolve(e.scales ?? new Float32Array(0));
      return [e.bytes];
    } catch (err) {
      part.reject(err);
      throw err;
    }
  });
  const bytes = Promise.all(parts.map((p) => p.promise)).then(concatScales);
  bytes.catch(() => {});
  return { weight, scale: { kind: 'later', bytes } };
}

function inputOf(plan: MergePlan, t: PlannedTensor, parent: string): Weight {
  return plan.parents.get(parent)!.byName.get(t.name)!;
}

function copyRecordTasks(model: Model, rec: TensorRecord): Task[] {
  const tasks: Task[] = [];
  for (let o = 0; o < rec.length; o += COPY_BLOCK) {
    const len = Math.min(COPY_BLOCK, rec.length - o);
    tasks.push(async () => [await readRecord(model, rec, o, len)]);
  }
  return tasks;
}

function copyJob(plan: MergePlan, t: PlannedTensor, parent: string): TensorJob {
  const model = plan.parents.get(parent)!;
  const w = model.byName.get(t.name)!;
  const weight = copyRecordTasks(model, w.data);
  if (!t.scale) return { weight };
  if (!w.scale) throw new MoeError(`F8_E4M3 weight in "${parent}" has no scale tensor to copy with it`, w.data.file, t.name);
  const scaleRec = w.scale;
  return { weight, scale: { kind: 'read', task: async () => [await readRecord(model, scaleRec, 0, scaleRec.length)] } };
}

function convertJob({ plan, pool, chunkElements }: JobContext, t: PlannedTensor, parent: string): TensorJob {
  const model = plan.parents.get(parent)!;
  const w = model.byName.get(t.name)!;
  const spans = chunkSpans(t.shape, usesStripes([w.data.dtype, t.dtype]), chunkElements);
  const scales = readScales(model, w);
  const out = t.dtype as FloatDtype;
  const weight = spans.map((span) => async () => {
    const chunk = await readChunk(model, w, span, await scales);
    const values = await pool.decode(chunk);
    const e = await pool.encode(values, span.rows, span.cols, out);
    return [e.bytes];
  });
  return { weight };
}

function mixJob({ plan, pool, chunkElements }: JobContext, t: PlannedTensor, weights: { parent: string; weight: number }[]): TensorJob {
  const inputs = weights.map(({ parent }) => {
    const model = plan.parents.get(parent)!;
    const w = model.byName.get(t.name)!;
    return { model, w, scales: readScales(model, w) };
  });
  const out = t.dtype as FloatDtype;
  const spans = chunkSpans(t.shape, usesStripes([...inputs.map((i) => i.w.data.dtype), out]), chunkElements);
  const mix = async (k: number) => {
    const span = spans[k]!;
    const chunks = await Promise.all(inputs.map(async (i) => readChunk(i.model, i.w, span, await i.scales)));
    return pool.mix({ rows: span.rows, cols: span.cols, inputs: chunks, weights: weights.map((x) => x.weight), out });
  };
  const check = (e: Encoded) => {
    if (e.nanCount > 0) {
      throw new MoeError(`mixing gives ${e.nanCount} NaN value(s), which F8_E4M3 cannot store (a parent holds NaN or ±inf here)`, undefined, t.name);
    }
  };
  if (t.scale) return withFreshScales(spans.length, mix, check);
  return {
    weight: spans.map((_, k) => async () => {
      const e = await mix(k);
      check(e);
      return [e.bytes];
    }),
  };
}

function zeroJob({ pool, chunkElements }: JobContext, t: PlannedTensor): TensorJob {
  const out = t.dtype;
  if (!isFloatDtype(out)) {
    const n = t.bytes;
    const weight: Task[] = [];
    for (let o = 0; o < n; o += COPY_BLOCK) weight.push(async () => [new Uint8Array(Math.min(COPY_BLOCK, n - o))]);
    return { weight };
  }
  // Through the kernels, so a muted FP8 expert gets exactly the scale an all-zero block is given.
  const spans = chunkSpans(t.shape, out === 'F8_E4M3', chunkElements);
  const zero = (k: number) => pool.encode(new Float32Array(spans[k]!.count), spans[k]!.rows, spans[k]!.cols, out);
  if (t.scale) return withFreshScales(spans.length, zero);
  return { weight: spans.map((_, k) => async () => [(await zero(k)).bytes]) };
}

/** Router bias with off/on edits: the tensor is small, so it is made whole, decoded, patched and re-encoded. */
async function patchedJob({ plan, pool }: JobContext, t: PlannedTensor, op: PlannedTensor['op']): Promise<TensorJob> {
  const out = t.dtype as FloatDtype;
  if (out === 'F8_E4M3') throw new MoeError('expert edits need a router bias stored as F32, BF16 or F16, not F8_E4M3', undefined, t.name);
  const n = elementCount(t.shape);
  const span: ChunkSpan = { start: 0, count: n, rows: 1, cols: n, row0: 0 };
  let values: Float32Array;
  if (op.type === 'mix') {
    const chunks = await Promise.all(op.weights.map(async ({ parent }) => {
      const model = plan.parents.get(parent)!;
      const w = model.byName.get(t.name)!;
      return readChunk(model, w, span, undefined);
    }));
    const mixed = await pool.mix({ rows: 1, cols: n, inputs: chunks, weights: op.weights.map((x) => x.weight), out: 'F32' });
    values = new Float32Array(mixed.bytes.buffer.slice(mixed.bytes.byteOffset, mixed.bytes.byteOffset + mixed.bytes.byteLength));
  } else if (op.type === 'zero') {
    values = new Float32Array(n);
  } else {
    const model = plan.parents.get(op.parent)!;
    values = await pool.decode(await readChunk(model, model.byName.get(t.name)!, span, undefined));
  }
  for (const p of t.patches!) {
    if (p.expert >= n) throw new MoeError(`router bias has ${n} entries; cannot edit expert ${p.expert}`, undefined, t.name);
    values[p.expert] = p.value;
  }
  const e = await pool.encode(values, 1, n, out);
  return { weight: [async () => [e.bytes]] };
}

function concatScales(parts: Float32Array[]): Uint8Array {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const all = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return new Uint8Array(all.buffer);
}

/**
 * The AoE threshold: rms_diff of every other parent with a non-zero weight against the base, over
 * the whole tensor (summed in chunk order, so the figure does not depend on the number of workers).
 * Kept (taken from the base) only when all are below `below` and no non-finite values were met.
 */
async function thresholdDecision({ plan, pool, chunkElements }: JobContext, t: PlannedTensor): Promise<ThresholdDecision> {
  const below = plan.recipe.threshold!.below;
  const op = t.op as Extract<PlannedTensor['op'], { type: 'mix' }>;
  const baseModel = plan.parents.get(plan.base)!;
  const baseW = baseModel.byName.get(t.name)!;
  const others = op.weights.filter((x) => x.weight !== 0 && x.parent !== plan.base);
  let worst = 0;
  for (const { parent } of others) {
    const model = plan.parents.get(parent)!;
    const w = model.byName.get(t.name)!;
    const stats = await diffTensor(baseModel, baseW, model, w, pool, chunkElements);
    const rms = stats.nonFinite > 0 ? Infinity : figuresOf(stats).rmsDiff;
    worst = Math.max(worst, rms);
    if (!(worst < below)) break;
  }
  return { name: t.name, rmsDiff: worst, kept: worst < below };
}
