// Center: how far each other parent is from the base, tensor by tensor.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { PROJECTIONS, TENSOR_KINDS, type Projection } from '../../../engine/model/types.ts';
import { DIFF_METRICS, type DiffMetric, type PlanSummary, type TensorIndex } from '../../shared/studio-api.ts';
import { formatCount, formatDuration, formatFigure } from '../../shared/format.ts';
import { ASSEMBLED_RGB, fitScale, gradientCss, HATCH_CSS, IDENTICAL_RGB, METRIC_HELP, METRIC_LABEL, MISSING_RGB, ZERO_RGB, blend, type Rgb, type Scale } from '../colors.ts';
import { BADGE, BADGE_HELP, cellDecision, childPainter, type CellDecision } from '../child-map.ts';
import type { ExpertSelection } from '../../shared/recipe-tools.ts';
import { heatLayout, itemWhere, KIND_LABEL, KIND_SHORT, type Grid } from '../heat-data.ts';
import { FIT, GridCanvas as GridCanvasMemo, type CellRect, type GridView } from './GridCanvas.tsx';
import { ViewSwitch } from './RoutingPanel.tsx';
import { hasDirectoryPicker, pickParentFolder } from '../open-parents.ts';
import { baseParent, cancelDiff, metricArray, runDiff, thresholdView, useStudio, type DiffData } from '../store.ts';

const PROJ_LABEL: Record<Projection, string> = { gate: 'gate projection', up: 'up projection', down: 'down projection' };

export function HeatmapPanel() {
  const parents = useStudio((s) => s.parents);
  const index = useStudio((s) => s.index);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  const viewOther = useStudio((s) => s.viewOther);
  const diffs = useStudio((s) => s.diffs);
  const metric = useStudio((s) => s.metric);
  const status = useStudio((s) => s.status);
  const others = parents.filter((p) => p.id !== base?.id);
  const other = others.find((p) => p.id === viewOther) ?? others[0];
  const diff = other ? diffs[other.id] : undefined;

  if (!base || !index) {
    return (
      <section className="panel center-panel" aria-label="Differences">
        <div className="empty-center">
          <h2>Look before merging</h2>
          <p>
            Open two to eight parents that share one skeleton, such as a base model and its instruct or reasoning sibling. Every tensor of each other
            parent is compared with the base and drawn here.
          </p>
          <div className="drop-zone" data-testid="drop-zone">
            <div className="big">Drop model folders here</div>
            {hasDirectoryPicker ? (
              <button className="btn primary" onClick={() => void pickParentFolder()}>
                Open model folder…
              </button>
            ) : (
              <div>Or use “Choose model folder…” on the left.</div>
            )}
            <div className="small" style={{ marginTop: 10 }}>
              A folder with config.json and *.safetensors (sharded or not). Files are read in place: nothing is uploaded or copied.
            </div>
          </div>
          <div className="steps">
            <div>
              <b>1 · Look</b>
              Heatmaps of layers × experts for the gate, up and down projections, plus attention, norms, routers and shared experts, coloured by how
              far each parent is from the base.
            </div>
            <div>
              <b>2 · Build</b>
              Presets for MEA expert swaps, AoE “Chimera” and N-parent mixes; rules from heatmap selections; expert edits; a threshold.
            </div>
            <div>
              <b>3 · Merge</b>
              Streamed shard by shard into a folder you choose, with progress and cancel. The recipe is the same YAML the CLI runs.
            </div>
          </div>
        </div>
      </section>
    );
  }

  return (
    <section className="panel center-panel" aria-label="Differences">
      <div className="center-head">
        <ViewSwitch />
        <div className="tabs" role="tablist" aria-label="Parent compared with the base">
          {others.length === 0 && <span className="muted">Open another parent to compare it with the base “{base.name}”.</span>}
          {others.map((p) => {
            const d = diffs[p.id];
            return (
              <button
                key={p.id}
                role="tab"
                aria-selected={p.id === other?.id}
                className={`tab ${p.id === other?.id ? 'active' : ''}`}
                onClick={() => useStudio.setState({ viewOther: p.id })}
              >
                {p.name} <span className="vs">vs</span> {base.name}
                <DiffBadge d={d} />
              </button>
            );
          })}
        </div>
        <div className="head-tools">
          <div className="seg" role="radiogroup" aria-label="Metric">
            {DIFF_METRICS.map((m) => (
              <button key={m} role="radio" aria-checked={m === metric} className={m === metric ? 'on' : ''} title={METRIC_HELP[m]} onClick={() => useStudio.setState({ metric: m })}>
                {m === 'rms_diff' ? 'RMS' : m === 'rel_diff' ? 'Relative' : 'Cosine'}
              </button>
            ))}
          </div>
        </div>
      </div>
      {other && <DiffControls otherId={other.id} diff={diff} kernels={status?.kernels ?? 'starting'} />}
      {other && diff ? (
        <Heatmaps index={index} diff={diff} metric={metric} experts={base.summary.experts} />
      ) : (
        <Structure index={index} experts={base.summary.experts} metric={metric} />
      )}
    </section>
  );
}

function DiffBadge({ d }: { d: DiffData | undefined }) {
  if (!d) return null;
  if (d.running) return <span className="badge run">{d.total ? Math.floor((100 * d.done) / d.total) : 0}%</span>;
  if (d.error) return <span className="badge err">error</span>;
  if (d.mode === 'exact' && d.complete) return <span className="badge ok">exact</span>;
  if (d.have > 0) return <span className="badge est">estimate</span>;
  return null;
}

function DiffControls({ otherId, diff, kernels }: { otherId: string; diff: DiffData | undefined; kernels: string }) {
  const running = diff?.running;
  const pct = diff && diff.total ? (100 * diff.done) / diff.total : 0;
  const eta = diff && diff.done > 0 && diff.total > diff.done ? (diff.elapsedMs * (diff.total - diff.done)) / diff.done : NaN;
  return (
    <div className="diff-controls">
      <button className="btn" disabled={running || kernels !== 'ready'} onClick={() => void runDiff(otherId, 'sampled')} title="Reads a few rows of every tensor: seconds, not minutes. Figures are estimates.">
        Sampled estimate
      </button>
      <button className="btn" disabled={running || kernels !== 'ready'} onClick={() => void runDiff(otherId, 'exact')} title="Reads every byte of both parents.">
        Exact pass
      </button>
      {running && (
        <>
          <div className="progress small" aria-label="Comparison progress">
            <div style={{ width: `${pct}%` }} />
          </div>
          <span className="muted mono">
            {diff?.mode === 'exact' ? 'exact' : 'sampled'}{' '}
            {diff?.total ? `${formatCount(diff.done)} / ${formatCount(diff.total)} tensors` : 'starting…'}
            {Number.isFinite(eta) ? ` · ${formatDuration(eta)} left` : ''}
          </span>
          <button className="btn ghost" onClick={() => cancelDiff(otherId)}>
            Cancel
          </button>
        </>
      )}
      {!running && diff && (
        <span className="muted">
          {diff.error ? (
            <span className="err-text">Comparison failed: {diff.error}</span>
          ) : diff.mode === 'exact' && diff.complete ? (
            <span data-testid="exact-note">
              Exact figures for {formatCount(diff.have)} tensors ({formatDuration(diff.elapsedMs)})
              {diff.keptFrom ? `, kept from ${new Date(diff.keptFrom).toLocaleString()}: the parents' shards and headers are unchanged` : ''}.
            </span>
          ) : diff.have > 0 ? (
            <>
              <b className="est-text">Estimate</b> from sampled rows for {formatCount(diff.have)} tensors{diff.complete ? '' : ' (stopped early)'}; run the exact pass for exact figures.
            </>
          ) : (
            'No figures yet.'
          )}
        </span>
      )}
      {kernels !== 'ready' && <span className="err-text">Kernels {kernels}: comparisons need them.</span>}
    </div>
  );
}

interface HoverInfo {
  i: number;
  x: number;
  y: number;
}

type ProjView = 'all' | Projection;
type Colouring = 'difference' | 'child';

function Heatmaps({ index, diff, metric, experts }: { index: TensorIndex; diff: DiffData; metric: DiffMetric; experts: number }) {
  const layout = heatLayout(index, experts);
  const version = useStudio((s) => s.diffVersion);
  const overlay = useStudio((s) => s.overlay);
  const selection = useStudio((s) => s.selection);
  const recipe = useStudio((s) => s.recipe);
  const threshold = recipe.threshold;
  const plan = useStudio((s) => s.plan);
  const parentsList = useStudio((s) => s.parents);
  const allDiffs = useStudio((s) => s.diffs);
  const tv = useMemo(
    () => (threshold ? thresholdView(useStudio.getState(), threshold.below) : null),
    [threshold, plan, parentsList, allDiffs, version, index],
  );
  const keep = overlay && tv ? tv.keep : null;
  const [colouring, setColouring] = useState<Colouring>('difference');
  const [projView, setProjView] = useState<ProjView>('all');
  const [view, setView] = useState<GridView>(FIT);
  const [picked, setPicked] = useState<number | null>(null);
  const values = metricArray(diff, metric);
  // The colour scale is refitted at most twice a second while figures stream in.
  const fitVersion = useThrottled(version, diff.running ? 500 : 0);
  const scale = useMemo(() => fitScale(metric, values), [metric, values, fitVersion, diff.running]);
  const diffPaint = useCallback((i: number, out: Uint8ClampedArray, at: number) => scale.rgb(values[i]!, out, at), [scale, values]);
  // The child map follows the plan: with no plan (an invalid recipe), the differences stay.
  const child = useMemo(() => (plan && plan.childMap.how.length === index.names.length ? childPainter(plan, recipe, index) : null), [plan, recipe, index]);
  const showChild = colouring === 'child' && child !== null;
  const paint = showChild ? child.paint : diffPaint;
  const paintVersion = showChild ? `child:${plan ? plan.tensors : 0}:${recipe.edits.length}` : `${version}:${metric}:${scale.lo}:${scale.hi}`;
  const [hover, setHover] = useState<HoverInfo | null>(null);
  const onHover = useCallback((i: number | null, _c: unknown, x: number, y: number) => setHover(i === null ? null : { i, x, y }), []);
  const scrollRef = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(800);
  useEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const shown = PROJECTIONS.filter((p) => layout.experts[p] && (projView === 'all' || projView === p));
  const maxCols = Math.max(...PROJECTIONS.map((p) => layout.experts[p]?.cols ?? 0));
  // Projections side by side when each still gets cells of 10 px or more; stacked otherwise.
  const side = shown.length > 1 && (width - 28 - 2 * 16) / shown.length - 30 >= maxCols * 10;
  const decision = picked !== null && plan && picked < plan.childMap.how.length ? cellDecision(picked, plan, recipe, index, !!tv?.keep[picked]) : null;

  return (
    <div className="heat-scroll" data-testid="heatmaps" ref={scrollRef}>
      <div className="heat-toolbar">
        <div className="seg" role="radiogroup" aria-label="Colour cells by">
          {(['difference', 'child'] as const).map((c) => (
            <button
              key={c}
              role="radio"
              aria-checked={colouring === c}
              className={colouring === c ? 'on' : ''}
              data-testid={`colour-${c}`}
              disabled={c === 'child' && !child}
              title={c === 'child' ? (child ? 'Where each cell of the child comes from, under the current recipe' : 'The recipe has no plan yet') : 'How far the compared parent is from the base'}
              onClick={() => setColouring(c)}
            >
              {c === 'difference' ? 'Difference' : 'Child map'}
            </button>
          ))}
        </div>
        {showChild ? <ChildLegend plan={plan!} colors={child.colors} keptCount={keep ? (tv?.kept ?? 0) : null} /> : <Legend scale={scale} metric={metric} keptCount={keep ? (tv?.kept ?? 0) : null} />}
      </div>
      <div className="heat-section-title">
        <h3>Routed experts</h3>
        <span className="muted">
          rows: MoE layers · columns: experts · drag to select, shift adds a rectangle · ctrl+wheel zooms · {formatCount(layout.routedCount)} tensors
        </span>
        <span className="grow" />
        <div className="seg" role="radiogroup" aria-label="Projections shown">
          {(['all', ...PROJECTIONS.filter((p) => layout.experts[p])] as ProjView[]).map((p) => (
            <button key={p} role="radio" aria-checked={projView === p} className={projView === p ? 'on' : ''} data-testid={`proj-${p}`} onClick={() => setProjView(p)}>
              {p === 'all' ? 'All' : p}
            </button>
          ))}
        </div>
        <div className="zoom-tools" role="group" aria-label="Zoom">
          <button className="btn small" aria-label="Zoom out" data-testid="zoom-out" disabled={view.zoom <= 1} onClick={() => setView((v) => ({ zoom: Math.max(1, v.zoom / 2), left: v.left }))}>
            −
          </button>
          <span className="mono small" data-testid="zoom-level">
            {view.zoom <= 1 ? 'fit' : `${Math.round(view.zoom * 10) / 10}×`}
          </span>
          <button className="btn small" aria-label="Zoom in" data-testid="zoom-in" onClick={() => setView((v) => ({ zoom: v.zoom * 2, left: v.left }))}>
            +
          </button>
          <button className="btn small" data-testid="zoom-fit" disabled={view.zoom <= 1} onClick={() => setView(FIT)}>
            Fit
          </button>
        </div>
      </div>
      <div className={`proj-row ${side ? 'side' : ''}`}>
        {shown.map((p) => {
          const g = layout.experts[p]!;
          const rects = selection.proj.includes(p) ? selectionRects(g, selection) : NO_RECTS;
          return (
            <div className="heat-block" key={p}>
              <div className="heat-label">
                {PROJ_LABEL[p]}
                {g.fused ? <span className="muted"> · stored fused: one tensor per layer for all experts</span> : null}
              </div>
              <GridCanvasMemo
                grid={g}
                paint={paint}
                version={paintVersion}
                hatch={keep}
                badge={showChild ? child.badge : null}
                selRects={rects}
                maxCell={side || shown.length === 1 ? 30 : 22}
                minCellH={4}
                view={view}
                onView={setView}
                onHover={onHover}
                onPick={(i) => setPicked(i)}
                ariaLabel={`Routed experts, ${p} projection: ${g.rows} layers by ${g.cols} experts`}
                testId={`heatmap-${p}`}
                onSelect={(rect, add) => selectCells(g, p, rect, add)}
              />
            </div>
          );
        })}
      </div>
      {showChild && plan!.childMap.added.length > 0 && (
        <div className="muted small added-list" data-testid="added-experts">
          Added experts (after the last column): {plan!.childMap.added.map((a) => `layer ${a.layer} ← ${a.text}`).join('; ')}
        </div>
      )}
      {decision && <CellInspector d={decision} onClose={() => setPicked(null)} />}
      {layout.strip && <Strip grid={layout.strip} paint={paint} version={paintVersion} keep={keep} onHover={onHover} onPick={setPicked} />}
      <TensorTable index={index} diff={diff} metric={metric} scale={scale} keep={keep} globals={layout.globals} />
      {hover && <Tooltip hover={hover} index={index} diff={diff} keep={keep} />}
    </div>
  );
}

const NO_RECTS: CellRect[] = [];

/** The selection's rectangles on one projection's grid (layers that grid lacks are left out). */
function selectionRects(g: Grid, sel: ExpertSelection): CellRect[] {
  const rowOf = new Map(g.rowLabels.map((l, r) => [l, r]));
  const out: CellRect[] = [];
  for (const rect of sel.rects) {
    const rows = rect.layers.map((l) => rowOf.get(l)).filter((r): r is number => r !== undefined);
    if (rows.length === 0) continue;
    const c0 = rect.experts.length ? Math.min(...rect.experts) : 0;
    const c1 = rect.experts.length ? Math.max(...rect.experts) : g.cols - 1;
    out.push({ r0: Math.min(...rows), r1: Math.max(...rows), c0, c1: Math.min(c1, g.cols - 1) });
  }
  return out;
}

/** What decides the clicked cell: the rule, edit, slot change and threshold, in words. */
function CellInspector({ d, onClose }: { d: CellDecision; onClose: () => void }) {
  return (
    <div className="cell-inspector" data-testid="cell-decision" role="status">
      <div className="row">
        <b className="mono">{d.name}</b>
        <span className="muted small">{d.where}</span>
        <span className="grow" />
        <button className="icon-btn" aria-label="Close cell details" onClick={onClose}>
          ×
        </button>
      </div>
      <div>
        In the child: <b>{d.made}</b>
      </div>
      <div className="muted">Decided by {d.decidedBy}</div>
      {d.notes.map((n) => (
        <div key={n} className="small">
          {n}
        </div>
      ))}
    </div>
  );
}

function selectCells(g: Grid, p: Projection, rect: CellRect, add: boolean): void {
  const layers = g.rowLabels.slice(rect.r0, rect.r1 + 1);
  const experts: number[] = [];
  if (!g.fused) for (let c = rect.c0; c <= rect.c1; c++) experts.push(c);
  useStudio.setState((s) => {
    if (!add) return { selection: { rects: [{ layers, experts }], proj: [p] } };
    return {
      selection: {
        rects: [...s.selection.rects, { layers, experts }],
        proj: PROJECTIONS.filter((x) => x === p || s.selection.proj.includes(x)),
      },
    };
  });
}

function Strip({
  grid,
  paint,
  version,
  keep,
  onHover,
  onPick,
}: {
  grid: Grid;
  paint: (i: number, o: Uint8ClampedArray, a: number) => void;
  version: string;
  keep: Uint8Array | null;
  onHover: (i: number | null, c: unknown, x: number, y: number) => void;
  onPick: (i: number) => void;
}) {
  const groups = useMemo(() => {
    const out: { label: string; short: string; from: number; to: number }[] = [];
    grid.colKinds!.forEach((k, c) => {
      const last = out[out.length - 1];
      if (last && last.label === KIND_LABEL[k]) last.to = c;
      else out.push({ label: KIND_LABEL[k], short: KIND_SHORT[k], from: c, to: c });
    });
    return out;
  }, [grid]);
  return (
    <div className="heat-block">
      <div className="heat-section-title">
        <h3>Per layer</h3>
        <span className="muted">attention, norms, router, shared experts, dense MLP · rows: layers · columns: tensors of a layer (hover for names)</span>
      </div>
      <GridCanvasMemo
        grid={grid}
        paint={paint}
        version={version}
        hatch={keep}
        zoomable={false}
        onPick={(i) => onPick(i)}
        maxCell={40}
        minCellH={5}
        maxCellH={grid.rows > 24 ? 8 : 18}
        colTitle={(c) => grid.colLabels![c]!}
        colGroups={groups}
        onHover={onHover}
        ariaLabel={`Per-layer tensors: ${grid.rows} layers by ${grid.cols} tensors`}
        testId="heatmap-layers"
      />
    </div>
  );
}

function Legend({ scale, metric, keptCount }: { scale: Scale; metric: DiffMetric; keptCount: number | null }) {
  const ticks = [0, 0.5, 1];
  return (
    <div className="legend" aria-label="Colour scale">
      <span className="legend-title" title={METRIC_HELP[metric]}>
        {METRIC_LABEL[metric]} {scale.log ? '(log scale)' : ''}
      </span>
      <div className="legend-bar">
        <div className="legend-grad" style={{ background: gradientCss() }} />
        <div className="legend-ticks">
          {ticks.map((t) => (
            <span key={t} style={{ left: `${t * 100}%` }}>
              {formatFigure(scale.valueAt(t))}
            </span>
          ))}
        </div>
      </div>
      <span className="legend-item">
        <span className="swatch" style={{ background: `rgb(${IDENTICAL_RGB.join(',')})` }} /> identical
      </span>
      <span className="legend-item">
        <span className="swatch" style={{ background: `rgb(${MISSING_RGB.join(',')})`, outline: '1px solid #3a4050' }} /> no figure
      </span>
      {keptCount !== null && (
        <span className="legend-item">
          <span className="swatch" style={{ background: HATCH_CSS }} /> kept by threshold ({formatCount(keptCount)})
        </span>
      )}
    </div>
  );
}

function ChildLegend({ plan, colors, keptCount }: { plan: PlanSummary; colors: Rgb[]; keptCount: number | null }) {
  const css = (c: Rgb) => `rgb(${c.join(',')})`;
  const others = plan.parents.filter((p) => p !== plan.base);
  return (
    <div className="legend" aria-label="Child map colours" data-testid="child-legend">
      <span className="legend-title">Child map</span>
      {plan.parents.map((p, k) => (
        <span className="legend-item" key={p}>
          <span className="swatch" style={{ background: css(colors[k]!) }} /> from {p}
          {p === plan.base ? ' (base)' : ''}
        </span>
      ))}
      {others.length > 0 && (
        <span className="legend-item" title="A mix is drawn in the parents' colours blended by its weights">
          <span className="swatch" style={{ background: css(blend(colors, plan.parents.map((p) => (p === plan.base || p === others[0] ? 1 : 0)))) }} /> mixed (blend)
        </span>
      )}
      <span className="legend-item">
        <span className="swatch" style={{ background: css(ZERO_RGB), outline: '1px solid #3a4050' }} /> zeros
      </span>
      <span className="legend-item">
        <span className="swatch" style={{ background: css(ASSEMBLED_RGB) }} /> assembled
      </span>
      <span className="legend-item" title={Object.entries(BADGE).map(([k, b]) => `${b} ${BADGE_HELP[k as keyof typeof BADGE]}`).join(' · ')}>
        {Object.entries(BADGE).map(([k, b]) => `${b} ${k}`).join(' · ')}
      </span>
      {keptCount !== null && (
        <span className="legend-item">
          <span className="swatch" style={{ background: HATCH_CSS }} /> kept by threshold ({formatCount(keptCount)})
        </span>
      )}
    </div>
  );
}

function Tooltip({ hover, index, diff, keep }: { hover: HoverInfo; index: TensorIndex; diff: DiffData; keep: Uint8Array | null }) {
  const i = hover.i;
  const has = Number.isFinite(diff.rms[i]!);
  const left = Math.min(hover.x + 14, window.innerWidth - 380);
  const top = Math.min(hover.y + 14, window.innerHeight - 140);
  return (
    <div className="tooltip" style={{ left, top }} role="tooltip" data-testid="heat-tooltip">
      <div className="mono tt-name">{index.names[i]}</div>
      <div className="muted">{itemWhere(index, i)}</div>
      <div className="muted mono" data-testid="tt-shape">
        {index.shapes[i]} · {index.formats[index.format[i]!]}
      </div>
      {has ? (
        <table>
          <tbody>
            <tr>
              <td>rms_diff</td>
              <td className="mono">{formatFigure(diff.rms[i]!)}</td>
            </tr>
            <tr>
              <td>rel_diff</td>
              <td className="mono">{formatFigure(diff.rel[i]!)}</td>
            </tr>
            <tr>
              <td>cosine</td>
              <td className="mono">{Number.isFinite(diff.cos[i]!) ? diff.cos[i]!.toFixed(6) : '—'}</td>
            </tr>
          </tbody>
        </table>
      ) : (
        <div className="muted">no figure yet</div>
      )}
      {has && diff.sampled[i] ? <div className="est-text">estimate from sampled rows</div> : null}
      {keep?.[i] ? <div className="kept-text">the threshold keeps this tensor from the base</div> : null}
    </div>
  );
}

/** The base's layout before any figures: every cell drawn as "no figure yet". */
function Structure({ index, experts, metric }: { index: TensorIndex; experts: number; metric: DiffMetric }) {
  const empty = useMemo(() => {
    const n = index.names.length;
    const nan = new Float32Array(n).fill(NaN);
    const d: DiffData = { other: '', rms: nan, rel: nan, cos: nan, sampled: new Uint8Array(n), have: 0, mode: null, running: false, done: 0, total: 0, elapsedMs: 0, complete: false };
    return d;
  }, [index]);
  return <Heatmaps index={index} diff={empty} metric={metric} experts={experts} />;
}

function TensorTable({ index, diff, metric, scale, keep, globals }: { index: TensorIndex; diff: DiffData; metric: DiffMetric; scale: Scale; keep: Uint8Array | null; globals: number[] }) {
  const [filter, setFilter] = useState('');
  const [sortBy, setSortBy] = useState<'metric' | 'name'>('metric');
  // Sorting ~92,000 rows costs tens of milliseconds: while figures stream in, at most once a second.
  const version = useThrottled(useStudio((s) => s.diffVersion), diff.running ? 1000 : 0);
  // Keyed on the figure arrays (filled in place as batches arrive) and the throttled version, not
  // on `diff`, a new object every frame: the sort runs at most once a second during a pass.
  const values = metricArray(diff, metric);
  const rows = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const list: number[] = [];
    for (let i = 0; i < index.names.length; i++) if (!f || index.names[i]!.toLowerCase().includes(f)) list.push(i);
    if (sortBy !== 'metric') return list;
    // Largest difference first, no figure last; keys computed once, compared as plain numbers.
    const keys = new Float64Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const x = values[i]!;
      keys[i] = !Number.isFinite(x) ? -Infinity : metric === 'cosine' ? 1 - x : x;
    }
    return Int32Array.from(list).sort((a, b) => keys[b]! - keys[a]! || a - b);
  }, [filter, sortBy, index, values, metric, version]);
  const scrollRef = useRef<HTMLDivElement>(null);
  const virt = useVirtualizer({ count: rows.length, getScrollElement: () => scrollRef.current, estimateSize: () => 22, overscan: 20 });
  const swatch = new Uint8ClampedArray(4);
  return (
    <div className="heat-block">
      <div className="heat-section-title">
        <h3>All tensors</h3>
        <span className="muted">{formatCount(rows.length)} shown · {globals.length} outside the layers (embeddings, head, final norm)</span>
        <span className="grow" />
        <input className="input" placeholder="Filter by name…" value={filter} onChange={(e) => setFilter(e.target.value)} aria-label="Filter tensors" />
        <select className="input" value={sortBy} onChange={(e) => setSortBy(e.target.value as 'metric' | 'name')} aria-label="Sort tensors">
          <option value="metric">largest difference first</option>
          <option value="name">file order</option>
        </select>
      </div>
      <div className="ttable" ref={scrollRef} data-testid="tensor-table">
        <div className="trow thead">
          <span>tensor</span>
          <span>shape · format</span>
          <span>kind</span>
          <span>rms_diff</span>
          <span>rel_diff</span>
          <span>cosine</span>
        </div>
        <div style={{ height: virt.getTotalSize(), position: 'relative' }}>
          {virt.getVirtualItems().map((v) => {
            const i = rows[v.index]!;
            scale.rgb(values[i]!, swatch, 0);
            return (
              <div key={v.key} className={`trow ${keep?.[i] ? 'kept' : ''}`} style={{ position: 'absolute', top: 0, left: 0, right: 0, transform: `translateY(${v.start}px)` }}>
                <span className="mono name" title={index.names[i]}>
                  <i className="dot" style={{ background: `rgb(${swatch[0]},${swatch[1]},${swatch[2]})` }} />
                  {displayName(index.names[i]!, index.layer[i]!)}
                </span>
                <span className="mono small muted" title={index.formats[index.format[i]!]}>
                  {index.shapes[i]} · {shortFormat(index.formats[index.format[i]!]!)}
                </span>
                <span>{KIND_LABEL[TENSOR_KINDS[index.kind[i]!]!]}</span>
                <span className="mono">{formatFigure(diff.rms[i]!)}{diff.sampled[i] ? '*' : ''}</span>
                <span className="mono">{formatFigure(diff.rel[i]!)}</span>
                <span className="mono">{Number.isFinite(diff.cos[i]!) ? diff.cos[i]!.toFixed(5) : '—'}</span>
              </div>
            );
          })}
        </div>
      </div>
      <div className="muted small">* estimate from sampled rows</div>
    </div>
  );
}

/** `value`, changing at most once per `ms` (the last change always lands). */
function useThrottled<T>(value: T, ms: number): T {
  const [shown, setShown] = useState(value);
  const last = useRef(0);
  useEffect(() => {
    if (ms <= 0) return;
    const wait = Math.max(0, last.current + ms - performance.now());
    const t = setTimeout(() => {
      last.current = performance.now();
      setShown(value);
    }, wait);
    return () => clearTimeout(t);
  }, [value, ms]);
  return ms <= 0 ? value : shown;
}

/** "FP8 E4M3, 128×128 blocks (F32)" → "FP8 E4M3" for a table cell (the title has the whole). */
function shortFormat(f: string): string {
  return f.split(',')[0]!;
}

/** "L12 mlp.experts.7.down_proj.weight" for "model.layers.12.mlp.experts.7.down_proj.weight". */
function displayName(name: string, layer: number): string {
  if (layer >= 0) {
    const m = new RegExp(`^(?:.*?\\.)?(?:layers|blocks|h)\\.${layer}\\.(.*)$`).exec(name);
    if (m) return `L${layer} ${m[1]}`;
  }
  return name.replace(/^model\./, '');
}
