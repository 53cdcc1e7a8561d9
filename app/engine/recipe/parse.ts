// Reading and writing recipes: YAML or JSON text in, a checked Recipe out, and back to YAML.
import { Document, isMap, isSeq, parseDocument } from 'yaml';
import type * as z from 'zod';
import { MoeError, printable } from '../io.ts';
import { fromMergekit, isMergekitConfig } from './mergekit.ts';
import { recipeSchema, type Recipe } from './schema.ts';

/** Parses YAML (JSON is YAML) and checks the shape. Errors name the file and the path, e.g. `rules[2].select.kind`. */
export function parseRecipe(text: string, fileName = 'recipe'): Recipe {
  return checkRecipe(parseYamlValue(text, fileName), fileName);
}

/**
 * A recipe file, or a mergekit config (one with `merge_method`) mapped onto a recipe where it can
 * be; `notes` say what of the config was read differently or left out.
 */
export function parseRecipeFile(text: string, fileName = 'recipe'): { recipe: Recipe; notes: string[] } {
  const value = parseYamlValue(text, fileName);
  if (!isMergekitConfig(value)) return { recipe: checkRecipe(value, fileName), notes: [] };
  const { recipe, notes } = fromMergekit(value, fileName);
  return { recipe: checkRecipe(recipe, fileName), notes };
}

/** YAML (or JSON) text as a plain value, with one-line errors naming the file and the position. */
function parseYamlValue(text: string, fileName: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    // One line: where, and the first line of the parser's message (its code frame left out).
    const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
    const what = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new MoeError(`not valid YAML or JSON${where}: ${what}`, fileName);
  }
  let value: unknown;
  try {
    // Expanding aliases can blow up (the "billion laughs"); the library stops at 100 and says so.
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new MoeError(`cannot be read: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`, fileName);
  }
  return value;
}

/** Checks a recipe object (as the studio builds it) against the schema. */
export function checkRecipe(value: unknown, fileName = 'recipe'): Recipe {
  const result = recipeSchema.safeParse(value);
  if (!result.success) throw new MoeError(describeIssues(result.error, value), fileName);
  return result.data;
}

function describeIssues(error: z.ZodError, value: unknown): string {
  return error.issues
    .map((issue) => {
      const path = formatPath(issue.path as (string | number)[]);
      let msg = issue.message;
      if (issue.code === 'unrecognized_keys') msg = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      const rule = ruleIndexOf(issue.path as (string | number)[]);
      const ruleText = rule !== undefined ? ` (rule ${rule + 1}: ${ruleSummary(value, rule)})` : '';
      return `${path || 'recipe'}: ${msg}${ruleText}`;
    })
    .join('; ');
}

function formatPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function ruleIndexOf(path: (string | number)[]): number | undefined {
  return path[0] === 'rules' && typeof path[1] === 'number' ? path[1] : undefined;
}

function ruleSummary(value: unknown, index: number): string {
  const rules = (value as { rules?: unknown[] } | null)?.rules;
  return printable(JSON.stringify(rules?.[index] ?? null) ?? 'null', 200);
}

/** The recipe as the CLI reads it, in a stable key order, selectors and weights on one line each. */
export function recipeToYaml(recipe: Recipe): string {
  const ordered: Record<string, unknown> = { parents: recipe.parents };
  if (recipe.base !== undefined) ordered.base = recipe.base;
  ordered.rules = recipe.rules.map((r) => {
    const rule: Record<string, unknown> = { select: r.select };
    if (r.weights) rule.weights = r.weights;
    if (r.from !== undefined) rule.from = r.from;
    return rule;
  });
  if (recipe.threshold) ordered.threshold = recipe.threshold;
  if (recipe.edits.length > 0) ordered.edits = recipe.edits;
  const ex = recipe.experts;
  if (ex && (ex.remove.length > 0 || ex.transplant.length > 0 || ex.add.length > 0)) {
    const changes: Record<string, unknown> = {};
    if (ex.remove.length > 0) changes.remove = ex.remove;
    if (ex.transplant.length > 0) changes.transplant = ex.transplant;
    if (ex.add.length > 0) changes.add = ex.add;
    ordered.experts = changes;
  }
  ordered.output = recipe.output;
  const doc = new Document(ordered);
  const flow = (path: (string | number)[]) => {
    const node = doc.getIn(path, true);
    if (isMap(node) || isSeq(node)) node.flow = true;
  };
  recipe.rules.forEach((r, i) => {
    flow(['rules', i, 'select']);
    if (r.weights) flow(['rules', i, 'weights']);
  });
  recipe.edits.forEach((_, i) => flow(['edits', i]));
  for (const key of ['remove', 'transplant', 'add'] as const) (ex?.[key] ?? []).forEach((_, i) => flow(['experts', key, i]));
  if (recipe.threshold) flow(['threshold']);
  flow(['output']);
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/** Bytes from "5GB", "500MB", "2GiB" or a number. */
export function parseByteSize(size: string | number): number {
  if (typeof size === 'number') return size;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(size);
  if (!m) throw new MoeError(`not a size: "${size}"`);
  const unit = (m[2] ?? 'B').toUpperCase();
  const factors: Record<string, number> = {
    B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40,
  };
  return Math.round(Number(m[1]) * factors[unit]!);
}
