// Center, second view: routing statistics (moe-studio.routing/1 files from the collector). Which
// experts a behaviour set selects more than a baseline, as a layers × experts heatmap and a ranked
// table with intervals; the top N or a selection becomes expert edits or removals in the recipe,
// each edit saying where it came from.
import { useCallback, useMemo, useRef, useState } from 'react';
import type { Edit } from '../../../engine/recipe/schema.ts';
import type { ExpertContrast, ExpertRate } from '../../../engine/routing/stats.ts';
import { routingEdits } from '../../../engine/routing/edits.ts';
import { applyEditList, removeExpertList } from '../../shared/recipe-tools.ts';
import { formatCount } from '../../shared/format.ts';
import { routingScale } from '../colors.ts';
import type { Grid } from '../heat-data.ts';
import { baseParent, notify, updateRecipe, useStudio } from '../store.ts';
import { loadStatsFiles, removeStatsFile, routingView, setKey, useRouting, type RoutingView } from '../routing-store.ts';
import { GridCanvas } from './GridCanvas.tsx';

/** Differences or Routing: the center's two views. */
export function ViewSwitch() {
  const view = useRouting((s) => s.view);
  return (
    <div className="seg" role="radiogroup" aria-label="View">
      {(['differences', 'routing'] as const).map((v) => (
        <button key={v} role="radio" aria-checked={view === v} className={view === v ? 'on' : ''} data-testid={`view-${v}`} onClick={() => useRouting.setState({ view: v })}>
          {v === 'differences' ? 'Differences' : 'Routing'}
        </button>
      ))}
    </div>
  );
}

const fixed = (x: number | undefined, d = 4) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '—');

const CONTRAST_LABEL = { rd: 'risk difference (rate in A − rate in B)', 'log-odds': 'log-odds ratio, lower end of its 95% interval' } as const;
const RATE_LABEL = { rate: 'selection rate (tokens that chose the expert / tokens)', saliency: 'saliency (REAP)', gate: 'mean routing weight when selected' } as const;

export function RoutingPanel() {
  const st = useRouting();
  useStudio((s) => s.parents);
  const base = baseParent(useStudio.getState());
  const inputRef = useRef<HTMLInputElement>(null);
  const view = useMemo(() => routingView(st), [st.files, st.a, st.b, st.contrastMetric, st.rateMetric, st.layersText]);
  const load = async (files: File[]) => {
    const errors = await loadStatsFiles(files, base?.summary, base?.name ?? '');
    for (const e of errors) notify('error', e);
  };
  const sets = st.files.flatMap((f) => f.file.sets.map((s) => ({ key: setKey(f.name, s.name), label: `${f.name} · ${s.name} (${formatCount(s.prompts)} prompts)` })));
  return (
    <section className="panel center-panel" aria-label="Routing statistics" data-testid="routing-panel">
      <div className="center-head">
        <ViewSwitch />
        <div className="head-tools">
          <input
            ref={inputRef}
            type="file"
            accept=".json,application/json"
            multiple
            hidden
            data-testid="routing-input"
            onChange={(e) => {
              const files = [...(e.target.files ?? [])];
              e.target.value = '';
              void load(files);
            }}
          />
          <button className="btn" onClick={() => inputRef.current?.click()} disabled={!base}>
            Load statistics…
          </button>
        </div>
      </div>
      {/* Statistics files dropped anywhere on the page land here (open-parents.ts tells them from models). */}
      <div className="heat-scroll">
        {!base ? (
          <p className="muted">Open the model the statistics were measured on first: files are checked against it.</p>
        ) : st.files.length === 0 ? (
          <Intro />
        ) : (
          <>
            <div className="routing-files" data-testid="routing-files">
              {st.files.map((f) => (
                <span key={f.name} className="chip">
                  {f.name} <span className="muted">{f.file.sets.length} set{f.file.sets.length === 1 ? '' : 's'}</span>
                  <button className="icon-btn" aria-label={`Remove ${f.name}`} onClick={() => removeStatsFile(f.name)}>
                    ×
                  </button>
                </span>
              ))}
            </div>
            <div className="routing-controls">
              <label>
                A (behaviour)
                <select className="input" value={st.a ?? ''} onChange={(e) => useRouting.setState({ a: e.target.value, selected: [] })} aria-label="Set A">
                  {sets.map((s) => (
                    <option key={s.key} value={s.key}>
                      {s.label}
                    </option>
                  ))}
                </select>
              </label>
              <label>
                B (baseline)
                <select className="input" value={st.b ?? ''} onChange={(e) => useRouting.setState({ b: e.target.value || null, selected: [] })} aria-label="Set B">
                  <option value="">none: A's own rates</option>
                  {sets.map((s) => (
                    <option key={s.key} value={s.key}>
                      {s.label}
                    </option>
                  ))}
                </select>
              </label>
              {view.kind === 'contrast' || (view.kind !== 'rates' && st.b) ? (
                <div className="seg" role="radiogroup" aria-label="Statistic">
                  {(['rd', 'log-odds'] as const).map((m) => (
                    <button key={m} role="radio" aria-checked={st.contrastMetric === m} className={st.contrastMetric === m ? 'on' : ''} title={CONTRAST_LABEL[m]} onClick={() => useRouting.setState({ contrastMetric: m })}>
                      {m === 'rd' ? 'Risk difference' : 'Log-odds'}
                    </button>
                  ))}
                </div>
              ) : (
                <div className="seg" role="radiogroup" aria-label="Statistic">
                  {(['rate', 'saliency', 'gate'] as const).map((m) => (
                    <button key={m} role="radio" aria-checked={st.rateMetric === m} className={st.rateMetric === m ? 'on' : ''} title={RATE_LABEL[m]} onClick={() => useRouting.setState({ rateMetric: m })}>
                      {m === 'rate' ? 'Rate' : m === 'saliency' ? 'Saliency' : 'Mean gate'}
                    </button>
                  ))}
                </div>
              )}
              <label>
                Layers
                <input className="input narrow" placeholder="all" value={st.layersText} onChange={(e) => useRouting.setState({ layersText: e.target.value })} aria-label="Layers" />
              </label>
              <label>
                Top
                <input
                  className="input narrow"
                  type="number"
                  min={1}
                  value={st.top}
                  onChange={(e) => useRouting.setState({ top: Math.max(1, Math.floor(Number(e.target.value) || 1)) })}
                  aria-label="Top N"
                />
              </label>
            </div>
            {view.kind === 'error' && <p className="err-text">{view.message}</p>}
            {(view.kind === 'contrast' || view.kind === 'rates') && <RoutingFigures view={view} />}
          </>
        )}
      </div>
    </section>
  );
}

function Intro() {
  return (
    <div className="routing-intro" data-testid="routing-intro">
      <h2>Which experts does a behaviour use?</h2>
      <p>
        Load routing statistics measured on this model: how often each expert was among the top-k for the tokens of a prompt set. Compare a
        behaviour set (refusals, a language, code) with a baseline set, and switch the experts it uses more off, on, mute them, or remove them.
      </p>
      <p className="muted">
        Files are <code>moe-studio.routing/1</code> JSON, written by <code>python scripts/collect_routing.py MODEL PROMPTS.jsonl --set NAME -o FILE</code> where the model
        runs. Drop them on the page or use “Load statistics…”.
      </p>
    </div>
  );
}

interface Hover {
  k: number;
  x: number;
  y: number;
}

function RoutingFigures({ view }: { view: Extract<RoutingView, { kind: 'contrast' | 'rates' }> }) {
  const top = useRouting((s) => s.top);
  const selected = useRouting((s) => s.selected);
  const scale = useMemo(() => routingScale(view.values, view.kind === 'contrast'), [view]);
  const grid = useMemo<Grid>(() => {
    const cells = new Int32Array(view.layers.length * view.experts);
    for (let k = 0; k < cells.length; k++) cells[k] = k;
    return { rows: view.layers.length, cols: view.experts, cells, rowLabels: view.layers };
  }, [view.layers, view.experts]);
  const paint = useCallback((k: number, out: Uint8ClampedArray, at: number) => scale.rgb(view.values[k]!, out, at), [scale, view]);
  const selCells = useMemo(() => {
    const m = new Uint8Array(grid.cells.length);
    const row = new Map(view.layers.map((l, r) => [l, r]));
    for (const key of selected) {
      const [l, e] = key.split(':').map(Number);
      const r = row.get(l!);
      if (r !== undefined && e! < view.experts) m[r * view.experts + e!] = 1;
    }
    return m;
  }, [selected, grid, view]);
  const [hover, setHover] = useState<Hover | null>(null);
  const ranked = view.ranked.slice(0, top);
  const label = view.kind === 'contrast' ? CONTRAST_LABEL[view.metric] : RATE_LABEL[view.metric];
  return (
    <>
      <div className="legend" aria-label="Colour scale">
        <span className="legend-title">{label}</span>
        <div className="legend-bar">
          <div className="legend-grad" style={{ background: scale.gradient }} />
          <div className="legend-ticks">
            {[0, 0.5, 1].map((t) => (
              <span key={t} style={{ left: `${t * 100}%` }}>
                {fixed(scale.lo + t * (scale.hi - scale.lo), 3)}
              </span>
            ))}
          </div>
        </div>
      </div>
      <div className="heat-section-title">
        <h3>{view.label}</h3>
        <span className="muted">rows: MoE layers · columns: experts · drag to select cells (shift adds)</span>
      </div>
      <GridCanvas
        grid={grid}
        paint={paint}
        version={`${view.label}:${view.metric}`}
        selCells={selCells}
        maxCell={36}
        minCellH={4}
        ariaLabel={`Routing ${label}: ${grid.rows} layers by ${grid.cols} experts`}
        testId="routing-heatmap"
        onHover={(k, _c, x, y) => setHover(k === null ? null : { k, x, y })}
        onSelect={(rect, add) => {
          const keys: string[] = [];
          for (let r = rect.r0; r <= rect.r1; r++) for (let c = rect.c0; c <= rect.c1; c++) keys.push(`${view.layers[r]}:${c}`);
          useRouting.setState((s) => ({ selected: add ? [...new Set([...s.selected, ...keys])] : keys }));
        }}
      />
      {hover && <RoutingTooltip view={view} hover={hover} />}
      <RoutingActions view={view} ranked={ranked} />
      <RankedTable view={view} ranked={ranked} />
    </>
  );
}

function figureText(view: Extract<RoutingView, { kind: 'contrast' | 'rates' }>, x: ExpertContrast | ExpertRate): string {
  if (view.kind === 'contrast') {
    const c = x as ExpertContrast;
    return view.metric === 'rd' ? `rd ${fixed(c.rd)}` : `log-odds ${fixed(c.logOdds, 3)} [${fixed(c.low, 3)}, ${fixed(c.high, 3)}]`;
  }
  const r = x as ExpertRate;
  return view.metric === 'rate' ? `rate ${fixed(r.rate)}` : view.metric === 'saliency' ? `saliency ${fixed(r.saliency)}` : `mean gate ${fixed(r.meanGate)}`;
}

function RoutingTooltip({ view, hover }: { view: Extract<RoutingView, { kind: 'contrast' | 'rates' }>; hover: Hover }) {
  const x = view.cells[hover.k]!;
  const left = Math.min(hover.x + 14, window.innerWidth - 340);
  const top = Math.min(hover.y + 14, window.innerHeight - 160);
  return (
    <div className="tooltip" style={{ left, top }} role="tooltip" data-testid="routing-tooltip">
      <div className="tt-name">
        layer {x.layer} · expert {x.expert}
      </div>
      <table>
        <tbody>
          {view.kind === 'contrast' ? (
            <>
              <tr>
                <td>A</td>
                <td className="mono">
                  {(x as ExpertContrast).a.selected}/{(x as ExpertContrast).a.tokens} = {fixed((x as ExpertContrast).a.rate)}
                </td>
              </tr>
              <tr>
                <td>B</td>
                <td className="mono">
                  {(x as ExpertContrast).b.selected}/{(x as ExpertContrast).b.tokens} = {fixed((x as ExpertContrast).b.rate)}
                </td>
              </tr>
              <tr>
                <td>rd</td>
                <td className="mono">{fixed((x as ExpertContrast).rd)}</td>
              </tr>
              <tr>
                <td>log-odds</td>
                <td className="mono">
                  {fixed((x as ExpertContrast).logOdds, 3)} [{fixed((x as ExpertContrast).low, 3)}, {fixed((x as ExpertContrast).high, 3)}]
                </td>
              </tr>
            </>
          ) : (
            <>
              <tr>
                <td>selected</td>
                <td className="mono">
                  {(x as ExpertRate).selected}/{(x as ExpertRate).tokens} = {fixed((x as ExpertRate).rate)}
                </td>
              </tr>
              <tr>
                <td>mean gate</td>
                <td className="mono">{fixed((x as ExpertRate).meanGate)}</td>
              </tr>
              <tr>
                <td>saliency</td>
                <td className="mono">{fixed((x as ExpertRate).saliency)}</td>
              </tr>
            </>
          )}
        </tbody>
      </table>
    </div>
  );
}

function RoutingActions({ view, ranked }: { view: Extract<RoutingView, { kind: 'contrast' | 'rates' }>; ranked: (ExpertContrast | ExpertRate)[] }) {
  const selected = useRouting((s) => s.selected);
  useStudio((s) => s.parents);
  const base = baseParent(useStudio.getState());
  const verdict = (a: string) => base?.summary.edits.find((e) => e.action === a);
  const byKey = useMemo(() => new Map(view.cells.map((c) => [`${c.layer}:${c.expert}`, c])), [view]);
  const picked = selected.map((k) => byKey.get(k)).filter((c): c is ExpertContrast | ExpertRate => !!c);
  const source = `routing ${view.label}`;
  const edits = (list: (ExpertContrast | ExpertRate)[], action: Edit['action']) =>
    routingEdits(list.map((c) => ({ layer: c.layer, expert: c.expert, figure: figureText(view, c) })), list.length, action, source);
  const row = (what: string, list: (ExpertContrast | ExpertRate)[], testid: string) => (
    <div className="row" data-testid={testid}>
      <span>{what}</span>
      {(['off', 'on', 'mute'] as const).map((action) => {
        const v = verdict(action);
        return (
          <button
            key={action}
            className="btn small"
            disabled={list.length === 0 || (v !== undefined && !v.available)}
            title={v?.why}
            onClick={() => {
              updateRecipe((r) => applyEditList(r, edits(list, action)));
              notify('info', `${list.length} edit${list.length === 1 ? '' : 's'} (${action}) added to the recipe from ${source}.`);
            }}
          >
            {action === 'off' ? 'Switch off' : action === 'on' ? 'Force on' : 'Mute'}
          </button>
        );
      })}
      <button
        className="btn small"
        disabled={list.length === 0}
        title="Prune: the experts leave every expert tensor, router row and bias; later experts move down"
        onClick={() => {
          updateRecipe((r) => removeExpertList(r, list));
          notify('info', `${list.length} expert${list.length === 1 ? '' : 's'} set to be removed, from ${source}.`);
        }}
      >
        Remove
      </button>
    </div>
  );
  const off = verdict('off');
  const on = verdict('on');
  return (
    <div className="routing-actions">
      {row(`Top ${ranked.length}`, ranked, 'routing-top-actions')}
      {row(`Selection (${picked.length})`, picked, 'routing-selection-actions')}
      {((off && !off.available) || (on && !on.available)) && (
        <p className="muted small">
          {off && !off.available ? `Off: ${off.why}. ` : ''}
          {on && !on.available ? `On: ${on.why}.` : ''}
        </p>
      )}
    </div>
  );
}

function RankedTable({ view, ranked }: { view: Extract<RoutingView, { kind: 'contrast' | 'rates' }>; ranked: (ExpertContrast | ExpertRate)[] }) {
  const selected = useRouting((s) => s.selected);
  const toggle = (k: string) => useRouting.setState((s) => ({ selected: s.selected.includes(k) ? s.selected.filter((x) => x !== k) : [...s.selected, k] }));
  return (
    <div className="routing-table-wrap">
    <table className="routing-table" data-testid="routing-table">
      <thead>
        {view.kind === 'contrast' ? (
          <tr>
            <th>#</th>
            <th>layer</th>
            <th>expert</th>
            <th>A selected</th>
            <th>B selected</th>
            <th>rate A</th>
            <th>rate B</th>
            <th>rd</th>
            <th>log-odds</th>
            <th>95% interval</th>
          </tr>
        ) : (
          <tr>
            <th>#</th>
            <th>layer</th>
            <th>expert</th>
            <th>selected</th>
            <th>rate</th>
            <th>mean gate</th>
            <th>saliency</th>
          </tr>
        )}
      </thead>
      <tbody>
        {ranked.map((x, i) => {
          const k = `${x.layer}:${x.expert}`;
          const c = x as ExpertContrast;
          const r = x as ExpertRate;
          return (
            <tr key={k} className={selected.includes(k) ? 'sel' : ''} onClick={() => toggle(k)} data-testid="routing-row">
              <td>{i + 1}</td>
              <td>{x.layer}</td>
              <td>{x.expert}</td>
              {view.kind === 'contrast' ? (
                <>
                  <td className="mono">
                    {c.a.selected}/{c.a.tokens}
                  </td>
                  <td className="mono">
                    {c.b.selected}/{c.b.tokens}
                  </td>
                  <td className="mono">{fixed(c.a.rate)}</td>
                  <td className="mono">{fixed(c.b.rate)}</td>
                  <td className="mono">{fixed(c.rd)}</td>
                  <td className="mono">{fixed(c.logOdds, 3)}</td>
                  <td className="mono">
                    [{fixed(c.low, 3)}, {fixed(c.high, 3)}]
                  </td>
                </>
              ) : (
                <>
                  <td className="mono">
                    {r.selected}/{r.tokens}
                  </td>
                  <td className="mono">{fixed(r.rate)}</td>
                  <td className="mono">{fixed(r.meanGate)}</td>
                  <td className="mono">{fixed(r.saliency)}</td>
                </>
              )}
            </tr>
          );
        })}
      </tbody>
    </table>
    </div>
  );
}
