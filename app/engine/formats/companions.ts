// Stored tensors grouped into logical weights: a quantized weight is a data tensor and its
// companions, found by the names and dtypes each format writes. Everything here is about file
// formats, not families: it runs before any tensor is classified.
//
//   MXFP4 (gpt-oss)          X_blocks U8 [.., R, C/32, 16] + X_scales U8 [.., R, C/32]     → X [.., R, C]
//   INT4 (compressed-tensors) X.weight_packed I32 [R, C/8] + X.weight_scale [R, C/g]
//                            + X.weight_shape [2] (+ X.weight_zero_point: asymmetric)      → X.weight [R, C]
//   NVFP4 (compressed-tensors) X.weight_packed U8 [R, C/2] + X.weight_scale F8_E4M3 [R, C/16]
//                            + X.weight_global_scale (+ X.input_global_scale)              → X.weight [R, C]
//   NVFP4 (ModelOpt)          X.weight U8 [R, C/2] + X.weight_scale F8_E4M3 [R, C/16]
//                            + X.weight_scale_2 (+ X.input_scale)                           → X.weight [R, C]
//   FP8 (DeepSeek)            X F8_E4M3 [(E,) R, C] + X_scale_inv [(E,) ceil(R/b), ceil(C/b)] → X
//   FP8 (compressed-tensors)  X.weight F8_E4M3 + X.weight_scale (block, [R, 1] or []) (+ X.input_scale)
// A companion without its weight, or of the wrong shape or dtype, is an error naming it.
import { MoeError } from '../io.ts';
import type { Companion, CompanionRole, TensorRecord } from '../model/types.ts';
import { MX_BLOCK, WHOLE, type Codec, type ScaleDtype } from './codec.ts';
import { FP8_BLOCK } from './dtype.ts';

export interface GroupedWeight {
  name: string;
  codec: Codec;
  /** Logical shape of the values. */
  shape: number[];
  data: TensorRecord;
  companions: Companion[];
}

const SCALE_DTYPES = new Set(['F32', 'F16', 'BF16']);

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/**
 * The block a scale tensor's entries cover along one axis of `n` values split into `k` entries:
 * 128 where the count fits DeepSeek's blocks, 1 for one entry per value, the whole axis for one
 * entry; undefined when none of these gives `k`.
 */
function blockSize(n: number, k: number, preferBlocks: boolean): number | undefined {
  if (k === 1 && !preferBlocks) return WHOLE;
  if (k === Math.ceil(n / FP8_BLOCK)) return FP8_BLOCK;
  if (k === n) return 1;
  if (k === 1) return WHOLE;
  return undefined;
}

/**
 * FP8 block geometry from the data and scale shapes: per slab [r, c] blocks of a 2-D weight, a
 * fused [E, R, C] weight's [E, r, c] (or one scale per expert, [E] / [E, 1, 1]), one scale for
 * everything ([] / [1]), or per-channel [R, 1].
 */
function fp8Blocks(data: TensorRecord, scale: TensorRecord, preferBlocks: boolean): { blockRows: number; blockCols: number } | undefined {
  const d = data.shape;
  const rc = d.length >= 2 ? [d[d.length - 2]!, d[d.length - 1]!] : [1, d[0] ?? 1];
  const perSlab = d.length === 3 ? d[0]! : 1;
  const total = scale.shape.reduce((a, b) => a * b, 1);
  // A grid of scales ([r, c] per slab) is read as blocks first: DeepSeek's [1, 1] for a weight of
  // at most 128×128 is one 128×128 block, the same numbers as one scale for all.
  if (scale.shape.length >= 2) {
    const sr = scale.shape[scale.shape.length - 2]!;
    const sc = scale.shape[scale.shape.length - 1]!;
    if (total === perSlab * sr * sc) {
      const br = blockSize(rc[0]!, sr, preferBlocks);
      const bc = blockSize(rc[1]!, sc, preferBlocks);
      if (br !== undefined && bc !== undefined) return { blockRows: br, blockCols: bc };
    }
  }
  if (total === 1 || (perSlab > 1 && total === perSlab)) return { blockRows: WHOLE, blockCols: WHOLE };
  return undefined;
}

/** Groups stored tensors into weights. `records` by name; each record used exactly once. */
export function groupWeights(records: Map<string, TensorRecord>): GroupedWeight[] {
  const used = new Set<string>();
  const out: GroupedWeight[] = [];
  const take = (name: string) => {
    used.add(name);
    return records.get(name)!;
  };
  const comp = (role: CompanionRole, name: string): Companion | undefined => (records.has(name) ? { role, record: take(name) } : undefined);
  const need = (cond: boolean, rec: TensorRecord, what: string) => {
    if (!cond) throw new MoeError(what, rec.file, rec.name);
  };

  // MXFP4: X_blocks + X_scales.
  for (const [name, rec] of records) {
    if (!name.endsWith('_blocks') || rec.dtype !== 'U8') continue;
    const base = name.slice(0, -'_blocks'.length);
    const scales = records.get(`${base}_scales`);
    if (!scales) continue;
    const s = rec.shape;
    need(s.length >= 3 && s[s.length - 1] === MX_BLOCK / 2, rec, `MXFP4 blocks must be [.., rows, cols/32, 16], not ${shapeText(s)}`);
    need(scales.dtype === 'U8', scales, `MXFP4 scales must be U8 (E8M0), not ${scales.dtype}`);
    need(scales.shape.join(',') === s.slice(0, -1).join(','), scales, `MXFP4 scales ${shapeText(scales.shape)} do not fit blocks ${name} ${shapeText(s)} (expected ${shapeText(s.slice(0, -1))})`);
    take(name);
    take(`${base}_scales`);
    out.push({ name: base, codec: { kind: 'mxfp4' }, shape: [...s.slice(0, -2), s[s.length - 2]! * MX_BLOCK], data: rec, companions: [{ role: 'scale', record: scales }] });
  }

  // compressed-tensors packed formats: X.weight_packed (+ scale, shape / global scale).
  for (const [name, rec] of records) {
    if (used.has(name) || !name.endsWith('.weight_packed')) continue;
    const base = name.slice(0, -'_packed'.length); // X.weight
    const scale = records.get(`${base}_scale`);
    if (!scale) throw new MoeError(`packed weight without ${base}_scale`, rec.file, name);
    const rows = rec.shape[0] ?? 1;
    if (rec.dtype === 'I32') {
      need(rec.shape.length === 2, rec, `INT4 packed weight must be 2-D [rows, cols/8], not ${shapeText(rec.shape)}`);
      const cols = rec.shape[1]! * 8;
      need(SCALE_DTYPES.has(scale.dtype) && scale.shape.length === 2 && scale.shape[0] === rows && cols % scale.shape[1]! === 0, scale,
        `INT4 group scale ${scale.dtype} ${shapeText(scale.shape)} does not fit ${name} ${shapeText(rec.shape)} (expected [${rows}, cols/group] of F32, F16 or BF16)`);
      take(name);
      const companions: Companion[] = [{ role: 'scale', record: take(`${base}_scale`) }];
      const shapeC = comp('shape', `${base}_shape`);
      if (shapeC) companions.push(shapeC);
      const zp = comp('zero_point', `${base}_zero_point`);
      if (zp) companions.push(zp);
      const codec: Codec = zp
        ? { kind: 'plain', dtype: 'I32' } // asymmetric INT4: copied, never decoded
        : { kind: 'int4', scaleDtype: scale.dtype as ScaleDtype, group: cols / scale.shape[1]! };
      out.push({ name: base, codec, shape: [rows, cols], data: rec, companions });
    } else if (rec.dtype === 'U8') {
      take(name);
      const companions: Companion[] = [{ role: 'scale', record: take(`${base}_scale`) }];
      for (const [role, suffix] of [['global_scale', '_global_scale'], ['input_global_scale', '']] as const) {
        const c = comp(role, role === 'input_global_scale' ? base.replace(/\.weight$/, '.input_global_scale') : `${base}${suffix}`);
        if (c) companions.push(c);
      }
      out.push({ name: base, codec: { kind: 'nvfp4', flavor: 'compressed-tensors' }, shape: [rows, (rec.shape[1] ?? 0) * 2], data: rec, companions });
    } else {
      throw new MoeError(`packed weight of dtype ${rec.dtype}: only I32 (INT4) and U8 (NVFP4) are known`, rec.file, name);
    }
  }

  // ModelOpt NVFP4: X.weight U8 + X.weight_scale F8_E4M3 + X.weight_scale_2.
  for (const [name, rec] of records) {
    if (used.has(name) || rec.dtype !== 'U8' || !name.endsWith('.weight')) continue;
    const scale = records.get(`${name}_scale`);
    const scale2 = records.get(`${name}_scale_2`);
    if (!scale || !scale2 || scale.dtype !== 'F8_E4M3') continue;
    take(name);
    const companions: Companion[] = [{ role: 'scale', record: take(`${name}_scale`) }, { role: 'scale2', record: take(`${name}_scale_2`) }];
    const inp = comp('input_scale', name.replace(/\.weight$/, '.input_scale'));
    if (inp) companions.push(inp);
    out.push({ name, codec: { kind: 'nvfp4', flavor: 'modelopt' }, shape: [rec.shape[0] ?? 1, (rec.shape[1] ?? 0) * 2], data: rec, companions });
  }

  // FP8: X_scale_inv (DeepSeek) or X.weight_scale (compressed-tensors), and activation scales.
  for (const [name, rec] of records) {
    if (used.has(name) || rec.dtype !== 'F8_E4M3') continue;
    const scaleName = records.has(`${name}_scale_inv`) ? `${name}_scale_inv` : records.has(`${name}_scale`) ? `${name}_scale` : undefined;
    if (!scaleName) continue; // an unscaled FP8 weight: copied only (see openModel)
    const scale = records.get(scaleName)!;
    need(SCALE_DTYPES.has(scale.dtype), scale, `FP8 scale must be F32, F16 or BF16, not ${scale.dtype}`);
    // DeepSeek's `_scale_inv` is a grid of 128×128 blocks; compressed-tensors' `weight_scale` is
    // per channel or per tensor, where one entry spans a whole axis.
    const blocks = fp8Blocks(rec, scale, scaleName.endsWith('_scale_inv'));
    need(!!blocks, scale,
      `FP8 scale ${shapeText(scale.shape)} does not fit weight ${name} ${shapeText(rec.shape)} (expected 128×128 blocks [ceil(rows/128), ceil(cols/128)], per-channel [rows, 1] or one scale)`);
    take(name);
    const companions: Companion[] = [{ role: 'scale', record: take(scaleName) }];
    const inp = comp('input_scale', name.endsWith('.weight') ? name.replace(/\.weight$/, '.input_scale') : `${name}_input_scale`);
    if (inp) companions.push(inp);
    out.push({
      name,
      codec: { kind: 'fp8', scaleDtype: scale.dtype as ScaleDtype, ...blocks!, scaleRole: scaleName.endsWith('_scale_inv') ? 'scale_inv' : 'scale' },
      shape: rec.shape,
      data: rec,
      companions,
    });
  }

  // Everything else is a plain weight; a leftover companion name is only suspicious, not an error
  // (a model may have a tensor named `…_scale` of its own).
  for (const [name, rec] of records) {
    if (used.has(name)) continue;
    if (name.endsWith('_scale_inv') && records.has(name.slice(0, -'_scale_inv'.length))) {
      const w = records.get(name.slice(0, -'_scale_inv'.length))!;
      throw new MoeError(`is a block scale of ${w.name}, which is ${w.dtype}, not F8_E4M3`, rec.file, name);
    }
    if (name.endsWith('_scale_inv')) throw new MoeError(`is a block scale but its weight ${name.slice(0, -'_scale_inv'.length)} is not in the model`, rec.file, name);
    out.push({ name, codec: { kind: 'plain', dtype: rec.dtype }, shape: rec.shape, data: rec, companions: [] });
  }
  return out;
}
