// Typed loading of families.json and architecture detection.
//
// detectArchitecture picks the family whose `modelTypes` holds config.json's `model_type`.
// Any other model_type falls back to the `generic` entry when the tensor names look like
// `…layers.L…experts.E…` (one tensor per expert and projection); its config keys are the first
// candidate key present in config.json. Families that store experts fused (DBRX, Llama-4,
// GPT-OSS: see `unsupported` in the JSON) are refused with a message saying why.
import { z } from 'zod';
import { MoeError } from '../io.ts';
import { PROJECTIONS, TENSOR_KINDS } from '../model/types.ts';
import type { ArchitectureSpec, TensorPattern } from './types.ts';
import familiesJson from './families.json' with { type: 'json' };

const key = z.string().nullable();
const patternSchema = z.strictObject({ match: z.string(), kind: z.enum(TENSOR_KINDS) });
const tensorEntry = z.union([patternSchema, z.strictObject({ use: z.string() })]);
const configSchema = z.strictObject({
  layers: z.string(),
  hiddenSize: z.string(),
  experts: z.string(),
  expertsPerToken: key,
  sharedExperts: key,
  firstDenseLayers: key,
  denseLayerList: key.optional(),
  sparseStep: key.optional(),
  moeLayerFreq: key.optional(),
  mtpLayers: key.optional(),
  vocabSize: key.optional(),
});
const common = {
  name: z.string(),
  modelTypes: z.array(z.string()),
  tensors: z.array(tensorEntry),
  projections: z.record(z.string(), z.enum(PROJECTIONS)),
  routerBias: z.enum(['selection_only', 'none']),
  scaleSuffix: z.string().optional(),
};
const CONFIG_FIELDS = [
  'layers', 'hiddenSize', 'experts', 'expertsPerToken', 'sharedExperts', 'firstDenseLayers',
  'denseLayerList', 'sparseStep', 'moeLayerFreq', 'mtpLayers', 'vocabSize',
] as const;
type ConfigField = (typeof CONFIG_FIELDS)[number];
const fileSchema = z.strictObject({
  $comment: z.unknown().optional(),
  patternSets: z.record(z.string(), z.array(patternSchema)),
  families: z.array(z.strictObject({ ...common, config: configSchema })),
  generic: z.strictObject({
    ...common,
    configCandidates: z.strictObject(
      Object.fromEntries(CONFIG_FIELDS.map((f) => [f, z.array(z.string())])) as Record<ConfigField, z.ZodArray<z.ZodString>>,
    ),
  }),
  unsupported: z.record(z.string(), z.string()),
});

type FamiliesFile = z.infer<typeof fileSchema>;

function load(): { families: ArchitectureSpec[]; generic: FamiliesFile['generic']; genericTensors: TensorPattern[]; unsupported: Record<string, string> } {
  const parsed = fileSchema.safeParse(familiesJson);
  if (!parsed.success) throw new Error(`families.json is malformed: ${parsed.error.message}`);
  const file = parsed.data;
  const expand = (family: string, entries: z.infer<typeof tensorEntry>[]): TensorPattern[] => {
    const out: TensorPattern[] = [];
    for (const e of entries) {
      if ('use' in e) {
        const set = file.patternSets[e.use];
        if (!set) throw new Error(`families.json: ${family} uses unknown pattern set "${e.use}"`);
        out.push(...set);
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
  const families: ArchitectureSpec[] = file.families.map((f) => ({
    name: f.name,
    modelTypes: f.modelTypes,
    config: f.config,
    tensors: expand(f.name, f.tensors),
    projections: f.projections,
    routerBias: f.routerBias,
    ...(f.scaleSuffix !== undefined ? { scaleSuffix: f.scaleSuffix } : {}),
  }));
  return { families, generic: file.generic, genericTensors: expand('generic', file.generic.tensors), unsupported: file.unsupported };
}

const TABLE = load();

/** Every named family (not the generic fallback), as loaded from families.json. */
export const FAMILIES: readonly ArchitectureSpec[] = TABLE.families;

export function familyByName(name: string): ArchitectureSpec | undefined {
  return TABLE.families.find((f) => f.name === name);
}

/** Names of the form …layers.L…experts.E… (what the generic fallback needs). */
const GENERIC_EXPERT = /(?:^|\.)(?:layers|blocks|h|layer)\.\d+\.(?:.*\.)?experts\.\d+\./;

/** The generic spec, with config keys chosen from those present in `config`. */
export function genericArchitecture(config: Record<string, unknown>): ArchitectureSpec {
  const g = TABLE.generic;
  const pick = (field: ConfigField): string | null => g.configCandidates[field].find((k) => Object.prototype.hasOwnProperty.call(config, k)) ?? null;
  const modelType = typeof config['model_type'] === 'string' ? config['model_type'] : undefined;
  return {
    name: g.name,
    modelTypes: modelType ? [modelType] : [],
    config: {
      layers: pick('layers') ?? g.configCandidates.layers[0]!,
      hiddenSize: pick('hiddenSize') ?? g.configCandidates.hiddenSize[0]!,
      experts: pick('experts') ?? g.configCandidates.experts[0]!,
      expertsPerToken: pick('expertsPerToken'),
      sharedExperts: pick('sharedExperts'),
      firstDenseLayers: pick('firstDenseLayers'),
      denseLayerList: pick('denseLayerList'),
      sparseStep: pick('sparseStep'),
      moeLayerFreq: pick('moeLayerFreq'),
      mtpLayers: pick('mtpLayers'),
      vocabSize: pick('vocabSize'),
    },
    tensors: TABLE.genericTensors,
    projections: g.projections,
    routerBias: g.routerBias,
    ...(g.scaleSuffix !== undefined ? { scaleSuffix: g.scaleSuffix } : {}),
  };
}

/**
 * The architecture of a model from its config.json and tensor names (scale tensors may be
 * included; they are ignored). Throws MoeError when neither a family nor the fallback fits.
 */
export function detectArchitecture(config: Record<string, unknown>, tensorNames: Iterable<string>, configPath = 'config.json'): ArchitectureSpec {
  const modelType = config['model_type'];
  if (typeof modelType === 'string') {
    const family = TABLE.families.find((f) => f.modelTypes.includes(modelType));
    if (family) return family;
  }
  let sawExperts = false;
  for (const n of tensorNames) {
    if (GENERIC_EXPERT.test(n)) {
      sawExperts = true;
      break;
    }
  }
  if (sawExperts) return genericArchitecture(config);
  const shown = typeof modelType === 'string' ? `model_type "${modelType}"` : 'config.json has no model_type';
  const why = typeof modelType === 'string' ? TABLE.unsupported[modelType] : undefined;
  if (why) throw new MoeError(`${shown} is not supported yet: ${why}`, configPath);
  throw new MoeError(
    `${shown} is not a known MoE family (${TABLE.families.map((f) => f.name).join(', ')}) and no tensor is named like ` +
      `…layers.L…experts.E…, so it does not look like a Mixture-of-Experts checkpoint`,
    configPath,
  );
}
