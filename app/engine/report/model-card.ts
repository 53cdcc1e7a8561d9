// The child's README.md: a Hugging Face model card saying exactly what was taken from where.
import type { MergePlan } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';

/** What the merge found out while running, for the card. Absent when the card is only planned. */
export interface CardFacts {
  /** Threshold candidates taken from the base because every parent was within `below`. */
  thresholdKept: number;
  thresholdCandidates: number;
}

export function renderModelCard(plan: MergePlan, facts: CardFacts | undefined): string {
  const { recipe, parentOrder, base } = plan;
  const lines: string[] = [];
  lines.push('---');
  lines.push('base_model:');
  for (const p of parentOrder) lines.push(`- ${yamlScalar(recipe.parents[p]!)}`);
  lines.push('tags:');
  lines.push('- merge');
  lines.push('- moe-studio');
  lines.push('library_name: transformers');
  lines.push('---');
  lines.push('');
  lines.push(`# MoE Studio merge of ${parentOrder.join(' + ')}`);
  lines.push('');
  lines.push(plan.description);
  lines.push('');
  lines.push('## Parents');
  lines.push('');
  lines.push('| name | source | role |');
  lines.push('|---|---|---|');
  for (const p of parentOrder) lines.push(`| ${p} | ${recipe.parents[p]} | ${p === base ? 'base (config, tokenizer, unmatched tensors)' : 'parent'} |`);
  lines.push('');
  lines.push('## What was taken from where');
  lines.push('');
  lines.push(`| tensor kind | tensors | ${parentOrder.map((p) => `from ${p}`).join(' | ')} | mixed | muted |`);
  lines.push(`|---|---:|${parentOrder.map(() => '---:').join('|')}|---:|---:|`);
  for (const s of plan.byKind) {
    lines.push(`| ${s.kind} | ${s.tensors} | ${parentOrder.map((p) => s.from[p] ?? 0).join(' | ')} | ${s.mixed} | ${s.muted} |`);
  }
  lines.push('');
  const mixRules = recipe.rules
    .map((r, i) => ({ r, i }))
    .filter(({ r }) => r.weights && Object.values(r.weights).filter((w) => w !== 0).length > 1);
  if (mixRules.length > 0) {
    lines.push('Mixed tensors are convex combinations computed in f32 (FP8 weights dequantized with their 128×128 block scales, and re-quantized with fresh scales when the output is FP8):');
    lines.push('');
    for (const { r, i } of mixRules) {
      const w = Object.entries(r.weights!).map(([p, x]) => `${x}·${p}`).join(' + ');
      lines.push(`- rule ${i + 1}, \`${JSON.stringify(r.select)}\`: ${w}`);
    }
    lines.push('');
  }
  lines.push('## Threshold');
  lines.push('');
  if (!recipe.threshold) {
    lines.push('No threshold: every tensor a rule mixes was mixed.');
  } else if (!facts) {
    lines.push(`Tensors a rule would mix are taken from ${base} unchanged when the rms difference of every mixed parent from ${base} is below ${recipe.threshold.below}.`);
  } else {
    lines.push(
      `Tensors a rule would mix are taken from ${base} unchanged when rms_diff = sqrt(mean((x_parent − x_${base})²)) of every mixed parent is below ${recipe.threshold.below}: ` +
        `${facts.thresholdKept} of ${facts.thresholdCandidates} such tensors were kept from ${base}, ${facts.thresholdCandidates - facts.thresholdKept} were mixed.`,
    );
  }
  lines.push('');
  const patched = plan.tensors.filter((t) => t.patches);
  const muted = plan.tensors.filter((t) => t.edit === 'mute');
  if (patched.length > 0 || muted.length > 0) {
    lines.push('## Expert edits');
    lines.push('');
    for (const t of patched) {
      for (const p of t.patches!) {
        lines.push(`- layer ${t.role.layer}, expert ${p.expert}: switched ${p.action} (e_score_correction_bias set to ${p.value}; the router ${p.action === 'off' ? 'never' : 'always'} selects it, nothing else changes)`);
      }
    }
    for (const t of muted) {
      lines.push(`- layer ${t.role.layer}, expert ${t.role.expert}: muted (down projection zeroed: zero output, the expert still takes its routing slot)`);
    }
    lines.push('');
  }
  lines.push('## Recipe');
  lines.push('');
  lines.push('Made with MoE Studio; rerun with `moe-studio merge moe-studio-recipe.yaml -o OUT`.');
  lines.push('');
  lines.push('```yaml');
  lines.push(recipeToYaml(recipe).trimEnd());
  lines.push('```');
  lines.push('');
  return lines.join('\n');
}

function yamlScalar(s: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(s) && !/^[-.]/.test(s) ? s : JSON.stringify(s);
}
