// The rules: edit, add, reorder and delete (the same select / weights / from model as the CLI).
import { useEffect, useState } from 'react';
import { PROJECTIONS, TENSOR_KINDS, type Projection, type TensorKind } from '../../../../engine/model/types.ts';
import { INDEX_SET_TEXT, type IndexSet, type Rule, type Selector } from '../../../../engine/recipe/schema.ts';
import { formatCount } from '../../../shared/format.ts';
import { weightOf, weightText } from '../../../shared/recipe-tools.ts';
import { fitWidth } from './fit-width.ts';
import { KIND_LABEL } from '../../heat-data.ts';
import { updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

/** What the field accepts is what a recipe accepts: a number, or the schema's index-set text. */
function parseIndexSet(text: string): { ok: true; value: IndexSet | undefined } | { ok: false } {
  const t = text.trim();
  if (t === '') return { ok: true, value: undefined };
  if (/^\d+$/.test(t)) return { ok: true, value: Number(t) };
  if (INDEX_SET_TEXT.test(t)) return { ok: true, value: t.replace(/\s*([,-])\s*/g, (_m, c: string) => (c === ',' ? ', ' : '-')) };
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

export function Rules() {
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
  const [bad, setBad] = useState<string | null>(null);
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
        <IndexSetField label="layers" value={rule.select.layers} onBad={setBad} onCommit={(layers) => setSelect({ layers })} />
        <IndexSetField label="experts" value={rule.select.experts} onBad={setBad} onCommit={(experts) => setSelect({ experts })} />
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
              <WeightField key={n} name={n} value={rule.weights?.[n] ?? 0} onCommit={(w) => update((r) => ({ select: r.select, weights: { ...(r.weights ?? {}), [n]: w } }))} />
            ))}
            <span className={`small ${Math.abs(sum - 1) > 1e-6 ? 'err-text' : 'muted'}`}>Σ = {weightText(sum)}</span>
          </div>
        )}
      </div>
    </div>
  );
}

/** One parent's weight: a number or a fraction ("1/3"), shown as weightText shows it; committed when valid. */
function WeightField({ name, value, onCommit }: { name: string; value: number; onCommit: (w: number) => void }) {
  const [text, setText] = useState(weightText(value));
  useEffect(() => setText((t) => (weightOf(t) === value ? t : weightText(value))), [value]);
  const bad = Number.isNaN(weightOf(text));
  return (
    <label>
      <span title={name}>{name}</span>
      <input
        className={`input num ${bad ? 'bad' : ''}`}
        inputMode="decimal"
        value={text}
        style={fitWidth(text)}
        aria-label={`weight of ${name}`}
        title="A number or a fraction (1/3); a rule's weights must sum to 1"
        onChange={(e) => {
          setText(e.target.value);
          const w = weightOf(e.target.value);
          if (!Number.isNaN(w)) onCommit(w);
        }}
      />
    </label>
  );
}

/** A `layers` or `experts` field: typed freely, checked and committed when it loses focus. */
function IndexSetField({ label, value, onBad, onCommit }: { label: string; value: IndexSet | undefined; onBad: (m: string | null) => void; onCommit: (v: IndexSet | undefined) => void }) {
  const [text, setText] = useState(indexSetText(value));
  useEffect(() => setText(indexSetText(value)), [value]);
  return (
    <label>
      {label}
      <input
        className="input"
        value={text}
        placeholder="all"
        onChange={(e) => setText(e.target.value)}
        onBlur={() => {
          const p = parseIndexSet(text);
          if (!p.ok) return onBad(`${label}: write 5, 3-10, 1, 4, 9-12 or all`);
          onBad(null);
          onCommit(p.value);
        }}
      />
    </label>
  );
}
