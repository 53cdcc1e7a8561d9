// A mergekit config as a recipe, where one maps onto the other. mergekit's `linear` method (its
// merge_methods/linear.py) is, per tensor, Σ wᵢ·Wᵢ over the listed models, divided by Σ wᵢ when
// `normalize` is true (its default): a recipe rule with the normalized weights is the same
// arithmetic. A weight given per tensor-name `filter` (mergekit: the first entry of a model's list
// whose filter is a substring of the tensor's name, else the entry without a filter) becomes a
// rule per filter, selected by name. What has no recipe equivalent is refused or reported, never
// dropped silently.
import { MoeError } from '../io.ts';
import { tidyShare, type Recipe, type Rule } from './schema.ts';

export interface MergekitImport {
  recipe: Recipe;
  /** What was read differently from mergekit, or left out, in words. */
  notes: string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A parsed YAML/JSON value that is a mergekit config (it names a `merge_method`). */
export function isMergekitConfig(value: unknown): value is Obj {
  return isObj(value) && typeof value.merge_method === 'string';
}

/** One model's weight: a number for every tensor, or per name filter (the last entry may have none). */
type WeightSpec = { filter?: string; value: number }[];

const DTYPES: Record<string, Recipe['output']['dtype']> = { float16: 'f16', bfloat16: 'bf16', float32: 'f32' };

export function fromMergekit(config: unknown, fileName = 'mergekit config'): MergekitImport {
  const fail = (msg: string): never => {
    throw new MoeError(`mergekit config: ${msg}`, fileName);
  };
  if (!isMergekitConfig(config)) return fail('no `merge_method`');
  const notes: string[] = [];
  const method = config.merge_method;
  if (method !== 'linear') {
    fail(`merge_method "${method}" has no recipe equivalent: MoE Studio runs per-tensor convex mixes (mergekit's linear), copies, expert edits and expert changes; ${method} needs its own arithmetic`);
  }
  if (config.slices !== undefined) fail('`slices` (layer ranges stacked from different models) has no recipe equivalent: a child keeps the base\'s layers');
  if (!Array.isArray(config.models) || config.models.length === 0) fail('`models` must list the models to mix');

  const top = isObj(config.parameters) ? config.parameters : {};
  const normalize = top.normalize === undefined ? true : top.normalize === true;
  if (top.normalize !== undefined && typeof top.normalize !== 'boolean') fail('parameters.normalize must be true or false');

  const parents: Record<string, string> = Object.create(null);
  const names: string[] = [];
  const specs: WeightSpec[] = [];
  (config.models as unknown[]).forEach((m, k) => {
    const where = `models[${k}]`;
    if (!isObj(m) || typeof m.model !== 'string' || m.model.trim() === '') return fail(`${where}.model must name a model (a Hub id or a folder)`);
    const ref = m.model.trim();
    if (ref.includes('+')) fail(`${where}.model "${ref}" applies a LoRA; merge the adapter into the model first`);
    const name = parentName(ref, names);
    names.push(name);
    parents[name] = parentPath(ref);
    const params = isObj(m.parameters) ? m.parameters : {};
    const spec = params.weight !== undefined ? params.weight : top.weight;
    if (spec === undefined) fail(`${where}: no weight (mergekit's linear needs one per model, in the model's parameters or the top-level ones)`);
    specs.push(weightSpec(spec, `${where}.parameters.weight`, fail));
    for (const key of Object.keys(params)) if (key !== 'weight') notes.push(`${where}: parameter "${key}" is not used by a linear merge and was left out.`);
  });
  for (const key of Object.keys(top)) if (key !== 'weight' && key !== 'normalize') notes.push(`parameters.${key} is not used by a linear merge and was left out.`);

  // The base: mergekit's base_model when it is one of the models, else the first model.
  let base = names[0]!;
  if (typeof config.base_model === 'string') {
    const k = (config.models as Obj[]).findIndex((m) => typeof m.model === 'string' && m.model.trim() === (config.base_model as string).trim());
    if (k >= 0) base = names[k]!;
    else notes.push(`base_model "${config.base_model}" is not among the models: ${base}, the first model, gives the child its config and tokenizer (a linear merge does not use base_model otherwise).`);
  } else notes.push(`No base_model: ${base}, the first model, gives the child its config and tokenizer files.`);

  // One rule per filter, in order of first appearance; then the weights for every other tensor.
  const filters: string[] = [];
  for (const s of specs) for (const e of s) if (e.filter !== undefined && !filters.includes(e.filter)) filters.push(e.filter);
  for (const a of filters)
    for (const b of filters)
      if (a !== b && b.includes(a))
        notes.push(`Filters "${a}" and "${b}" overlap (a name containing "${b}" contains "${a}"): the rules follow the order the filters first appear in; mergekit takes each model's own first match.`);
  const rules: Rule[] = [];
  const weightFor = (s: WeightSpec, filter: string | undefined): number | undefined => {
    if (filter !== undefined) {
      const hit = s.find((e) => e.filter === filter) ?? s.find((e) => e.filter !== undefined && filter.includes(e.filter));
      if (hit) return hit.value;
    }
    return s.find((e) => e.filter === undefined)?.value;
  };
  const rule = (filter: string | undefined): Rule | undefined => {
    const raw = specs.map((s) => weightFor(s, filter));
    const what = filter === undefined ? 'tensors no filter names' : `tensors whose name contains "${filter}"`;
    if (raw.some((w) => w === undefined)) {
      const missing = names.filter((_, k) => raw[k] === undefined);
      if (filter === undefined) {
        notes.push(`No weight without a filter for ${missing.join(', ')}: ${what} come from the base, ${base}.`);
        return undefined;
      }
      fail(`no weight for ${missing.join(', ')} on ${what} (give each model a value for every filter, or one without a filter)`);
    }
    const ws = raw as number[];
    const sum = ws.reduce((a, b) => a + b, 0);
    if (!(sum > 0)) fail(`the weights for ${what} sum to ${sum}: nothing to mix`);
    if (!normalize && Math.abs(sum - 1) > 1e-6) {
      fail(`normalize: false with weights summing to ${sum} for ${what}: that scales the tensors, which a recipe (a convex mix) does not do`);
    }
    const select: Rule['select'] = filter === undefined ? {} : { name: escapeRegex(filter) };
    const nonzero = names.map((n, k) => [n, ws[k]! / sum] as const).filter(([, w]) => w > 0);
    if (nonzero.length === 1) return { select, from: nonzero[0]![0] };
    return { select, weights: Object.fromEntries(nonzero.map(([n, w]) => [n, tidyShare(w)])) };
  };
  for (const f of filters) rules.push(rule(f)!);
  const rest = rule(undefined);
  if (rest) rules.push(rest);

  const recipe: Recipe = { parents, base, rules, edits: [], output: { dtype: 'keep', shard_size: '5GB' } };
  const dtype = config.out_dtype ?? config.dtype;
  if (typeof dtype === 'string') {
    if (DTYPES[dtype]) {
      recipe.output.dtype = DTYPES[dtype]!;
      if (config.out_dtype === undefined) notes.push(`dtype ${dtype}: mergekit computes in it; MoE Studio mixes in f32 and writes ${DTYPES[dtype]} (FP8 and other block formats keep theirs only with dtype keep).`);
    } else notes.push(`dtype "${dtype}" is not one MoE Studio writes: the child keeps each tensor's format.`);
  }
  for (const key of ['tokenizer_source', 'tokenizer', 'chat_template'])
    if (config[key] !== undefined) notes.push(`${key}: the child takes the base's tokenizer and chat template files as they are; ${key} was left out.`);
  for (const key of Object.keys(config))
    if (!['merge_method', 'models', 'parameters', 'base_model', 'dtype', 'out_dtype', 'tokenizer_source', 'tokenizer', 'chat_template', 'slices'].includes(key)) notes.push(`"${key}" was left out: it has no recipe equivalent.`);
  return { recipe, notes };
}

function weightSpec(v: unknown, where: string, fail: (m: string) => never): WeightSpec {
  if (typeof v === 'number') return finite(v, where, fail) ? [{ value: v }] : [];
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number')) {
      fail(`${where} is a gradient (${JSON.stringify(v)}): a weight interpolated across the layers has no recipe equivalent yet; give one value, or one per filter`);
    }
    return v.map((e, k) => {
      if (!isObj(e) || typeof e.value !== 'number') return fail(`${where}[${k}] must be {filter?: text, value: number}`);
      if (Array.isArray(e.value)) fail(`${where}[${k}] is a gradient: it has no recipe equivalent yet`);
      finite(e.value, `${where}[${k}].value`, fail);
      if (e.filter !== undefined && typeof e.filter !== 'string') fail(`${where}[${k}].filter must be text`);
      return e.filter === undefined ? { value: e.value } : { filter: e.filter, value: e.value };
    });
  }
  return fail(`${where} must be a number or a list of {filter, value}`);
}

function finite(x: number, where: string, fail: (m: string) => never): boolean {
  if (!Number.isFinite(x) || x < 0) fail(`${where} is ${x}: weights are numbers ≥ 0`);
  return true;
}

/** A parent's name in the recipe: the model's last path segment, made unique. */
function parentName(ref: string, taken: readonly string[]): string {
  const last = ref.replace(/@.*$/, '').replace(/\/+$/, '').split('/').pop() ?? 'model';
  const base = last.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '') || 'model';
  let name = base;
  for (let i = 2; taken.includes(name); i++) name = `${base}-${i}`;
  return name;
}

/** "org/name" (optionally @revision) is a Hub repo, as mergekit reads it when no such folder exists; anything else a folder. */
function parentPath(ref: string): string {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+(@[\w./-]+)?$/.test(ref) ? `hf://${ref}` : ref;
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}
