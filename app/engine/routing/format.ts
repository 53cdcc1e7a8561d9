// Routing statistics files: `moe-studio.routing/1`, the open format the collector
// (scripts/collect_routing.py) writes and the studio and the CLI read. One JSON file holds one or
// more prompt sets measured on one model; per MoE layer and routed expert, how many tokens had the
// expert among their top-k. The format is documented in the README ("Routing statistics").
import * as z from 'zod';
import { MoeError } from '../io.ts';

export const ROUTING_FORMAT = 'moe-studio.routing/1';

/** Largest layer or expert count a file may state; configs are bounded the same way (open-model.ts). */
const MAX_COUNT = 1 << 20;

const count = z.number().int().nonnegative();
const matrix = (what: string) => z.array(z.array(z.number().nonnegative(), { error: `${what}: expected a list of numbers per expert` }), { error: `${what}: expected a list per layer` });

const setSchema = z.looseObject({
  name: z.string().min(1).max(200),
  prompts: count,
  counted: z.enum(['prompt', 'generated', 'both']),
  /** Tokens routed at each layer (the same for every layer of a plain forward pass). */
  tokens: z.array(count),
  /** selected[i][e]: tokens that had expert e among their top-k at layers[i]. */
  selected: z.array(z.array(count)),
  /** gate_weight[i][e]: sum of the routing weights expert e received at layers[i]. */
  gate_weight: matrix('gate_weight').nullish(),
  /** saliency[i][e]: REAP's mean over the tokens routed to e of gate weight × ‖expert output‖. */
  saliency: matrix('saliency').nullish(),
  /** Mean next-token loss on the set's prompts (collector --loss). */
  loss: z.number().nonnegative().nullish(),
});

const fileSchema = z.looseObject({
  format: z.string(),
  model: z.looseObject({
    model_type: z.string().min(1),
    layers: z.array(count).min(1).max(MAX_COUNT),
    experts: z.number().int().positive().max(MAX_COUNT),
    top_k: z.number().int().positive(),
    source: z.string().optional(),
  }),
  sets: z.array(setSchema).min(1),
});

export type RoutingSet = z.infer<typeof setSchema>;
export type RoutingFile = z.infer<typeof fileSchema>;

/**
 * Reads a statistics file's text: JSON, the format and version, the shape, and the counts'
 * consistency (a layer's counts fit its tokens and top-k). Extra keys are kept and ignored. Errors
 * name the file, the set and the place.
 */
export function parseRoutingFile(text: string, fileName: string): RoutingFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new MoeError(`not a routing statistics file: ${e instanceof Error ? e.message : String(e)}`, fileName);
  }
  const format = (value as { format?: unknown } | null)?.format;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || format === undefined) {
    throw new MoeError(`not a routing statistics file: no "format": "${ROUTING_FORMAT}"`, fileName);
  }
  if (format !== ROUTING_FORMAT) {
    throw new MoeError(`format ${JSON.stringify(format)}: this MoE Studio reads "${ROUTING_FORMAT}"`, fileName);
  }
  const r = fileSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
    throw new MoeError(`${where || 'file'}: ${issue.message}`, fileName);
  }
  const file = r.data;
  const { layers, experts, top_k } = file.model;
  if (new Set(layers).size !== layers.length || layers.some((l, i) => i > 0 && l <= layers[i - 1]!)) {
    throw new MoeError(`model.layers must be increasing layer numbers, got ${JSON.stringify(layers)}`, fileName);
  }
  if (top_k > experts) throw new MoeError(`model.top_k is ${top_k}, above model.experts ${experts}`, fileName);
  const names = new Set<string>();
  for (const [k, s] of file.sets.entries()) {
    const where = `sets[${k}] "${s.name}"`;
    if (names.has(s.name)) throw new MoeError(`${where}: a second set with this name`, fileName);
    names.add(s.name);
    if (s.tokens.length !== layers.length) throw new MoeError(`${where}: tokens has ${s.tokens.length} entries for ${layers.length} layers`, fileName);
    const grid = (what: string, m: number[][] | null | undefined) => {
      if (!m) return;
      if (m.length !== layers.length) throw new MoeError(`${where}: ${what} has ${m.length} rows for ${layers.length} layers`, fileName);
      m.forEach((row, i) => {
        if (row.length !== experts) throw new MoeError(`${where}: ${what}[${i}] (layer ${layers[i]}) has ${row.length} entries for ${experts} experts`, fileName);
      });
    };
    grid('selected', s.selected);
    grid('gate_weight', s.gate_weight);
    grid('saliency', s.saliency);
    s.selected.forEach((row, i) => {
      const n = s.tokens[i]!;
      const e = row.findIndex((x) => x > n);
      if (e >= 0) throw new MoeError(`${where}: selected[${i}][${e}] (layer ${layers[i]}, expert ${e}) is ${row[e]}, more than the layer's ${n} tokens`, fileName);
      const slots = row.reduce((a, b) => a + b, 0);
      if (slots > n * top_k) throw new MoeError(`${where}: layer ${layers[i]} counts ${slots} selections, more than ${n} tokens × top_k ${top_k}`, fileName);
    });
  }
  return file;
}

/** A set of a file by name; without a name, the file's only set. */
export function routingSet(file: RoutingFile, fileName: string, name?: string): RoutingSet {
  if (name === undefined) {
    if (file.sets.length === 1) return file.sets[0]!;
    throw new MoeError(`holds ${file.sets.length} sets (${file.sets.map((s) => `"${s.name}"`).join(', ')}): name one`, fileName);
  }
  const s = file.sets.find((x) => x.name === name);
  if (!s) throw new MoeError(`has no set "${name}" (it has ${file.sets.map((x) => `"${x.name}"`).join(', ')})`, fileName);
  return s;
}

/** What a statistics file must agree with: a model's summary (inspect) or another file's model. */
export interface RoutingTarget {
  modelType?: string;
  moeLayers: number[];
  experts: number;
  expertsPerToken?: number;
}

/**
 * Why a file's statistics do not describe `target` (model type, MoE layers, expert count, top-k),
 * each mismatch named ("here" is the file, "there" the target); empty when they do.
 */
export function routingMismatches(file: RoutingFile, target: RoutingTarget): string[] {
  const m = file.model;
  const out: string[] = [];
  if (target.modelType !== undefined && m.model_type !== target.modelType) out.push(`model_type is "${m.model_type}" here, "${target.modelType}" there`);
  if (m.experts !== target.experts) out.push(`${m.experts} experts per layer here, ${target.experts} there`);
  if (target.expertsPerToken !== undefined && m.top_k !== target.expertsPerToken) out.push(`top_k is ${m.top_k} here, ${target.expertsPerToken} there`);
  const want = new Set(target.moeLayers);
  const missing = m.layers.filter((l) => !want.has(l));
  if (missing.length > 0) out.push(`layer${missing.length > 1 ? 's' : ''} ${compactList(missing)} ${missing.length > 1 ? 'are not MoE layers' : 'is not a MoE layer'} there (its MoE layers: ${compactList(target.moeLayers)})`);
  return out;
}

/** The target's view of a file's model, for comparing two files with each other. */
export function routingTargetOf(file: RoutingFile): RoutingTarget {
  return { modelType: file.model.model_type, moeLayers: file.model.layers, experts: file.model.experts, expertsPerToken: file.model.top_k };
}

/** "3-60" for a run, "1, 3, 5-7" otherwise. */
function compactList(xs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(j > i ? `${xs[i]}-${xs[j]}` : `${xs[i]}`);
    i = j + 1;
  }
  return parts.join(', ');
}
