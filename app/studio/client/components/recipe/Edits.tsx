// Expert edits (off / on / mute) in the recipe.
import { updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function Edits() {
  const edits = useStudio((s) => s.recipe.edits);
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
      <p className="muted small">off: the router never picks it · on: always picks it (both exact, DeepSeek-V3 family) · mute: its down projection is zero.</p>
    </Section>
  );
}
