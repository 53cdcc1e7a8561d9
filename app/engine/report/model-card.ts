// The child's README.md: a Hugging Face model card saying exactly what was taken from where.
import type { MergePlan } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';
import { rangeText } from './format.ts';
import { describeExpertChanges, expertMapRows } from '../plan/experts.ts';

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
  // Hub parents by repo id (the Hub links the card to them); local ones as the recipe names them.
  const hubOf = (p: string) => plan.parents.get(p)?.folder.hub;
  for (const p of parentOrder) lines.push(`- ${yamlScalar(hubOf(p)?.repo ?? recipe.parents[p]!)}`);
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
  for (const p of parentOrder) {
    const hub = hubOf(p);
    const source = hub ? `[${hub.repo}](https://huggingface.co/${hub.repo}) at \`${hub.revision}\` = commit \`${hub.commit}\`` : recipe.parents[p];
    lines.push(`| ${p} | ${source} | ${p === base ? 'base (config, tokenizer, unmatched tensors)' : 'parent'} |`);
  }
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
    lines.push('Mixed tensors are convex combinations computed in f32 (quantized weights decoded with their scales, and re-encoded with fresh scales when the child keeps a quantized format):');
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
  const edits: string[] = [];
  const seen = new Set<string>();
  for (const t of plan.tensors) {
    t.slabs.forEach((cells, j) => {
      for (const c of cells) {
        if (!c.edit) continue;
        const expert = t.slots?.[j]?.baseExpert ?? t.slot?.baseExpert ?? t.role.expert;
        const key = `${t.role.layer}/${expert}/${c.edit}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const why = recipe.edits.find((e) => e.layer === t.role.layer && e.expert === expert && e.action === c.edit)?.why;
        const from = why === undefined ? '' : ` — ${why.replace(/\s+/g, ' ')}`;
        if (c.edit === 'mute') edits.push(`- layer ${t.role.layer}, expert ${expert}: muted (down projection zeroed: zero output, the expert still takes its routing slot)${from}`);
        else {
          const value = c.op.type === 'value' ? c.op.value : undefined;
          edits.push(`- layer ${t.role.layer}, expert ${expert}: switched ${c.edit} (router bias entry set to ${value}; the router ${c.edit === 'off' ? 'never' : 'always'} selects it)${from}`);
        }
      }
    });
  }
  if (edits.length > 0) {
    lines.push('## Expert edits');
    lines.push('');
    lines.push(...edits);
    lines.push('');
  }
  if (plan.expertMap) {
    lines.push('## Experts');
    lines.push('');
    lines.push(describeExpertChanges(plan));
    lines.push('');
    lines.push('| layers | child expert | from |');
    lines.push('|---|---:|---|');
    for (const r of expertMapRows(plan)) lines.push(`| ${rangeText(r.layers)} | ${r.child} | ${r.from} |`);
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
