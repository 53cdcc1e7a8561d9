// The heatmap selection, turned into a rule or into expert edits.
import { useState } from 'react';
import { PROJECTIONS, type Projection } from '../../../../engine/model/types.ts';
import { formatCount } from '../../../shared/format.ts';
import { addExpert, applyEdits, describeSelection, NO_SELECTION, removeExperts, selectionPairs, selectionRules, transplantExperts } from '../../../shared/recipe-tools.ts';
import { baseParent, updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function SelectionBox() {
  const sel = useStudio((s) => s.selection);
  const parents = useStudio((s) => s.parents);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  const [take, setTake] = useState<string>('');
  const [donor, setDonor] = useState<string>('');
  const [donorLayer, setDonorLayer] = useState<string>('');
  const [donorExpert, setDonorExpert] = useState<string>('');
  const [router, setRouter] = useState<'keep' | 'source'>('keep');
  if (!base || sel.rects.length === 0) {
    return (
      <Section title="Selection">
        <p className="muted small">Drag over the expert heatmaps (or use the arrow keys and Enter) to select layers and experts; shift adds a rectangle. Then make a rule or edit those experts.</p>
      </Section>
    );
  }
  const others = parents.filter((p) => p.id !== base.id);
  const from = parents.find((p) => p.name === take) ?? others[0] ?? base;
  const verdict = (a: string) => base.summary.edits.find((e) => e.action === a);
  const off = verdict('off');
  const on = verdict('on');
  const donorParent = parents.find((p) => p.name === donor) ?? others[0] ?? base;
  const num = (v: string) => (v.trim() === '' || !/^\d+$/.test(v.trim()) ? undefined : Number(v.trim()));
  const selected = selectionPairs(sel);
  const pairs = selected.length;
  const experts = pairs;
  const words = describeSelection(sel);
  const setProj = (p: Projection) =>
    useStudio.setState((s) => {
      const has = s.selection.proj.includes(p);
      const proj = has ? s.selection.proj.filter((x) => x !== p) : PROJECTIONS.filter((x) => x === p || s.selection.proj.includes(x));
      return { selection: { ...s.selection, proj: proj.length ? proj : [p] } };
    });
  return (
    <Section
      title="Selection"
      extra={
        <button className="link small" onClick={() => useStudio.setState({ selection: NO_SELECTION })}>
          clear
        </button>
      }
    >
      <div className="sel-summary" data-testid="selection">
        {words.charAt(0).toUpperCase() + words.slice(1)}
        {sel.rects.length > 1 ? <span className="muted"> ({sel.rects.length} rectangles)</span> : null}
      </div>
      <div className="chips-row">
        {PROJECTIONS.map((p) => (
          <button key={p} className={`chip-btn ${sel.proj.includes(p) ? 'on' : ''}`} onClick={() => setProj(p)}>
            {p}
          </button>
        ))}
      </div>
      <div className="row">
        <span>Take from</span>
        <select className="input" value={from.name} onChange={(e) => setTake(e.target.value)} aria-label="Selection source">
          {parents.map((p) => (
            <option key={p.id} value={p.name}>
              {p.name}
            </option>
          ))}
        </select>
        <button
          className="btn"
          data-testid="selection-rule"
          onClick={() => updateRecipe((r) => ({ ...r, rules: [...selectionRules(sel, { from: from.name }), ...r.rules] }))}
          title="Added at the top, one rule per rectangle: the first rule that matches a tensor decides it"
        >
          Add rule
        </button>
      </div>
      <div className="row">
        <span>Experts</span>
        <button className="btn small" disabled={!off?.available || experts === 0} onClick={() => updateRecipe((r) => applyEdits(r, sel, 'off'))} title={off?.why}>
          off
        </button>
        <button className="btn small" disabled={!on?.available || experts === 0} onClick={() => updateRecipe((r) => applyEdits(r, sel, 'on'))} title={on?.why} data-testid="edit-on">
          on
        </button>
        <button className="btn small" disabled={experts === 0} onClick={() => updateRecipe((r) => applyEdits(r, sel, 'mute'))} title="Zero output: the down projection is all zeros; the router still gives it its slot">
          mute
        </button>
        <button className="btn ghost small" disabled={experts === 0} onClick={() => updateRecipe((r) => applyEdits(r, sel, 'clear'))}>
          clear edits
        </button>
        <span className="muted small">{formatCount(pairs)} expert{pairs === 1 ? '' : 's'}</span>
      </div>
      {(!off?.available || !on?.available) && (
        <p className="muted small" data-testid="edit-exactness">
          {!off?.available ? `Off: ${off?.why}. ` : ''}
          {!on?.available ? `On: ${on?.why}.` : ''}
          {!on?.available && groupText(base.summary, [...new Set(selected.map((x) => x.expert))].sort((a, b) => a - b))}
        </p>
      )}
      <div className="row">
        <span>Child</span>
        <button
          className="btn small"
          data-testid="remove-experts"
          disabled={experts === 0}
          onClick={() => updateRecipe((r) => removeExperts(r, sel))}
          title="Prune: the experts leave every expert tensor, router row and bias; later experts move down"
        >
          Remove experts
        </button>
      </div>
      <div className="row">
        <select className="input" value={donorParent.name} onChange={(e) => setDonor(e.target.value)} aria-label="Expert donor">
          {parents.map((p) => (
            <option key={p.id} value={p.name}>
              {p.name}
            </option>
          ))}
        </select>
        <input className="input narrow" placeholder="layer (same)" value={donorLayer} onChange={(e) => setDonorLayer(e.target.value)} aria-label="Donor layer" />
        <input className="input narrow" placeholder="expert" value={donorExpert} onChange={(e) => setDonorExpert(e.target.value)} aria-label="Donor expert" />
        <select className="input" value={router} onChange={(e) => setRouter(e.target.value as 'keep' | 'source')} aria-label="Router row">
          <option value="keep">keep router row</option>
          <option value="source">router row from source</option>
        </select>
      </div>
      <div className="row">
        <button
          className="btn small"
          data-testid="transplant-experts"
          disabled={experts === 0}
          onClick={() => updateRecipe((r) => transplantExperts(r, sel, { parent: donorParent.name, layer: num(donorLayer), expert: num(donorExpert) }, router))}
          title="Each selected slot takes the donor's expert (all projections, scales and biases); an empty expert means the same index"
        >
          Transplant from {donorParent.name}
        </button>
        <button
          className="btn small"
          data-testid="add-expert"
          disabled={num(donorExpert) === undefined}
          onClick={() => updateRecipe((r) => addExpert(r, sel, { parent: donorParent.name, layer: num(donorLayer), expert: num(donorExpert)! }))}
          title="Appended after the remaining experts of every selected layer, with its router row"
        >
          Add expert from {donorParent.name}
        </button>
      </div>
    </Section>
  );
}

/** What forcing the selected experts on would do to group-limited routing, in words. */
function groupText(s: { experts: number; groups?: number; topkGroups?: number }, experts: number[]): string {
  const G = s.groups;
  if (G === undefined || G <= 1 || experts.length === 0) return '';
  const per = s.experts / G;
  const groups = [...new Set(experts.map((e) => Math.floor(e / per)))].sort((a, b) => a - b);
  const T = s.topkGroups ?? G;
  const left = Math.max(0, T - groups.length);
  const which = groups.map((g) => `group ${g} (experts ${g * per}-${(g + 1) * per - 1})`).join(', ');
  return ` Forcing ${experts.length === 1 ? `expert ${experts[0]}` : 'these experts'} on would force ${which} into the ${T} groups chosen per token, leaving ${left} group slot${left === 1 ? '' : 's'} for every other expert.`;
}
