// The recipe's expert changes (remove, transplant, add) and the child's experts they make: which
// child expert comes from where, per layer, in the child's numbering, before anything is written.
import { formatIndexList } from '../../../shared/format.ts';
import { clearExpertChanges } from '../../../shared/recipe-tools.ts';
import { updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function ExpertChanges() {
  const changes = useStudio((s) => s.recipe.experts);
  const plan = useStudio((s) => s.plan);
  const count = (changes?.remove.length ?? 0) + (changes?.transplant.length ?? 0) + (changes?.add.length ?? 0);
  if (count === 0) return null;
  const drop = (key: 'remove' | 'transplant' | 'add', i: number) =>
    updateRecipe((r) => {
      const ex = r.experts!;
      const next = { ...ex, [key]: ex[key].filter((_, k) => k !== i) };
      return next.remove.length + next.transplant.length + next.add.length === 0 ? clearExpertChanges(r) : { ...r, experts: next };
    });
  const set = (v: unknown) => (typeof v === 'number' ? String(v) : Array.isArray(v) ? v.join(', ') : String(v));
  return (
    <Section
      title={`Expert changes (${count})`}
      extra={
        <button className="link small" data-testid="clear-expert-changes" onClick={() => updateRecipe(clearExpertChanges)}>
          clear all
        </button>
      }
    >
      <div className="edit-list">
        {changes!.remove.map((e, i) => (
          <span key={`r${i}`} className="edit-chip a-off">
            remove L{set(e.layers ?? e.layer)} E{set(e.experts ?? e.expert)}
            <button className="icon-btn tiny" aria-label="Remove entry" onClick={() => drop('remove', i)}>
              ×
            </button>
          </span>
        ))}
        {changes!.transplant.map((e, i) => (
          <span key={`t${i}`} className="edit-chip a-on">
            L{set(e.layers ?? e.layer)} E{set(e.experts ?? e.expert)} ← {e.from.parent}
            {e.from.layer !== undefined ? ` L${e.from.layer}` : ''}
            {e.from.expert !== undefined ? ` E${e.from.expert}` : ''}
            {e.router === 'source' ? ' (router too)' : ''}
            <button className="icon-btn tiny" aria-label="Remove entry" onClick={() => drop('transplant', i)}>
              ×
            </button>
          </span>
        ))}
        {changes!.add.map((e, i) => (
          <span key={`a${i}`} className="edit-chip a-mute">
            add to L{set(e.layers ?? e.layer)}: {e.from.parent}
            {e.from.layer !== undefined ? ` L${e.from.layer}` : ''} E{e.from.expert}
            <button className="icon-btn tiny" aria-label="Remove entry" onClick={() => drop('add', i)}>
              ×
            </button>
          </span>
        ))}
      </div>
      {plan && plan.expertChanges && (
        <>
          <p className="small" data-testid="expert-changes">
            {plan.expertChanges}
          </p>
          {plan.expertRows.length > 0 && (
            <table className="kind-table" data-testid="expert-map">
              <thead>
                <tr>
                  <th>layers</th>
                  <th>child expert</th>
                  <th>from</th>
                </tr>
              </thead>
              <tbody>
                {plan.expertRows.slice(0, 200).map((r, i) => (
                  <tr key={i}>
                    <td>{formatIndexList(r.layers)}</td>
                    <td>{r.child}</td>
                    <td className="from">{r.from}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {plan.expertRows.length > 200 && <p className="muted small">… and {plan.expertRows.length - 200} more renumbered slots</p>}
        </>
      )}
    </Section>
  );
}
