// Expert edits (off / on / mute) in the recipe.
import { baseParent, updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function Edits() {
  const edits = useStudio((s) => s.recipe.edits);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  if (edits.length === 0) return null;
  return (
    <Section title={`Expert edits (${edits.length})`} extra={<button className="link small" onClick={() => updateRecipe((r) => ({ ...r, edits: [] }))}>clear all</button>}>
      <div className="edit-list">
        {edits.map((e, i) => (
          <span key={`${e.layer}-${e.expert}`} className={`edit-chip a-${e.action}`}>
            L{e.layer} E{e.expert} {e.action}
            <button className="icon-btn tiny" aria-label="Remove edit" onClick={() => updateRecipe((r) => ({ ...r, edits: r.edits.filter((_, k) => k !== i) }))}>
              ×
            </button>
          </span>
        ))}
      </div>
      <p className="muted small" data-testid="edit-meanings">
        {(base?.summary.edits ?? [])
          .filter((e) => e.action !== 'remove')
          .map((e) => `${e.action}: ${e.available ? (e.exact ? 'exact' : 'not exact') : 'not available'} (${e.why})`)
          .join(' · ')}
      </p>
    </Section>
  );
}
