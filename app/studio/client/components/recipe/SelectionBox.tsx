// The heatmap selection, turned into a rule or into expert edits.
import { useState } from 'react';
import { PROJECTIONS, type Projection } from '../../../../engine/model/types.ts';
import { formatCount, formatIndexList } from '../../../shared/format.ts';
import { applyEdits, selectionRule } from '../../../shared/recipe-tools.ts';
import { baseParent, updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function SelectionBox() {
  const sel = useStudio((s) => s.selection);
  const parents = useStudio((s) => s.parents);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  const [take, setTake] = useState<string>('');
  if (!base || sel.layers.length === 0) {
    return (
      <Section title="Selection">
        <p className="muted small">Drag over the expert heatmaps to select layers and experts, then make a rule or edit those experts.</p>
      </Section>
    );
  }
  const others = parents.filter((p) => p.id !== base.id);
  const from = parents.find((p) => p.name === take) ?? others[0] ?? base;
  const bias = base.summary.routerBias === 'selection_only';
  const experts = sel.experts.length;
  const pairs = sel.layers.length * experts;
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
        <button className="link small" onClick={() => useStudio.setState({ selection: { layers: [], experts: [], proj: [] } })}>
          clear
        </button>
      }
    >
      <div className="sel-summary" data-testid="selection">
        {sel.layers.length === 1 ? 'Layer' : 'Layers'} <b>{formatIndexList(sel.layers)}</b> · {experts && sel.experts.length === 1 ? 'expert' : 'experts'} <b>{experts ? formatIndexList(sel.experts) : 'all'}</b>
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
          onClick={() => updateRecipe((r) => ({ ...r, rules: [selectionRule(sel, { from: from.name }), ...r.rules] }))}
          title="Added at the top: the first rule that matches a tensor decides it"
        >
          Add rule
        </button>
      </div>
      <div className="row">
        <span>Experts</span>
        <button className="btn small" disabled={!bias || experts === 0} onClick={() => updateRecipe((r) => applyEdits(r, sel, 'off'))} title={bias ? 'Never chosen by the router (exact)' : undefined}>
          off
        </button>
        <button className="btn small" disabled={!bias || experts === 0} onClick={() => updateRecipe((r) => applyEdits(r, sel, 'on'))} title={bias ? 'Always chosen by the router (exact)' : undefined}>
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
      {!bias && (
        <p className="muted small">
          Off/on need a router with a selection-only bias (DeepSeek-V3 family: the bias picks experts but does not weight them). {base.summary.arch} routers
          have none, so the nearest weight edit is mute.
        </p>
      )}
    </Section>
  );
}
