// The items of a model, as diffs, heatmaps and threshold reports see it: every tensor, except
// that a fused expert tensor is one item per expert and projection. Items are matched between
// models by (layer, expert, projection) for experts, by name for everything else.
import { regionDims, wholeRegion } from './regions.ts';
import type { Model, Projection, Region, TensorRole, Weight } from './types.ts';

export interface ModelItem {
  /** The tensor's name, or for a region of a fused tensor "NAME[expert].proj" ("…_bias" for a bias). */
  name: string;
  role: TensorRole;
  /** The values' shape: the tensor's, or the region's [out, in] ([out] for a bias). */
  shape: number[];
  weight: Weight;
  slab: number;
  region: Region;
}

/** An expert region's item name inside a fused tensor. */
export function itemName(weight: string, slab: number, proj: Projection | undefined, bias: boolean): string {
  return `${weight}[${slab}]${proj ? `.${proj}${bias ? '_bias' : ''}` : ''}`;
}

/**
 * A weight as one item: anything but a fused expert tensor is compared (and thresholded) whole; a
 * weight of several slabs (a router's rows, a bias's entries) as one matrix of all its rows.
 */
export function wholeOf(w: Weight): { weight: Weight; slab: number; region: Region } {
  const flat: Weight = w.view.slabs <= 1 ? w : { ...w, view: { slabs: 1, rows: w.view.slabs * w.view.rows, cols: w.view.cols } };
  return { weight: flat, slab: 0, region: wholeRegion(flat.view.rows, flat.view.cols) };
}

/** Every item of a model, in its weights' file order. */
export function itemsOf(model: Model): ModelItem[] {
  const out: ModelItem[] = [];
  for (const w of model.weights) {
    const r = w.role;
    if (r.kind === 'routed_expert' && w.experts?.kind === 'slabs') {
      const bias = !!w.fused?.bias;
      for (let e = 0; e < w.view.slabs; e++) {
        for (const p of w.experts.parts) {
          const dims = regionDims(p.region);
          const role: TensorRole = { kind: 'routed_expert', layer: r.layer!, expert: e, proj: p.proj! };
          if (bias) role.bias = true;
          out.push({ name: itemName(w.name, e, p.proj, bias), role, shape: bias ? [dims.out] : [dims.out, dims.in], weight: w, slab: e, region: p.region });
        }
      }
      continue;
    }
    if (r.kind === 'routed_expert' && w.experts?.kind === 'single' && w.experts.proj && r.layer !== undefined) {
      const part = model.experts.get(r.layer)?.parts[w.experts.expert]?.find((q) => q.weight === w);
      if (part) {
        out.push({ name: w.name, role: r, shape: w.shape, weight: w, slab: 0, region: part.region });
        continue;
      }
    }
    out.push({ name: w.name, role: r, shape: w.shape, ...wholeOf(w) });
  }
  return out;
}

/** The counterpart of an item in another model: the same expert region, or the same-named tensor. */
export function counterpart(other: Model, item: ModelItem, byName: Map<string, ModelItem>): ModelItem | undefined {
  const r = item.role;
  if (r.kind === 'routed_expert' && r.layer !== undefined && r.expert !== undefined && r.proj !== undefined) {
    const part = other.experts.get(r.layer)?.parts[r.expert]?.find((q) => q.proj === r.proj && q.bias === !!r.bias);
    if (!part) return undefined;
    const dims = regionDims(part.region);
    return { name: part.weight.name, role: r, shape: part.bias ? [dims.out] : [dims.out, dims.in], weight: part.weight, slab: part.slab, region: part.region };
  }
  return byName.get(item.name);
}
