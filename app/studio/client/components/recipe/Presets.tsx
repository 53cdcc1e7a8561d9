// Presets that fill the rules: swap experts (MEA) with α, Chimera (AoE), mix N parents per tensor kind.
import { useState } from 'react';
import type { Recipe } from '../../../../engine/recipe/schema.ts';
import { chimeraPreset, meaPreset, mixGroupsFor, mixPreset, presetOf, weightOf, withThreshold } from '../../../shared/recipe-tools.ts';
import { baseParent, updateRecipe, useStudio, type ParentEntry } from '../../store.ts';
import { fitWidth } from './fit-width.ts';
import { Section } from './Section.tsx';

export function Presets() {
  const parents = useStudio((s) => s.parents);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  const others = parents.filter((p) => p.id !== base?.id);
  // The tab, donor and α start from the recipe when it is one of the presets.
  const [found] = useState(() => presetOf(useStudio.getState().recipe));
  const [preset, setPreset] = useState<'mea' | 'chimera' | 'mix'>(found?.kind ?? 'mea');
  const [donorId, setDonorId] = useState<string>(() => (found && 'donor' in found ? (parents.find((p) => p.name === found.donor)?.id ?? '') : ''));
  const [alpha, setAlpha] = useState(found?.kind === 'mea' ? found.alpha : 1);
  const donor = others.find((p) => p.id === donorId) ?? others[0];
  // Weights by group label, then parent: the groups shown depend on the parents open.
  // As typed: a number or a fraction ("1/3"); weights are relative and normalized on Apply.
  const [mix, setMix] = useState<Record<string, Record<string, string>>>({});
  // The AoE threshold a mixing preset sets with its rules (as in the recipe when the tab opens).
  const [thrOn, setThrOn] = useState(() => useStudio.getState().recipe.threshold !== undefined);
  const [thrText, setThrText] = useState(() => String(useStudio.getState().recipe.threshold?.below ?? 0.001));
  const thr = Number(thrText);
  const thrBad = thrOn && !(Number.isFinite(thr) && thr >= 0 && thrText.trim() !== '');
  /** Applies a preset's rules; mixing presets set (or clear) the threshold with them. */
  const apply = (fn: (r: Recipe) => Recipe, mixes: boolean) => updateRecipe((r) => (mixes ? withThreshold(fn(r), thrOn ? thr : undefined) : fn(r)));
  const thresholdField = (
    <div className="row wrap preset-threshold">
      <label className="check small">
        <input type="checkbox" checked={thrOn} onChange={(e) => setThrOn(e.target.checked)} data-testid="preset-threshold-on" /> and keep from the base what every
        mixed parent changed by less than rms_diff
      </label>
      <input
        className={`input num wide ${thrBad ? 'bad' : ''}`}
        disabled={!thrOn}
        value={thrText}
        onChange={(e) => setThrText(e.target.value)}
        aria-label="preset threshold"
        title="The AoE threshold: a mixed tensor is copied from the base when every parent it mixes is within this rms_diff of the base"
      />
    </div>
  );
  if (!base || others.length === 0) {
    return (
      <Section title="Presets">
        <p className="muted">Presets need a base and at least one other parent.</p>
      </Section>
    );
  }
  // Rows for the kinds the parents have (any of them): Mixtral has no shared experts or dense MLP.
  const groups = mixGroupsFor([...new Set(parents.flatMap((p) => p.summary.kinds))]);
  const typed = (g: string, p: ParentEntry) => mix[g]?.[p.name] ?? (p.id === base.id ? '1/2' : others.length === 1 ? '1/2' : `1/${2 * others.length}`);
  const mixWeights = groups.map((g) => Object.fromEntries(parents.map((p) => [p.name, weightOf(typed(g.label, p))])));
  const badWeight = groups.some((g) => parents.some((p) => Number.isNaN(weightOf(typed(g.label, p)))));
  const weightInput = (g: string, p: ParentEntry) => (
    <input
      className={`input num ${Number.isNaN(weightOf(typed(g, p))) ? 'bad' : ''}`}
      inputMode="decimal"
      value={typed(g, p)}
      style={fitWidth(typed(g, p))}
      aria-label={`${g} weight of ${p.name}`}
      title="A number or a fraction (1/3); each kind's weights are normalized to sum to 1"
      onChange={(e) => setMix({ ...mix, [g]: { ...mix[g], [p.name]: e.target.value } })}
    />
  );
  return (
    <Section title="Presets">
      <div className="seg full">
        <button className={preset === 'mea' ? 'on' : ''} onClick={() => setPreset('mea')}>
          Swap experts (MEA)
        </button>
        <button className={preset === 'chimera' ? 'on' : ''} onClick={() => setPreset('chimera')}>
          Chimera (AoE)
        </button>
        <button className={preset === 'mix' ? 'on' : ''} onClick={() => setPreset('mix')}>
          Mix N parents
        </button>
      </div>
      {preset !== 'mix' && (
        <label className="field">
          <span>Donor of the routed experts</span>
          <select className="input" value={donor?.id} onChange={(e) => setDonorId(e.target.value)} aria-label="Donor">
            {others.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
      )}
      {preset === 'mea' && donor && (
        <>
          <p className="muted small">
            Routed experts become (1 − α)·{base.name} + α·{donor.name}; attention, embeddings, norms, router and shared experts stay {base.name}'s. α = 1
            swaps the experts (copied byte for byte): the same recipe as Chimera, which the presets then show.
          </p>
          <div className="slider-row">
            <span>α</span>
            <input type="range" min={0} max={1} step={0.05} value={alpha} onChange={(e) => setAlpha(Number(e.target.value))} aria-label="alpha" data-testid="alpha" />
            <input className="input num" type="number" min={0} max={1} step={0.05} value={alpha} onChange={(e) => setAlpha(Math.min(1, Math.max(0, Number(e.target.value))))} aria-label="alpha value" />
          </div>
          {alpha > 0 && alpha < 1 && thresholdField}
          <button className="btn" disabled={alpha > 0 && alpha < 1 && thrBad} onClick={() => apply((r) => meaPreset(r, base.name, donor.name, alpha), alpha > 0 && alpha < 1)} data-testid="apply-mea">
            Apply: replace the rules
          </button>
        </>
      )}
      {preset === 'chimera' && donor && (
        <>
          <p className="muted small">
            The R1T “Chimera” recipe: routed experts from {donor.name} verbatim, everything else (embeddings, attention, dense layers, shared experts,
            router and its bias) from {base.name}.
          </p>
          <button className="btn" onClick={() => apply((r) => chimeraPreset(r, base.name, donor.name), false)} data-testid="apply-chimera">
            Apply: replace the rules
          </button>
        </>
      )}
      {preset === 'mix' && (
        <>
          <p className="muted small">A convex combination per kind of tensor; each kind's weights are normalized to sum to 1.</p>
          <div className="mix-scroll">
            {parents.length <= 4 ? (
              <table className="mix-table" data-testid="mix-table">
                <thead>
                  <tr>
                    <th />
                    {parents.map((p) => (
                      <th key={p.id} title={p.name}>
                        {p.name}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {groups.map((g) => (
                    <tr key={g.label}>
                      <td>{g.label}</td>
                      {parents.map((p) => (
                        <td key={p.id}>{weightInput(g.label, p)}</td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : (
              // Many parents: one row each, the kinds as columns, so that every weight keeps its width.
              <table className="mix-table" data-testid="mix-table">
                <thead>
                  <tr>
                    <th />
                    {groups.map((g) => (
                      <th key={g.label} title={g.label}>
                        {g.label}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {parents.map((p) => (
                    <tr key={p.id}>
                      <td className="ellipsis" title={p.name}>
                        {p.name}
                      </td>
                      {groups.map((g) => (
                        <td key={g.label}>{weightInput(g.label, p)}</td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </div>
          {thresholdField}
          <button className="btn" onClick={() => apply((r) => mixPreset(r, base.name, mixWeights, groups), true)} disabled={badWeight || thrBad} data-testid="apply-mix">
            Apply: replace the rules
          </button>
        </>
      )}
    </Section>
  );
}

