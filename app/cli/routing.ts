// `moe-studio routing show|compare`: routing statistics files (moe-studio.routing/1) as tables,
// JSON, or the `edits:` of a recipe.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { MoeError } from '../engine/io.ts';
import { parseRoutingFile, routingMismatches, routingSet, routingTargetOf, type RoutingFile, type RoutingTarget } from '../engine/routing/format.ts';
import { contrastScore, contrastSets, rankBy, rateScore, setRates, type ContrastMetric, type ExpertContrast, type RateMetric } from '../engine/routing/stats.ts';
import { editsYaml, routingEdits } from '../engine/routing/edits.ts';
import type { Edit } from '../engine/recipe/schema.ts';
import { table } from './table.ts';

export interface RoutingOptions {
  /** Keep only these layers. */
  layers?: (layer: number) => boolean;
  top: number;
  json: boolean;
  /** Check the files against this model (its inspect summary). */
  model?: { target: RoutingTarget; name: string };
}

/** A file named `PATH` or `PATH#SET`, read and checked. */
export interface RoutingArg {
  file: RoutingFile;
  /** The file's name, for tables and edits' `why`. */
  name: string;
  /** The path as given, for errors. */
  path: string;
  setName?: string;
}

export async function readRoutingArg(arg: string): Promise<RoutingArg> {
  const hash = arg.lastIndexOf('#');
  const filePath = hash > 0 ? arg.slice(0, hash) : arg;
  const setName = hash > 0 ? arg.slice(hash + 1) : undefined;
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (e) {
    throw new MoeError(`cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, filePath);
  }
  const name = path.basename(filePath);
  const out: RoutingArg = { file: parseRoutingFile(text, filePath), name, path: filePath };
  if (setName !== undefined) out.setName = setName;
  return out;
}

function checkAgainst(arg: RoutingArg, model: RoutingOptions['model']): void {
  if (!model) return;
  const bad = routingMismatches(arg.file, model.target);
  if (bad.length > 0) throw new MoeError(`does not describe the model ${model.name}: ${bad.join('; ')}`, arg.path);
}

const fixed = (x: number, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : '—');

export function routingShow(arg: RoutingArg, metric: RateMetric, opts: RoutingOptions): string {
  checkAgainst(arg, opts.model);
  const sets = arg.setName === undefined ? arg.file.sets : [routingSet(arg.file, arg.path, arg.setName)];
  const m = arg.file.model;
  if (opts.json) {
    return JSON.stringify(
      {
        model: m,
        metric,
        sets: sets.map((s) => ({
          name: s.name,
          prompts: s.prompts,
          counted: s.counted,
          loss: s.loss ?? null,
          top: rankBy(setRates(arg.file, s), (r) => rateScore(r, metric), (r) => opts.layers?.(r.layer) ?? true).slice(0, opts.top),
        })),
      },
      null,
      2,
    );
  }
  const out: string[] = [`${arg.name}: ${m.model_type}${m.source ? ` (${m.source})` : ''}, ${m.layers.length} MoE layers (${m.layers[0]}–${m.layers[m.layers.length - 1]}), ${m.experts} experts, top-${m.top_k}`];
  for (const s of sets) {
    const rates = setRates(arg.file, s);
    const fewest = s.tokens.reduce((a, b) => Math.min(a, b));
    const most = s.tokens.reduce((a, b) => Math.max(a, b));
    out.push('');
    out.push(`set "${s.name}": ${s.prompts} prompts, ${s.counted} tokens counted, ${fewest === most ? most : `${fewest}–${most}`} tokens per layer${s.loss != null ? `, mean loss ${fixed(s.loss)}` : ''}${s.saliency ? ', saliency' : ''}${s.gate_weight ? ', gate weights' : ''}`);
    // Load balance: the busiest expert's rate against the mean rate (top_k / experts).
    const ranked = rankBy(rates, (r) => rateScore(r, metric), (r) => opts.layers?.(r.layer) ?? true);
    if (metric !== 'rate' && ranked.every((r) => Number.isNaN(rateScore(r, metric)))) {
      throw new MoeError(`set "${s.name}" has no ${metric === 'gate' ? 'gate_weight' : 'saliency'} figures`, arg.path);
    }
    const even = m.top_k / m.experts;
    out.push(
      table(
        ['layer', 'expert', 'selected', 'rate', 'rate / even', 'mean gate', 'saliency'],
        ranked.slice(0, opts.top).map((r) => [String(r.layer), String(r.expert), `${r.selected}/${r.tokens}`, fixed(r.rate), fixed(r.rate / even, 2), r.meanGate === undefined ? '—' : fixed(r.meanGate), r.saliency === undefined ? '—' : fixed(r.saliency)]),
        [true, true, true, true, true, true, true],
      ),
    );
  }
  return out.join('\n');
}

export interface CompareResult {
  text: string;
  /** The edits, when asked for. */
  edits?: Edit[];
}

export function routingCompare(
  a: RoutingArg,
  b: RoutingArg,
  metric: ContrastMetric,
  opts: RoutingOptions & { edits?: Edit['action'] },
): CompareResult {
  const bad = routingMismatches(b.file, routingTargetOf(a.file));
  if (bad.length > 0) throw new MoeError(`cannot be compared with ${a.path}: ${bad.join('; ')}`, b.path);
  if (a.file.model.layers.join() !== b.file.model.layers.join()) {
    throw new MoeError(`covers layers ${b.file.model.layers.join(', ')}, ${a.path} covers ${a.file.model.layers.join(', ')}: compare files of the same layers`, b.path);
  }
  checkAgainst(a, opts.model);
  const sa = routingSet(a.file, a.path, a.setName);
  const sb = routingSet(b.file, b.path, b.setName);
  const ranked = rankBy(contrastSets({ file: a.file, set: sa }, { file: b.file, set: sb }), (c) => contrastScore(c, metric), (c) => opts.layers?.(c.layer) ?? true);
  const label = `${a.name}#${sa.name} against ${b.name}#${sb.name}`;
  const metricText = metric === 'rd' ? 'risk difference' : 'log-odds ratio (ranked by its 95% interval\'s lower end)';
  if (opts.edits) {
    const figure = (c: ExpertContrast) => (metric === 'rd' ? `rd ${fixed(c.rd)}` : `log-odds ${fixed(c.logOdds, 3)} [${fixed(c.low, 3)}, ${fixed(c.high, 3)}]`);
    const edits = routingEdits(ranked.map((c) => ({ layer: c.layer, expert: c.expert, figure: figure(c) })), opts.top, opts.edits, `routing ${label}`);
    return { text: editsYaml(edits, `The top ${edits.length} experts by ${metricText}, ${label}.\nPaste into a recipe; indices are the parents' numbering.`), edits };
  }
  const top = ranked.slice(0, opts.top);
  if (opts.json) return { text: JSON.stringify({ a: { file: a.name, set: sa.name }, b: { file: b.name, set: sb.name }, metric, top }, null, 2) };
  const head = `${label}: ${metricText}, top ${top.length}`;
  return {
    text: [
      head,
      table(
        ['layer', 'expert', 'A selected', 'B selected', 'rate A', 'rate B', 'rd', 'log-odds', '95% interval'],
        top.map((c) => [String(c.layer), String(c.expert), `${c.a.selected}/${c.a.tokens}`, `${c.b.selected}/${c.b.tokens}`, fixed(c.a.rate), fixed(c.b.rate), fixed(c.rd), fixed(c.logOdds, 3), `[${fixed(c.low, 3)}, ${fixed(c.high, 3)}]`]),
        [true, true, true, true, true, true, true, true, false],
      ),
    ].join('\n'),
  };
}
