// The AoE threshold, with a live count of the mixed tensors it would keep from the base.
import { useMemo } from 'react';
import { formatCount, formatFigure } from '../../../shared/format.ts';
import { thresholdView, updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function Threshold() {
  const threshold = useStudio((s) => s.recipe.threshold);
  const plan = useStudio((s) => s.plan);
  const diffs = useStudio((s) => s.diffs);
  const version = useStudio((s) => s.diffVersion);
  const overlay = useStudio((s) => s.overlay);
  const below = threshold?.below ?? 1e-3;
  const tv = useMemo(() => thresholdView(useStudio.getState(), below), [plan, diffs, version, below]);
  const lo = tv && tv.min > 0 ? tv.min / 2 : 1e-6;
  const hi = tv && tv.max > 0 ? tv.max * 2 : 1;
  const toPos = (v: number) => (Math.log(Math.max(v, lo)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo));
  const fromPos = (t: number) => Number(Math.exp(Math.log(lo) + t * (Math.log(hi) - Math.log(lo))).toPrecision(3));
  return (
    <Section title="Threshold">
      <label className="check">
        <input
          type="checkbox"
          checked={!!threshold}
          onChange={(e) => updateRecipe((r) => {
            if (e.target.checked) return { ...r, threshold: { metric: 'rms_diff', below } };
            const next = { ...r };
            delete next.threshold;
            return next;
          })}
          data-testid="threshold-on"
        />
        Keep a mixed tensor from the base when every parent it mixes is within rms_diff of the base
      </label>
      {threshold && (
        <>
          <div className="slider-row">
            <span>below</span>
            <input type="range" min={0} max={1} step={0.001} value={toPos(below)} onChange={(e) => updateRecipe((r) => ({ ...r, threshold: { metric: 'rms_diff', below: fromPos(Number(e.target.value)) } }))} aria-label="threshold" />
            <input
              className="input num wide"
              type="number"
              step="any"
              min={0}
              value={below}
              onChange={(e) => updateRecipe((r) => ({ ...r, threshold: { metric: 'rms_diff', below: Math.max(0, Number(e.target.value)) } }))}
              aria-label="threshold value"
            />
          </div>
          {tv && tv.candidates === 0 && (
            <p className="muted small">No rule mixes tensors yet: the threshold only applies to mixed tensors (rules with weights).</p>
          )}
          {tv && (
            <div className="th-count" data-testid="threshold-count">
              Keeps <b>{formatCount(tv.kept)}</b> of {formatCount(tv.candidates)} mixed tensors from the base
              {tv.unknown > 0 ? <span className="err-text"> · {formatCount(tv.unknown)} have no figures yet (run a comparison)</span> : null}
              {tv.max > 0 ? <span className="muted"> · rms_diff of candidates: {formatFigure(tv.min)} – {formatFigure(tv.max)}</span> : null}
            </div>
          )}
          <label className="check small">
            <input type="checkbox" checked={overlay} onChange={(e) => useStudio.setState({ overlay: e.target.checked })} /> show on the heatmaps
          </label>
          <p className="muted small">
            rms_diff = ‖W_parent − W_base‖_F / √n (n elements), from the comparison figures (exact pass recommended). The merge itself decides with exact figures.
          </p>
        </>
      )}
    </Section>
  );
}
