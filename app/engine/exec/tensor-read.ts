// Reading a parent's tensor in chunks (FP8 with the block scales of exactly those rows), and the
// exact difference statistics of two parents' copies of a tensor, summed in chunk order.
import type { FloatDtype } from '../formats/dtype.ts';
import { MoeError, type ByteSource } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import { addStats, emptyStats, type Chunk, type DiffStats } from '../kernels/types.ts';
import type { Model, TensorRecord, Weight } from '../model/types.ts';
import { OrderedPipeline } from './ordered.ts';
import { CHUNK_ELEMENTS, chunkSpans, scaleRows, type ChunkSpan } from './tensor-view.ts';

function sourceOf(model: Model, rec: TensorRecord): ByteSource {
  const src = model.sources.get(rec.file);
  if (!src) throw new MoeError('shard is not open', rec.file, rec.name);
  return src;
}

export function readRecord(model: Model, rec: TensorRecord, offset: number, length: number): Promise<Uint8Array> {
  return sourceOf(model, rec).read(rec.offset + offset, length);
}

/** Reads the chunk of one parent's tensor covering `span`, with its block scales when FP8. */
export async function readChunk(model: Model, w: Weight, span: ChunkSpan, scales: Float32Array | undefined): Promise<Chunk> {
  const dtype = w.data.dtype as FloatDtype;
  const size = dtype === 'F32' ? 4 : dtype === 'F8_E4M3' ? 1 : 2;
  const bytes = await readRecord(model, w.data, span.start * size, span.count * size);
  const chunk: Chunk = { dtype, rows: span.rows, cols: span.cols, bytes };
  if (dtype === 'F8_E4M3') {
    const { first, count, perRow } = scaleRows(span, span.cols);
    chunk.scales = scales!.slice(first * perRow, (first + count) * perRow);
  }
  return chunk;
}

/**
 * A parent's whole block-scale tensor (small: one f32 per 128×128 block). Read eagerly, before any
 * task awaits it, so a failure is held for those tasks rather than reported as unhandled.
 */
export function readScales(model: Model, w: Weight): Promise<Float32Array | undefined> {
  if (w.data.dtype !== 'F8_E4M3') return Promise.resolve(undefined);
  const rec = w.scale!;
  const p = readRecord(model, rec, 0, rec.length).then(
    (bytes) => new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
  );
  p.catch(() => {});
  return p;
}

export function usesStripes(dtypes: string[]): boolean {
  return dtypes.includes('F8_E4M3');
}

/** Exact difference statistics of two parents' copies of one tensor. */
export async function diffTensor(aModel: Model, a: Weight, bModel: Model, b: Weight, pool: KernelPool, chunkElements = CHUNK_ELEMENTS): Promise<DiffStats> {
  const spans = chunkSpans(a.data.shape, usesStripes([a.data.dtype, b.data.dtype]), chunkElements);
  const window = pool.size * 2;
  const [sa, sb] = await Promise.all([readScales(aModel, a), readScales(bModel, b)]);
  let total = emptyStats();
  const pipeline = new OrderedPipeline<DiffStats>(Math.max(1, window), async (s) => {
    total = addStats(total, s);
  });
  try {
    for (const span of spans) {
      await pipeline.add(async () => {
        const [ca, cb] = await Promise.all([readChunk(aModel, a, span, sa), readChunk(bModel, b, span, sb)]);
        return pool.diff(ca, cb);
      });
    }
    await pipeline.drain();
  } catch (e) {
    await pipeline.settle();
    throw e;
  }
  return total;
}
