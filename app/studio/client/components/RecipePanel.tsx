// Right: the recipe (the same YAML the CLI reads), built from presets, rules, heatmap selections,
// expert edits, the threshold and the output settings.
import { useEffect, useMemo, useRef, useState } from 'react';
import { PROJECTIONS, TENSOR_KINDS, type Projection, type TensorKind } from '../../../engine/model/types.ts';
import type { IndexSet, Rule, Selector } from '../../../engine/recipe/schema.ts';
import { formatBytes, formatCount, formatFigure, formatIndexList } from '../../shared/format.ts';
import { MIX_GROUPS, applyEdits, chimeraPreset, meaPreset, mixPreset, selectionRule } from '../../shared/recipe-tools.ts';
import { studio } from '../bridge.ts';
import { KIND_LABEL } from '../heat-data.ts';
import { baseParent, notify, setRecipe, thresholdView, updateRecipe, useStudio, type ParentEntry } from '../store.ts';

export function RecipePanel() {
  const [tab, setTab] = useState<'build' | 'yaml'>('build');
  const parents = useStudio((s) => s.parents);
  const plan = useStudio((s) => s.plan);
  const planError = useStudio((s) => s.planError);
  return (
    <section className="panel right-panel" aria-label="Recipe">
      <div className="panel-head">
        <h2>Recipe</h2>
        <div className="seg">
          <button className={tab === 'build' ? 'on' : ''} onClick={() => setTab('build')}>
            Build
          </button>
          <button className={tab === 'yaml' ? 'on' : ''} onClick={() => setTab('yaml')} data-testid="yaml-tab">
            YAML
          </button>
        </div>
      </div>
      <Sentence />
      <div className="recipe-scroll">
        {tab === 'build' ? (
          parents.length === 0 ? (
            <p className="muted pad">Open parents to build a recipe, or import one in the YAML tab.</p>
          ) : (
            <>
              <Presets />
              <SelectionBox />
              <Rules />
              <Edits />
              <Threshold />
              <Output />
              <PlanDetails />
            </>
          )
        ) : (
          <YamlView />
        )}
      </div>
      <div className="recipe-foot">
        <button
          className="btn primary wide"
          disabled={!plan || !!planError}
          onClick={() => useStudio.setState({ mergeOpen: true })}
          data-testid="open-merge"
          title={planError ?? undefined}
        >
          Merge…{plan ? ` ${formatBytes(plan.totalBytes)} in ${plan.files.length} files` : ''}
        </button>
      </div>
    </section>
  );
}

function Sentence() {
  const plan = useStudio((s) => s.plan);
  const planError = useStudio((s) => s.planError);
  const planning = useStudio((s) => s.planning);
  const parents = useStudio((s) => s.parents);
  if (parents.length === 0) return null;
  return (
    <div className={`sentence ${planError ? 'bad' : ''}`} data-testid="plan-sentence" aria-live="polite">
      {planError ? (
        <>
          <b>The recipe cannot run yet.</b> {planError}
        </>
      ) : plan ? (
        <>
          <b>The child:</b> {plan.description}
        </>
      ) : (
        <span className="muted">{planning ? 'Planning…' : ''}</span>
      )}
    </div>
  );
}

function Section({ title, children, extra, defaultOpen = true }: { title: string; children: React.ReactNode; extra?: React.ReactNode; defaultOpen?: boolean }) {
  const [open, setOpen] = useState(defaultOpen);
  return (
    <div className="rsec">
      <div className="rsec-head">
        <button className="rsec-toggle" onClick={() => setOpen(!open)} aria-expanded={open}>
          <span className="caret">{open ? '▾' : '▸'}</span> {title}
        </button>
        {extra}
      </div>
      {open && <div className="rsec-body">{children}</div>}
    </div>
  );
}

// ------------------------------------------------------------------------------------------------

function Presets() {
  const parents = useStudio((s) => s.parents);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  const others = parents.filter((p) => p.id !== base?.id);
  const [preset, setPreset] = useState<'mea' | 'chimera' | 'mix'>('mea');
  const [donorId, setDonorId] = useState<string>('');
  const [alpha, setAlpha] = useState(1);
  const donor = others.find((p) => p.id === donorId) ?? others[0];
  const [mix, setMix] = useState<Record<string, number>[]>([]);
  if (!base || others.length === 0) {
    return (
      <Section title="Presets">
        <p className="muted">Presets need a base and at least one other parent.</p>
      </Section>
    );
  }
  const mixWeights = MIX_GROUPS.map((_, g) => {
    const row: Record<string, number> = {};
    for (const p of parents) row[p.name] = mix[g]?.[p.name] ?? (p.id === base.id ? 0.5 : 0.5 / others.length);
    return row;
  });
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
            swaps the experts (copied byte for byte).
          </p>
          <div className="slider-row">
            <span>α</span>
            <input type="range" min={0} max={1} step={0.05} value={alpha} onChange={(e) => setAlpha(Number(e.target.value))} aria-label="alpha" data-testid="alpha" />
            <input className="input num" type="number" min={0} max={1} step={0.05} value={alpha} onChange={(e) => setAlpha(Math.min(1, Math.max(0, Number(e.target.value))))} aria-label="alpha value" />
          </div>
          <button className="btn" onClick={() => updateRecipe((r) => meaPreset(r, base.name, donor.name, alpha))} data-testid="apply-mea">
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
          <button className="btn" onClick={() => updateRecipe((r) => chimeraPreset(r, base.name, donor.name))} data-testid="apply-chimera">
            Apply: replace the rules
          </button>
        </>
      )}
      {preset === 'mix' && (
        <>
          <p className="muted small">A convex combination per kind of tensor; each row is normalized to sum 1.</p>
          <table className="mix-table">
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
              {MIX_GROUPS.map((g, gi) => (
                <tr key={g.label}>
                  <td>{g.label}</td>
                  {parents.map((p) => (
                    <td key={p.id}>
                      <input
                        className="input num"
                        type="number"
                        min={0}
                        step={0.05}
                        value={mixWeights[gi]![p.name]}
                        aria-label={`${g.label} weight of ${p.name}`}
                        onChange={(e) => {
                          const next = mixWeights.map((r) => ({ ...r }));
                          next[gi]![p.name] = Math.max(0, Number(e.target.value));
                          setMix(next);
                        }}
                      />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          <button className="btn" onClick={() => updateRecipe((r) => mixPreset(r, base.name, mixWeights))}>
            Apply: replace the rules
          </button>
        </>
      )}
    </Section>
  );
}

// ------------------------------------------------------------------------------------------------

function SelectionBox() {
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

// ------------------------------------------------------------------------------------------------

function parseIndexSet(text: string): { ok: true; value: IndexSet | undefined } | { ok: false } {
  const t = text.trim();
  if (t === '') return { ok: true, value: undefined };
  if (/^\d+$/.test(t)) return { ok: true, value: Number(t) };
  if (/^\d+\s*-\s*\d+$/.test(t)) return { ok: true, value: t.replace(/\s+/g, '') };
  if (/^\d+(\s*,\s*\d+)+$/.test(t)) return { ok: true, value: t.split(',').map((x) => Number(x.trim())) };
  return { ok: false };
}

function indexSetText(v: IndexSet | undefined): string {
  if (v === undefined) return '';
  if (Array.isArray(v)) return v.join(', ');
  return String(v);
}

function asList<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function Rules() {
  const rules = useStudio((s) => s.recipe.rules);
  const parents = useStudio((s) => s.parents);
  const plan = useStudio((s) => s.plan);
  const names = Object.keys(useStudio((s) => s.recipe.parents));
  void parents;
  const base = useStudio((s) => s.recipe.base);
  const move = (i: number, d: number) =>
    updateRecipe((r) => {
      const next = [...r.rules];
      const [x] = next.splice(i, 1);
      next.splice(Math.max(0, Math.min(next.length, i + d)), 0, x!);
      return { ...r, rules: next };
    });
  return (
    <Section
      title={`Rules (${rules.length})`}
      extra={
        <button className="link small" onClick={() => updateRecipe((r) => ({ ...r, rules: [...r.rules, { select: { kind: 'routed_expert' }, from: base ?? names[0] ?? '' }] }))} data-testid="add-rule">
          + add rule
        </button>
      }
    >
      <p className="muted small">For each tensor the first rule that matches decides; tensors no rule matches come from the base{base ? ` (${base})` : ''}.</p>
      {rules.map((rule, i) => (
        <RuleCard key={i} i={i} rule={rule} names={names} count={plan?.ruleCounts?.[i]} onMove={move} last={i === rules.length - 1} />
      ))}
    </Section>
  );
}

function RuleCard({ i, rule, names, count, onMove, last }: { i: number; rule: Rule; names: string[]; count: number | undefined; onMove: (i: number, d: number) => void; last: boolean }) {
  const [layersText, setLayersText] = useState(indexSetText(rule.select.layers));
  const [expertsText, setExpertsText] = useState(indexSetText(rule.select.experts));
  const [bad, setBad] = useState<string | null>(null);
  useEffect(() => setLayersText(indexSetText(rule.select.layers)), [rule.select.layers]);
  useEffect(() => setExpertsText(indexSetText(rule.select.experts)), [rule.select.experts]);
  const kinds = asList(rule.select.kind);
  const projs = asList(rule.select.proj);
  const update = (fn: (r: Rule) => Rule) => updateRecipe((rec) => ({ ...rec, rules: rec.rules.map((x, k) => (k === i ? fn(x) : x)) }));
  const setSelect = (patch: Partial<Selector>) =>
    update((r) => {
      const select: Selector = { ...r.select, ...patch };
      for (const k of Object.keys(select) as (keyof Selector)[]) if (select[k] === undefined) delete select[k];
      return { ...r, select };
    });
  const toggleKind = (k: TensorKind) => {
    const next = kinds.includes(k) ? kinds.filter((x) => x !== k) : TENSOR_KINDS.filter((x) => x === k || kinds.includes(x));
    setSelect({ kind: next.length === 0 ? undefined : next.length === 1 ? next[0] : next });
  };
  const toggleProj = (p: Projection) => {
    const next = projs.includes(p) ? projs.filter((x) => x !== p) : PROJECTIONS.filter((x) => x === p || projs.includes(x));
    setSelect({ proj: next.length === 0 || next.length === 3 ? undefined : next.length === 1 ? next[0] : next });
  };
  const mode = rule.from !== undefined ? 'from' : 'weights';
  const sum = Object.values(rule.weights ?? {}).reduce((a, b) => a + b, 0);
  return (
    <div className="rule card" data-testid="rule">
      <div className="rule-head">
        <span className="rule-n">{i + 1}</span>
        <span className="muted small">{count !== undefined ? `${formatCount(count)} tensors` : ''}</span>
        <span className="grow" />
        <button className="icon-btn" aria-label="Move rule up" disabled={i === 0} onClick={() => onMove(i, -1)}>
          ↑
        </button>
        <button className="icon-btn" aria-label="Move rule down" disabled={last} onClick={() => onMove(i, 1)}>
          ↓
        </button>
        <button className="icon-btn" aria-label="Delete rule" onClick={() => updateRecipe((r) => ({ ...r, rules: r.rules.filter((_, k) => k !== i) }))}>
          ×
        </button>
      </div>
      <div className="chips-row" title="Kinds (none = any)">
        {TENSOR_KINDS.map((k) => (
          <button key={k} className={`chip-btn small ${kinds.includes(k) ? 'on' : ''}`} onClick={() => toggleKind(k)}>
            {KIND_LABEL[k]}
          </button>
        ))}
      </div>
      <div className="rule-fields">
        <label>
          layers
          <input
            className="input"
            value={layersText}
            placeholder="all"
            onChange={(e) => setLayersText(e.target.value)}
            onBlur={() => {
              const p = parseIndexSet(layersText);
              if (!p.ok) return setBad('layers: write 5, 3-10 or 1, 4, 9');
              setBad(null);
              setSelect({ layers: p.value });
            }}
          />
        </label>
        <label>
          experts
          <input
            className="input"
            value={expertsText}
            placeholder="all"
            onChange={(e) => setExpertsText(e.target.value)}
            onBlur={() => {
              const p = parseIndexSet(expertsText);
              if (!p.ok) return setBad('experts: write 5, 3-10 or 1, 4, 9');
              setBad(null);
              setSelect({ experts: p.value });
            }}
          />
        </label>
        <label className="proj">
          proj
          <span className="chips-row">
            {PROJECTIONS.map((p) => (
              <button key={p} className={`chip-btn small ${projs.includes(p) ? 'on' : ''}`} onClick={() => toggleProj(p)}>
                {p}
              </button>
            ))}
          </span>
        </label>
        <label className="wide">
          name
          <input className="input mono" value={rule.select.name ?? ''} placeholder="regular expression (optional)" onChange={(e) => setSelect({ name: e.target.value || undefined })} />
        </label>
      </div>
      {bad && <div className="err-text small">{bad}</div>}
      <div className="rule-take">
        <select
          className="input"
          value={mode}
          aria-label="How"
          onChange={(e) =>
            update((r) =>
              e.target.value === 'from'
                ? { select: r.select, from: Object.entries(r.weights ?? {}).sort((a, b) => b[1] - a[1])[0]?.[0] ?? names[0]! }
                : { select: r.select, weights: Object.fromEntries(names.map((n) => [n, n === r.from ? 1 : 0])) },
            )
          }
        >
          <option value="from">copy from</option>
          <option value="weights">mix with weights</option>
        </select>
        {mode === 'from' ? (
          <select className="input" value={rule.from} aria-label="From parent" onChange={(e) => update((r) => ({ select: r.select, from: e.target.value }))}>
            {!names.includes(rule.from ?? '') && <option value={rule.from}>{rule.from} (not open)</option>}
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        ) : (
          <div className="weights">
            {names.map((n) => (
              <label key={n}>
                <span title={n}>{n}</span>
                <input
                  className="input num"
                  type="number"
                  min={0}
                  max={1}
                  step={0.05}
                  value={rule.weights?.[n] ?? 0}
                  onChange={(e) => update((r) => ({ select: r.select, weights: { ...(r.weights ?? {}), [n]: Math.max(0, Number(e.target.value)) } }))}
                />
              </label>
            ))}
            <span className={`small ${Math.abs(sum - 1) > 1e-6 ? 'err-text' : 'muted'}`}>Σ = {Number(sum.toFixed(4))}</span>
          </div>
        )}
      </div>
    </div>
  );
}

// ------------------------------------------------------------------------------------------------

function Edits() {
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

// ------------------------------------------------------------------------------------------------

function Threshold() {
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

// ------------------------------------------------------------------------------------------------

function Output() {
  const output = useStudio((s) => s.recipe.output);
  const [shard, setShard] = useState(String(output.shard_size));
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => setShard(String(output.shard_size)), [output.shard_size]);
  return (
    <Section title="Output">
      <div className="row">
        <label className="field inline">
          <span>dtype</span>
          <select className="input" value={output.dtype} onChange={(e) => updateRecipe((r) => ({ ...r, output: { ...r.output, dtype: e.target.value as typeof output.dtype } }))} aria-label="Output dtype">
            <option value="keep">keep (each tensor's own)</option>
            <option value="bf16">bf16</option>
            <option value="f16">f16</option>
            <option value="f32">f32</option>
          </select>
        </label>
        <label className="field inline">
          <span>shard size</span>
          <input
            className="input"
            value={shard}
            aria-label="Shard size"
            onChange={(e) => setShard(e.target.value)}
            onBlur={() => {
              if (!/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/i.test(shard)) return setErr('a size like 5GB or 500MB');
              setErr(null);
              updateRecipe((r) => ({ ...r, output: { ...r.output, shard_size: /^\d+$/.test(shard.trim()) ? Number(shard.trim()) : shard.trim() } }));
            }}
          />
        </label>
      </div>
      {err && <div className="err-text small">{err}</div>}
      <p className="muted small">keep: FP8 weights stay FP8 (mixed ones are requantized with fresh 128×128 block scales); the router bias always keeps its F32.</p>
    </Section>
  );
}

function PlanDetails() {
  const plan = useStudio((s) => s.plan);
  if (!plan) return null;
  return (
    <Section title="What gets written" defaultOpen={false}>
      <table className="kind-table" data-testid="kind-table">
        <thead>
          <tr>
            <th>kind</th>
            <th>tensors</th>
            {plan.parents.map((p) => (
              <th key={p} title={`copied from ${p}`}>
                {p}
              </th>
            ))}
            <th>mixed</th>
            <th>muted</th>
          </tr>
        </thead>
        <tbody>
          {plan.byKind.map((k) => (
            <tr key={k.kind}>
              <td>{KIND_LABEL[k.kind]}</td>
              <td>{formatCount(k.tensors)}</td>
              {plan.parents.map((p) => (
                <td key={p}>{k.from[p] ? formatCount(k.from[p]!) : ''}</td>
              ))}
              <td>{k.mixed ? formatCount(k.mixed) : ''}</td>
              <td>{k.muted ? formatCount(k.muted) : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="muted small">
        {formatCount(plan.ops.copy)} copied byte for byte · {formatCount(plan.ops.convert)} converted · {formatCount(plan.ops.mix)} mixed
        {plan.ops.zero ? ` · ${formatCount(plan.ops.zero)} muted` : ''} · {plan.files.length} files, {formatBytes(plan.totalBytes)}
      </div>
      {plan.warnings.length > 0 && (
        <ul className="warn-list">
          {plan.warnings.slice(0, 30).map((w, i) => (
            <li key={i}>{w}</li>
          ))}
          {plan.warnings.length > 30 && <li>… and {plan.warnings.length - 30} more</li>}
        </ul>
      )}
    </Section>
  );
}

// ------------------------------------------------------------------------------------------------

function YamlView() {
  const recipe = useStudio((s) => s.recipe);
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [dirty, setDirty] = useState(false);
  const lastApplied = useRef<string>('');
  const fileRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    let live = true;
    void studio.recipeToYaml(recipe).then((y) => {
      if (!live) return;
      lastApplied.current = y;
      if (!dirty) setText(y);
    });
    return () => {
      live = false;
    };
  }, [recipe]);

  useEffect(() => {
    if (!dirty) return;
    const t = setTimeout(async () => {
      const res = await studio.parseRecipe(text, 'recipe.yaml');
      if (res.ok) {
        setError(null);
        setDirty(false);
        setRecipe(res.value);
      } else setError(res.error);
    }, 450);
    return () => clearTimeout(t);
  }, [text, dirty]);

  const exportYaml = () => {
    const blob = new Blob([lastApplied.current || text], { type: 'application/yaml' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'recipe.yaml';
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };

  return (
    <div className="yaml-view">
      <div className="row">
        <button className="btn small" onClick={() => fileRef.current?.click()}>
          Import…
        </button>
        <button className="btn small" onClick={exportYaml} disabled={!!error}>
          Export recipe.yaml
        </button>
        <span className="grow" />
        <span className={`small ${error ? 'err-text' : 'muted'}`}>{error ? 'invalid' : dirty ? 'checking…' : 'valid'}</span>
        <input
          ref={fileRef}
          type="file"
          accept=".yaml,.yml,.json"
          hidden
          aria-label="Import recipe file"
          data-testid="recipe-file-input"
          onChange={async (e) => {
            const f = e.currentTarget.files?.[0];
            e.currentTarget.value = '';
            if (!f) return;
            const res = await studio.parseRecipe(await f.text(), f.name);
            if (res.ok) {
              setRecipe(res.value);
              setDirty(false);
              setError(null);
              notify('info', `Recipe imported from ${f.name}.`);
            } else notify('error', res.error);
          }}
        />
      </div>
      <textarea
        className="yaml mono"
        spellCheck={false}
        value={text}
        aria-label="Recipe YAML"
        data-testid="yaml"
        onChange={(e) => {
          setText(e.target.value);
          setDirty(true);
        }}
      />
      {error && (
        <div className="err-box" role="alert" data-testid="yaml-error">
          {error}
        </div>
      )}
      <p className="muted small">
        The CLI reads this file as it is: <span className="mono">moe-studio merge recipe.yaml OUT</span>. Parent paths are the folder names; change them to the
        paths on the machine that runs the CLI.
      </p>
    </div>
  );
}

export type { ParentEntry };
