// Colour scales for the heatmaps (d3-scale-chromatic). Differences: every metric is shown as a
// "difference" so that darker is always closer to the base (cosine is drawn as 1 - cosine).
// Routing statistics: a diverging scale around 0 for contrasts, a sequential one for rates.
import { interpolateRdBu, interpolateViridis, schemeTableau10 } from 'd3-scale-chromatic';
import type { DiffMetric } from '../shared/studio-api.ts';

export type Rgb = [number, number, number];

export const MISSING_RGB: Rgb = [27, 31, 39];
/**
 * Exactly zero difference: a neutral mid grey, off the scale (viridis has no grey, and its dark
 * end is purple, which the old dark grey was hard to tell from).
 */
export const IDENTICAL_RGB: Rgb = [128, 132, 140];
/** "Kept by the threshold" is a hatch drawn over the cell (GridCanvas), never a colour of the scale; this CSS draws its swatch. */
export const HATCH_CSS = 'repeating-linear-gradient(135deg, rgba(255,255,255,0.9) 0 1.5px, transparent 1.5px 4px), #444a57';

// The child map: one categorical colour per parent, the base a quiet slate, so that what comes
// from elsewhere stands out; a mix is the parents' colours blended by their weights.
export const BASE_RGB: Rgb = [70, 80, 100];
const PARENT_RGB: Rgb[] = schemeTableau10.filter((_, k) => k !== 9).map((c) => [1, 3, 5].map((o) => parseInt(c.slice(o, o + 2), 16)) as Rgb);
export const ZERO_RGB: Rgb = [0, 0, 0];
export const ASSEMBLED_RGB: Rgb = [255, 255, 255];

/** Each recipe parent's colour, in `parents` order: the base slate, the others Tableau10 in turn. */
export function parentColors(parents: readonly string[], base: string): Rgb[] {
  let k = 0;
  return parents.map((p) => (p === base ? BASE_RGB : PARENT_RGB[k++ % PARENT_RGB.length]!));
}

/** The colour of a mix: the parents' colours weighted by their (non-negative) weights. */
export function blend(colors: readonly Rgb[], weights: readonly number[]): Rgb {
  let sum = 0;
  const out: Rgb = [0, 0, 0];
  weights.forEach((w, k) => {
    if (!(w > 0)) return;
    sum += w;
    for (let c = 0; c < 3; c++) out[c] += w * colors[k]![c]!;
  });
  return sum > 0 ? (out.map((v) => Math.round(v / sum)) as Rgb) : [...MISSING_RGB];
}

const LUT_SIZE = 256;

/** An interpolator's colours at LUT_SIZE evenly spaced points, as rgb bytes. */
function lut(interpolate: (t: number) => string): Uint8Array {
  const out = new Uint8Array(LUT_SIZE * 3);
  for (let i = 0; i < LUT_SIZE; i++) {
    const c = interpolate(i / (LUT_SIZE - 1));
    const hex = /^#(..)(..)(..)/.exec(c);
    const rgb = /rgb\((\d+), ?(\d+), ?(\d+)\)/.exec(c);
    const parts = hex ? hex.slice(1).map((h) => parseInt(h, 16)) : rgb ? rgb.slice(1).map(Number) : [0, 0, 0];
    out.set(parts, i * 3);
  }
  return out;
}

const LUT = lut(interpolateViridis);
/** Blue (negative) to red (positive) through white: RdBu reversed. */
const DIVERGING_LUT = lut((t) => interpolateRdBu(1 - t));

export function gradientCss(): string {
  const stops: string[] = [];
  for (let i = 0; i <= 10; i++) stops.push(`${interpolateViridis(i / 10)} ${i * 10}%`);
  return `linear-gradient(to right, ${stops.join(', ')})`;
}

/** The value drawn for a figure: larger = further from the base. */
export function shown(metric: DiffMetric, v: number): number {
  if (metric === 'cosine') return Math.max(0, 1 - v);
  return v;
}

export interface Scale {
  metric: DiffMetric;
  /** Smallest and largest shown value on the (log) colour axis. */
  lo: number;
  hi: number;
  log: boolean;
  /** Fills rgb[0..2] for a raw figure. */
  rgb(v: number, out: Uint8ClampedArray | Uint8Array, at: number): void;
  /** 0..1 along the colour axis for a raw figure (NaN: no figure, -1: identical). */
  position(v: number): number;
  /** Raw figure at a position of the axis, for legend ticks. */
  valueAt(t: number): number;
}

/** A scale fitted to the figures present (1st percentile to max, log when they span > 1 decade). */
export function fitScale(metric: DiffMetric, values: Float32Array): Scale {
  // A typed array sorts numerically in native code: ~100,000 figures in a few milliseconds.
  const all = new Float64Array(values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    const s = shown(metric, v);
    if (s > 0) all[n++] = s;
  }
  const xs = all.subarray(0, n).sort();
  let lo = xs.length ? xs[Math.floor(xs.length * 0.01)]! : 1e-4;
  let hi = xs.length ? xs[xs.length - 1]! : 1;
  if (!(hi > lo)) {
    hi = lo * 10 || 1;
    lo = hi / 10;
  }
  const log = hi / lo > 10;
  const llo = Math.log(lo);
  const lhi = Math.log(hi);
  const position = (v: number): number => {
    if (!Number.isFinite(v)) return NaN;
    const s = shown(metric, v);
    if (s <= 0) return -1;
    const t = log ? (Math.log(s) - llo) / (lhi - llo) : (s - lo) / (hi - lo);
    return Math.min(1, Math.max(0, t));
  };
  return {
    metric,
    lo,
    hi,
    log,
    position,
    rgb(v, out, at) {
      const t = position(v);
      if (Number.isNaN(t)) {
        out[at] = MISSING_RGB[0];
        out[at + 1] = MISSING_RGB[1];
        out[at + 2] = MISSING_RGB[2];
      } else if (t < 0) {
        out[at] = IDENTICAL_RGB[0];
        out[at + 1] = IDENTICAL_RGB[1];
        out[at + 2] = IDENTICAL_RGB[2];
      } else {
        const k = Math.round(t * (LUT_SIZE - 1)) * 3;
        out[at] = LUT[k]!;
        out[at + 1] = LUT[k + 1]!;
        out[at + 2] = LUT[k + 2]!;
      }
    },
    valueAt(t) {
      const s = log ? Math.exp(llo + t * (lhi - llo)) : lo + t * (hi - lo);
      return metric === 'cosine' ? 1 - s : s;
    },
  };
}

export const METRIC_LABEL: Record<DiffMetric, string> = {
  rms_diff: 'RMS difference',
  rel_diff: 'Relative difference',
  cosine: 'Cosine similarity',
};

export const METRIC_HELP: Record<DiffMetric, string> = {
  rms_diff: 'rms_diff = ‖W_other − W_base‖_F / √n: the root mean square of the element differences (the threshold uses this).',
  rel_diff: 'rel_diff = ‖W_other − W_base‖_F / ‖W_base‖_F.',
  cosine: 'cosine = ⟨W_base, W_other⟩ / (‖W_base‖·‖W_other‖); drawn as 1 − cosine so darker is closer.',
};

/** A linear scale for routing figures: diverging and symmetric around 0, or sequential from 0. */
export interface LinearScale {
  lo: number;
  hi: number;
  diverging: boolean;
  rgb(v: number, out: Uint8ClampedArray | Uint8Array, at: number): void;
  gradient: string;
}

export function routingScale(values: Float64Array, diverging: boolean): LinearScale {
  let m = 0;
  for (const v of values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  if (!(m > 0)) m = 1;
  const lo = diverging ? -m : 0;
  const hi = m;
  const table = diverging ? DIVERGING_LUT : LUT;
  const stops: string[] = [];
  for (let i = 0; i <= 10; i++) stops.push(`${diverging ? interpolateRdBu(1 - i / 10) : interpolateViridis(i / 10)} ${i * 10}%`);
  return {
    lo,
    hi,
    diverging,
    gradient: `linear-gradient(to right, ${stops.join(', ')})`,
    rgb(v, out, at) {
      if (!Number.isFinite(v)) {
        out[at] = MISSING_RGB[0];
        out[at + 1] = MISSING_RGB[1];
        out[at + 2] = MISSING_RGB[2];
        return;
      }
      const t = Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
      const k = Math.round(t * (LUT_SIZE - 1)) * 3;
      out[at] = table[k]!;
      out[at + 1] = table[k + 1]!;
      out[at + 2] = table[k + 2]!;
    },
  };
}
