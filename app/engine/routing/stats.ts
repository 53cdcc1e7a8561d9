// Statistics of routing counts, per MoE layer and routed expert (formulas in the README, "Routing
// statistics"): a set's selection rates; a behaviour set A against a baseline set B as the risk
// difference (SteerMoE's statistic) and the log-odds ratio with a 95% interval; rankings.
import type { RoutingFile, RoutingSet } from './format.ts';

/** The 0.975 quantile of the standard normal: a two-sided 95% interval. */
export const Z95 = 1.959963984540054;

/** One expert of one layer in one set. */
export interface ExpertRate {
  layer: number;
  expert: number;
  /** Tokens routed at the layer. */
  tokens: number;
  /** Tokens that had the expert among their top-k. */
  selected: number;
  /** selected / tokens (0 when the layer saw no tokens). */
  rate: number;
  /** selected / (tokens · top_k): the expert's share of the layer's routing slots. */
  share: number;
  /** Mean routing weight when selected: gate_weight / selected (where the file has gate weights). */
  meanGate?: number;
  /** REAP's saliency as the file states it. */
  saliency?: number;
}

/** Every expert of every layer of a set, layer by layer, experts in order. */
export function setRates(file: RoutingFile, set: RoutingSet): ExpertRate[] {
  const out: ExpertRate[] = [];
  file.model.layers.forEach((layer, i) => {
    const tokens = set.tokens[i]!;
    set.selected[i]!.forEach((selected, expert) => {
      const r: ExpertRate = {
        layer,
        expert,
        tokens,
        selected,
        rate: tokens > 0 ? selected / tokens : 0,
        share: tokens > 0 ? selected / (tokens * file.model.top_k) : 0,
      };
      const g = set.gate_weight?.[i]?.[expert];
      if (g !== undefined && selected > 0) r.meanGate = g / selected;
      const s = set.saliency?.[i]?.[expert];
      if (s !== undefined) r.saliency = s;
      out.push(r);
    });
  });
  return out;
}

/** An expert in A against the same expert in B. */
export interface ExpertContrast {
  layer: number;
  expert: number;
  a: { selected: number; tokens: number; rate: number };
  b: { selected: number; tokens: number; rate: number };
  /** Risk difference: rate in A − rate in B. */
  rd: number;
  /** Log-odds ratio of selection in A against B, with ½ added to each of the four counts. */
  logOdds: number;
  /** Its 95% interval: logOdds ∓ Z95 · standard error. */
  low: number;
  high: number;
}

/**
 * A against B for every expert of every layer. Both sets must describe the same layers and experts
 * (check the files with `routingMismatches` first).
 */
export function contrastSets(a: { file: RoutingFile; set: RoutingSet }, b: { file: RoutingFile; set: RoutingSet }): ExpertContrast[] {
  const ra = setRates(a.file, a.set);
  const rb = setRates(b.file, b.set);
  if (ra.length !== rb.length) throw new Error('internal: contrasting sets of different shapes');
  return ra.map((x, k) => {
    const y = rb[k]!;
    const { logOdds, low, high } = logOddsRatio(x.selected, x.tokens, y.selected, y.tokens);
    return {
      layer: x.layer,
      expert: x.expert,
      a: { selected: x.selected, tokens: x.tokens, rate: x.rate },
      b: { selected: y.selected, tokens: y.tokens, rate: y.rate },
      rd: x.rate - y.rate,
      logOdds,
      low,
      high,
    };
  });
}

/**
 * The log-odds ratio of k1 of n1 against k2 of n2 with the Haldane–Anscombe correction (½ added to
 * each cell, so zero counts stay finite), and its Wald 95% interval.
 */
export function logOddsRatio(k1: number, n1: number, k2: number, n2: number): { logOdds: number; low: number; high: number } {
  const a = k1 + 0.5;
  const b = n1 - k1 + 0.5;
  const c = k2 + 0.5;
  const d = n2 - k2 + 0.5;
  const logOdds = Math.log((a * d) / (b * c));
  const se = Math.sqrt(1 / a + 1 / b + 1 / c + 1 / d);
  return { logOdds, low: logOdds - Z95 * se, high: logOdds + Z95 * se };
}

export const CONTRAST_METRICS = ['rd', 'log-odds'] as const;
export type ContrastMetric = (typeof CONTRAST_METRICS)[number];
export const RATE_METRICS = ['rate', 'saliency', 'gate'] as const;
export type RateMetric = (typeof RATE_METRICS)[number];

/**
 * What a contrast is ranked by: the risk difference, or for the log-odds the lower end of its
 * interval, so that an expert with a handful of hits (a wide interval) does not top the list.
 */
export function contrastScore(c: ExpertContrast, metric: ContrastMetric): number {
  return metric === 'rd' ? c.rd : c.low;
}

/** What a single set is ranked by; NaN where the file lacks the figure. */
export function rateScore(r: ExpertRate, metric: RateMetric): number {
  return metric === 'rate' ? r.rate : metric === 'saliency' ? (r.saliency ?? NaN) : (r.meanGate ?? NaN);
}

/**
 * Largest score first; ties by layer, then expert; entries without a score (NaN) last. A new
 * array; `keep` filters first (a layer set, say).
 */
export function rankBy<T extends { layer: number; expert: number }>(items: readonly T[], score: (x: T) => number, keep: (x: T) => boolean = () => true): T[] {
  const scored = items.filter(keep).map((x) => ({ x, s: score(x) }));
  scored.sort((p, q) => {
    const pn = Number.isNaN(p.s);
    const qn = Number.isNaN(q.s);
    if (pn !== qn) return pn ? 1 : -1;
    if (!pn && p.s !== q.s) return q.s - p.s;
    return p.x.layer - q.x.layer || p.x.expert - q.x.expert;
  });
  return scored.map((p) => p.x);
}
