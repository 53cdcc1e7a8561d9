// The recipe: the contract the studio and the CLI share. YAML or JSON, same shape.
// Shape checks live in the zod schema; checks that need the parents (names, matches) live in validate.ts.
import { z } from 'zod';
import { TENSOR_KINDS, PROJECTIONS } from '../model/types.ts';

/** An integer, a list of integers, or a range string "a-b" (inclusive). */
const indexSet = z.union(
  [
    z.number().int().nonnegative(),
    z.array(z.number().int().nonnegative()).min(1),
    z.string().regex(/^\s*\d+\s*-\s*\d+\s*$/),
  ],
  { error: 'expected an integer, a list of integers, or a range "a-b" such as "40-50"' },
);

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

export const ruleSchema = z
  .strictObject({
    select: selectorSchema,
    weights: z.record(z.string(), z.number().nonnegative()).optional(),
    from: z.string().optional(),
  })
  .refine((r) => (r.weights === undefined) !== (r.from === undefined), {
    message: 'a rule needs exactly one of `weights` or `from`',
  });

export const editSchema = z.strictObject({
  layer: z.number().int().nonnegative(),
  expert: z.number().int().nonnegative(),
  action: z.enum(['off', 'on', 'mute']),
});

/** "5GB", "500MB", "2GiB" or a number of bytes. GB/MB are powers of 1000, GiB/MiB of 1024. */
const byteSize = z.union([
  z.number().int().positive(),
  z.string().regex(/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/i, 'a size like "5GB" or "500MB"'),
]);

export const recipeSchema = z.strictObject({
  parents: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'parent names use letters, digits, _ . -'), z.string().min(1)),
  base: z.string().optional(),
  rules: z.array(ruleSchema).default([]),
  threshold: z
    .strictObject({
      metric: z.literal('rms_diff'),
      below: z.number().nonnegative(),
    })
    .optional(),
  edits: z.array(editSchema).default([]),
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
/** A recipe as written (after defaults are filled in). */
export type Recipe = z.infer<typeof recipeSchema>;
export type IndexSet = z.infer<typeof indexSet>;
