// Typed loading of families.json, architecture detection, and reading config.json by the
// family's keys.
//
// detectArchitecture picks the family whose `modelTypes` holds config.json's `model_type`.
// Any other model_type falls back to the `generic` entry when tensor names look like an MoE
// (`…layers.L…experts.E…`, or fused `…experts.gate_up_proj`); its config keys are candidates.
import * as z from 'zod';
import { MoeError } from '../io.ts';
import { PROJECTIONS, TENSOR_KINDS } from '../model/types.ts';
import type { ArchitectureSpec, ConfigKeys, TensorPattern } from './types.ts';
import familiesJson from './families.json' with { type: 'json' };

const CONFIG_FIELDS = [
  'layers', 'hiddenSize', 'experts', 'expertsPerToken', 'sharedExperts', 'vocabSize', 'mtpLayers', 'groups', 'topkGroups',
  'firstDenseLayers', 'moeLayerFreq', 'sparseStep', 'denseLayerList', 'moeLayerList', 'layerPattern', 'expertPeriod', 'expertOffset',
  'moeStart', 'moeEnd',
] as const;
type ConfigField = (typeof CONFIG_FIELDS)[number];

/** Keys a family does not name: the names nearly every config uses, or none. */
const CONFIG_DEFAULTS: Partial<Record<ConfigField, string[]>> = {
  layers: ['num_hidden_layers'],
  hiddenSize: ['hidden_size'],
  expertsPerToken: ['num_experts_per_tok'],
  vocabSize: ['vocab_size'],
};

const fusedSchema = z.strictObject({
  parts: z.array(z.enum(PROJECTIONS)).min(1),
  mode: z.enum(['halves', 'interleaved']),
  input: z.enum(['rows', 'cols', 'auto']),
  stacked2d: z.boolean().optional(),
  bias: z.boolean().optional(),
});
const patternSchema = z.strictObject({
  match: z.string(),
  kind: z.enum(TENSOR_KINDS),
  fused: fusedSchema.optional(),
  perExpert: z.boolean().optional(),
  bias: z.boolean().optional(),
  codec: z.enum(['plain', 'fp8', 'mxfp4', 'int4', 'nvfp4']).optional(),
});
const tensorEntry = z.union([patternSchema, z.strictObject({ use: z.string() })]);
const keyList = z.array(z.string());
const configSchema = z.strictObject(Object.fromEntries(CONFIG_FIELDS.map((f) => [f, keyList.optional()])) as Record<ConfigField, z.ZodOptional<typeof keyList>>);
const common = {
  name: z.string(),
  modelTypes: z.array(z.string()),
  tensors: z.array(tensorEntry),
  projections: z.record(z.string(), z.enum(PROJECTIONS)),
  routerBias: z.enum(['selection', 'logits', 'none']),
  notes: z.string().optional(),
};
const fileSchema = z.strictObject({
  $comment: z.unknown().optional(),
  patternSets: z.record(z.string(), z.array(z.union([patternSchema, z.strictObject({ use: z.string() })]))),
  families: z.array(z.strictObject({ ...common, configRoots: z.array(z.string()).optional(), config: configSchema })),
  generic: z.strictObject({ ...common, configCandidates: configSchema }),
});

type FamiliesFile = z.infer<typeof fileSchema>;

function fullKeys(partial: Partial<Record<ConfigField, string[] | undefined>>): ConfigKeys {
  return Object.fromEntries(CONFIG_FIELDS.map((f) => [f, partial[f] ?? CONFIG_DEFAULTS[f] ?? []])) as unknown as ConfigKeys;
}

function load(): { families: ArchitectureSpec[]; generic: ArchitectureSpec } {
  const parsed = fileSchema.safeParse(familiesJson);
  if (!parsed.success) throw new Error(`families.json is malformed: ${parsed.error.message}`);
  const file: FamiliesFile = parsed.data;
  const expand = (family: string, entries: z.infer<typeof tensorEntry>[], depth = 0): TensorPattern[] => {
    if (depth > 8) throw new Error(`families.json: ${family}: pattern sets nest too deep`);
    const out: TensorPattern[] = [];
    for (const e of entries) {
      if ('use' in e) {
        const set = file.patternSets[e.use];
        if (!set) throw new Error(`families.json: ${family} uses unknown pattern set "${e.use}"`);
        out.push(...expand(family, set, depth + 1));
      } else out.push(e);
    }
    for (const p of out) {
      try {
        new RegExp(p.match);
      } catch (err) {
        throw new Error(`families.json: ${family}: bad pattern ${p.match}: ${String(err)}`);
      }
    }
    return out;
  };
  const spec = (f: FamiliesFile['families'][number] | FamiliesFile['generic'], keys: Partial<Record<ConfigField, string[] | undefined>>, roots: string[]): ArchitectureSpec => {
    const s: ArchitectureSpec = {
      name: f.name,
      modelTypes: f.modelTypes,
      configRoots: roots,
      config: fullKeys(keys),
      tensors: expand(f.name, f.tensors),
      projections: f.projections,
      routerBias: f.routerBias,
    };
    if (f.notes !== undefined) s.notes = f.notes;
    return s;
  };
  return {
    families: file.families.map((f) => spec(f, f.config, f.configRoots ?? [''])),
    generic: spec(file.generic, file.generic.configCandidates, ['']),
  };
}

const TABLE = load();

/** Every named family (not the generic fallback), as loaded from families.json. */
export const FAMILIES: readonly ArchitectureSpec[] = TABLE.families;

export function familyByName(name: string): ArchitectureSpec | undefined {
  return TABLE.families.find((f) => f.name === name);
}

/** A config value found by a family's keys: its value and where it is (a dotted path). */
export interface ConfigValue {
  path: string;
  value: unknown;
}

function at(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** The first of a field's keys present (not null) under the family's config roots, in order. */
export function configValue(spec: ArchitectureSpec, config: Record<string, unknown>, field: keyof ConfigKeys): ConfigValue | undefined {
  for (const root of spec.configRoots) {
    for (const key of spec.config[field]) {
      const path = root ? `${root}.${key}` : key;
      const value = at(config, path);
      if (value !== undefined && value !== null) return { path, value };
    }
  }
  return undefined;
}

/** Names of the form …layers.L…experts.E…, or a fused …experts.gate_up_proj (what the generic fallback needs). */
const GENERIC_EXPERT = /(?:^|\.)(?:layers|blocks|h|layer)\.\d+\.(?:.*\.)?experts\.(?:\d+\.|gate_up_proj$)/;

/**
 * The architecture of a model from its config.json and logical tensor names. Throws MoeError
 * when neither a family nor the fallback fits.
 */
export function detectArchitecture(config: Record<string, unknown>, tensorNames: Iterable<string>, configPath = 'config.json'): ArchitectureSpec {
  const modelType = config['model_type'];
  if (typeof modelType === 'string') {
    const family = TABLE.families.find((f) => f.modelTypes.includes(modelType));
    if (family) return family;
  }
  for (const n of tensorNames) {
    if (GENERIC_EXPERT.test(n)) {
      const g = TABLE.generic;
      return { ...g, modelTypes: typeof modelType === 'string' ? [modelType] : [] };
    }
  }
  const shown = typeof modelType === 'string' ? `model_type "${modelType}"` : 'config.json has no model_type';
  throw new MoeError(
    `${shown} is not a known MoE family (${TABLE.families.map((f) => f.modelTypes.join('/')).join(', ')}) and no tensor is named like ` +
      `…layers.L…experts.E… or …experts.gate_up_proj, so it does not look like a Mixture-of-Experts checkpoint`,
    configPath,
  );
}
