// The Routing view's state: loaded statistics files (moe-studio.routing/1), the sets compared, the
// statistic, the ranking's filter and the selected cells. The figures themselves are derived (see
// routingView) with the engine's own statistics, as the CLI computes them.
import { create } from 'zustand';
import { MoeError } from '../../engine/io.ts';
import { parseRoutingFile, routingMismatches, type RoutingFile, type RoutingTarget } from '../../engine/routing/format.ts';
import { contrastScore, contrastSets, rankBy, rateScore, setRates, type ContrastMetric, type ExpertContrast, type ExpertRate, type RateMetric } from '../../engine/routing/stats.ts';
import { indexSet } from '../../engine/recipe/select.ts';
import { INDEX_SET_TEXT } from '../../engine/recipe/schema.ts';

export interface LoadedStats {
  name: string;
  file: RoutingFile;
}

export interface RoutingState {
  /** Which view the center shows. */
  view: 'differences' | 'routing';
  files: LoadedStats[];
  /** "file name#set name" of the behaviour set, and of the baseline (null: one set's rates). */
  a: string | null;
  b: string | null;
  contrastMetric: ContrastMetric;
  rateMetric: RateMetric;
  top: number;
  layersText: string;
  /** Selected cells as "layer:expert". */
  selected: string[];
}

export const useRouting = create<RoutingState>(() => ({
  view: 'differences',
  files: [],
  a: null,
  b: null,
  contrastMetric: 'rd',
  rateMetric: 'rate',
  top: 10,
  layersText: '',
  selected: [],
}));

export const setKey = (file: string, set: string) => `${file}#${set}`;

/** Reads statistics files; each must describe the base model. Returns the errors, one per refused file. */
export async function loadStatsFiles(files: File[], target: RoutingTarget | undefined, targetName: string): Promise<string[]> {
  const errors: string[] = [];
  const loaded: LoadedStats[] = [];
  for (const f of files) {
    try {
      const file = parseRoutingFile(await f.text(), f.name);
      if (target) {
        const bad = routingMismatches(file, target);
        if (bad.length > 0) throw new MoeError(`does not describe the base ${targetName}: ${bad.join('; ')}`, f.name);
      }
      loaded.push({ name: f.name, file });
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (loaded.length > 0) {
    useRouting.setState((s) => {
      const files = [...s.files.filter((x) => !loaded.some((l) => l.name === x.name)), ...loaded];
      const keys = files.flatMap((x) => x.file.sets.map((set) => setKey(x.name, set.name)));
      const a = s.a && keys.includes(s.a) ? s.a : (keys[0] ?? null);
      const b = s.b && keys.includes(s.b) ? s.b : (keys.find((k) => k !== a) ?? null);
      return { files, a, b, view: 'routing', selected: [] };
    });
  }
  return errors;
}

export function removeStatsFile(name: string): void {
  useRouting.setState((s) => {
    const files = s.files.filter((f) => f.name !== name);
    const keys = files.flatMap((x) => x.file.sets.map((set) => setKey(x.name, set.name)));
    return { files, a: s.a && keys.includes(s.a) ? s.a : (keys[0] ?? null), b: s.b && keys.includes(s.b) ? s.b : null, selected: [] };
  });
}

function findSet(files: LoadedStats[], key: string | null) {
  if (!key) return undefined;
  const hash = key.lastIndexOf('#');
  const f = files.find((x) => x.name === key.slice(0, hash));
  const set = f?.file.sets.find((x) => x.name === key.slice(hash + 1));
  return f && set ? { file: f.file, set, label: key } : undefined;
}

/** What the view draws: one value per (layer, expert) cell, and the ranking. */
export type RoutingView =
  | { kind: 'none' }
  | { kind: 'error'; message: string }
  | { kind: 'contrast'; layers: number[]; experts: number; values: Float64Array; ranked: ExpertContrast[]; cells: ExpertContrast[]; label: string; metric: ContrastMetric }
  | { kind: 'rates'; layers: number[]; experts: number; values: Float64Array; ranked: ExpertRate[]; cells: ExpertRate[]; label: string; metric: RateMetric };

export function routingView(s: RoutingState): RoutingView {
  const a = findSet(s.files, s.a);
  if (!a) return { kind: 'none' };
  if (s.layersText.trim() !== '' && !INDEX_SET_TEXT.test(s.layersText)) return { kind: 'error', message: `Layers: "${s.layersText}" is not a list of layers such as "3-10" or "5, 7".` };
  const keep = s.layersText.trim() === '' ? () => true : indexSet(s.layersText, 'layers');
  const layers = a.file.model.layers;
  const experts = a.file.model.experts;
  const b = findSet(s.files, s.b);
  if (b) {
    const bad = routingMismatches(b.file, { modelType: a.file.model.model_type, moeLayers: layers, experts, expertsPerToken: a.file.model.top_k });
    if (bad.length > 0 || b.file.model.layers.join() !== layers.join()) return { kind: 'error', message: `${b.label} cannot be compared with ${a.label}: ${bad.join('; ') || 'they cover different layers'}.` };
    const cells = contrastSets(a, b);
    const score = (c: ExpertContrast) => contrastScore(c, s.contrastMetric);
    return {
      kind: 'contrast',
      layers,
      experts,
      cells,
      values: Float64Array.from(cells, score),
      ranked: rankBy(cells, score, (c) => keep(c.layer)),
      label: `${a.label} against ${b.label}`,
      metric: s.contrastMetric,
    };
  }
  const cells = setRates(a.file, a.set);
  const score = (r: ExpertRate) => rateScore(r, s.rateMetric);
  return { kind: 'rates', layers, experts, cells, values: Float64Array.from(cells, score), ranked: rankBy(cells, score, (r) => keep(r.layer)), label: a.label, metric: s.rateMetric };
}
