// From a ranking to recipe edits: the top N experts as `{layer, expert, action, why}`, and the YAML
// document a user pastes into a recipe. `why` says where each edit came from; the model card shows it.
import type { Edit } from '../recipe/schema.ts';

export interface RankedExpert {
  layer: number;
  expert: number;
  /** The figure it was ranked by, as text ("rd 0.412"). */
  figure: string;
}

/** Edits for the first `top` experts of a ranking, in ranking order. */
export function routingEdits(ranked: readonly RankedExpert[], top: number, action: Edit['action'], source: string): Edit[] {
  return ranked.slice(0, top).map((r) => ({ layer: r.layer, expert: r.expert, action, why: `${r.figure}; ${source}` }));
}

/** A YAML document holding `edits:` (one flow mapping per line), with a comment saying where from. */
export function editsYaml(edits: readonly Edit[], comment: string): string {
  const lines = comment.split('\n').map((l) => `# ${l}`);
  lines.push('edits:');
  for (const e of edits) {
    const why = e.why === undefined ? '' : `, why: ${JSON.stringify(e.why)}`;
    lines.push(`  - {layer: ${e.layer}, expert: ${e.expert}, action: ${e.action}${why}}`);
  }
  if (edits.length === 0) lines[lines.length - 1] = 'edits: []';
  return lines.join('\n') + '\n';
}
