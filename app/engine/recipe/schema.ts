// The recipe: the contract the studio and the CLI share. YAML or JSON, same shape.
// Shape checks live in the zod schema; checks that need the parents (names, matches) live in validate.ts.
import * as z from 'zod';
import { TENSOR_KINDS, PROJECTIONS } from '../model/types.ts';

/** "5", "40-50", "1, 3, 5-7" or "all": what a YAML user writes as a string. */
export const INDEX_SET_TEXT = /^\s*(?:all|\d+(?:\s*-\s*\d+)?(?:\s*,\s*\d+(?:\s*-\s*\d+)?)*)\s*$/;

const INDEX_SET_HELP = 'expected an integer, a list of integers, or a string of integers and ranges such as "40-50" or "1, 3, 5-7"';

/** An integer, a list of integers, or a string of integers and inclusive ranges ("40-50", "1,3,5-7", "all"). */
const indexSet = z.union(
  [
    z.number().int().nonnegative(),
    z.array(z.number().int().nonnegative()).min(1),
    z.string().regex(INDEX_SET_TEXT, INDEX_SET_HELP),
  ],
  { error: INDEX_SET_HELP },
);

/** Parent names: what a recipe, the studio and the CLI all accept. */
export const PARENT_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * A mapping keyed by names from the recipe, as a null-prototype object: zod's own record drops a
 * key such as `__proto__`, and a plain object would let that key reach its prototype.
 */
function nameRecord<V extends z.ZodType>(value: V, keyPattern?: RegExp, keyMessage?: string) {
  return z.unknown().transform((input, ctx): Record<string, z.output<V>> => {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      ctx.addIssue({ code: 'custom', message: 'expected a mapping of names to values', input });
      return z.NEVER;
    }
    const out = Object.create(null) as Record<string, z.output<V>>;
    for (const [k, v] of Object.entries(input)) {
      if (keyPattern && !keyPattern.test(k)) {
        ctx.addIssue({ code: 'custom', message: keyMessage ?? 'bad name', path: [k], input: k });
        continue;
      }
      const r = value.safeParse(v);
      if (!r.success) {
        for (const issue of r.error.issues) ctx.addIssue({ ...issue, code: 'custom', path: [k, ...issue.path], input: v });
        continue;
      }
      Object.defineProperty(out, k, { value: r.data, enumerable: true, writable: true, configurable: true });
    }
    return out;
  });
}

const oneOrMany = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.union([z.enum(values), z.array(z.enum(values)).min(1)], {
    error: (issue) => `expected one of ${values.join(', ')} (or a list of them), got ${JSON.stringify(issue.input)}`,
  });

export const selectorSchema = z.strictObject({
  kind: oneOrMany(TENSOR_KINDS).optional(),
  layers: indexSet.optional(),
  experts: indexSet.optional(),
  proj: oneOrMany(PROJECTIONS).optional(),
  name: z.string().optional(),
});

/** A share as a short decimal when it is one within 1e-12 (0.5, 0.25), otherwise the exact double (thirds stay thirds). */
export function tidyShare(x: number): number {
  const r = Math.round(x * 1e9) / 1e9;
  return Math.abs(r - x) < 1e-12 ? r : x;
}

const FRACTION = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)\s*$/;

/** The value of a weight written as a fraction ("1/3", "2 / 7"); NaN for any other text or a zero denominator. */
export function fractionValue(text: string): number {
  const m = FRACTION.exec(text);
  const v = m ? Number(m[1]) / Number(m[2]) : NaN;
  return Number.isFinite(v) ? v : NaN;
}

/**
 * A weight: a number, or a fraction as text ("1/3") so that thirds stay thirds (the nearest
 * double, not 0.333), as long as a rule's weights still sum to 1 within the plan's tolerance.
 */
const weight = z.unknown().transform((input, ctx): number => {
  if (typeof input === 'number' && Number.isFinite(input) && input >= 0) return input;
  const value = typeof input === 'string' ? fractionValue(input) : NaN;
  if (!Number.isNaN(value)) return value;
  ctx.addIssue({ code: 'custom', message: `${JSON.stringify(input)} is not a weight (a number ≥ 0, or a fraction such as 1/3)`, input });
  return z.NEVER;
});

export const ruleSchema = z
  .strictObject({
    select: selectorSchema,
    weights: nameRecord(weight).optional(),
    from: z.string().optional(),
  })
  .refine((r) => (r.weights === undefined) !== (r.from === undefined), {
    message: 'a rule needs exactly one of `weights` or `from`',
  });

export const editSchema = z.strictObject({
  layer: z.number().int().nonnegative(),
  expert: z.number().int().nonnegative(),
  action: z.enum(['off', 'on', 'mute']),
  /** Where the edit came from (routing statistics, say), for the model card. */
  why: z.string().max(1000).optional(),
});

/** An expert of a parent, in its own numbering: `layer` defaults to the slot's layer, `expert` (transplant) to the slot's expert. */
const expertRef = z.strictObject({
  parent: z.string(),
  layer: z.number().int().nonnegative().optional(),
  expert: z.number().int().nonnegative().optional(),
});

/** Accepts `layers` or `layer` (and `experts` or `expert`): both read naturally, for one index or many. */
function oneSpelling<T extends { layers?: unknown; layer?: unknown; experts?: unknown; expert?: unknown }>(needExperts: boolean) {
  return (e: T, ctx: z.RefinementCtx) => {
    if ((e.layers === undefined) === (e.layer === undefined)) ctx.addIssue({ code: 'custom', message: 'give exactly one of `layers` or `layer`' });
    if (needExperts && (e.experts === undefined) === (e.expert === undefined)) ctx.addIssue({ code: 'custom', message: 'give exactly one of `experts` or `expert`' });
  };
}

export const removeSchema = z
  .strictObject({ layers: indexSet.optional(), layer: indexSet.optional(), experts: indexSet.optional(), expert: indexSet.optional() })
  .superRefine(oneSpelling(true));

export const transplantSchema = z
  .strictObject({
    layers: indexSet.optional(),
    layer: indexSet.optional(),
    experts: indexSet.optional(),
    expert: indexSet.optional(),
    from: expertRef,
    router: z.enum(['keep', 'source']).default('keep'),
  })
  .superRefine(oneSpelling(true));

export const addSchema = z
  .strictObject({ layers: indexSet.optional(), layer: indexSet.optional(), from: expertRef.extend({ expert: z.number().int().nonnegative() }) })
  .superRefine(oneSpelling(false));

/** Changes to which experts the child has, applied after the rules and edits (in the parents' numbering). */
export const expertsSchema = z.strictObject({
  remove: z.array(removeSchema).default([]),
  transplant: z.array(transplantSchema).default([]),
  add: z.array(addSchema).default([]),
});

/** "5GB", "500MB", "2GiB" or a number of bytes. GB/MB are powers of 1000, GiB/MiB of 1024. */
const byteSize = z.union([
  z.number().int().positive(),
  z.string().regex(/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/i, 'a size like "5GB" or "500MB"'),
]);

export const recipeSchema = z.strictObject({
  parents: nameRecord(z.string().min(1), PARENT_NAME, 'parent names use letters, digits, _ . -'),
  base: z.string().optional(),
  rules: z.array(ruleSchema).default([]),
  threshold: z
    .strictObject({
      metric: z.literal('rms_diff'),
      below: z.number().nonnegative(),
    })
    .optional(),
  edits: z.array(editSchema).default([]),
  experts: expertsSchema.optional(),
  output: z
    .strictObject({
      dtype: z.enum(['keep', 'bf16', 'f16', 'f32']).default('keep'),
      shard_size: byteSize.default('5GB'),
    })
    .default({ dtype: 'keep', shard_size: '5GB' }),
});

export type Selector = z.infer<typeof selectorSchema>;
export type Rule = z.infer<typeof ruleSchema>;
export type Edit = z.infer<typeof editSchema>;
export type ExpertChanges = z.infer<typeof expertsSchema>;
/** A recipe as written (after defaults are filled in). */
export type Recipe = z.infer<typeof recipeSchema>;
export type IndexSet = z.infer<typeof indexSet>;
