// Center: how far each other parent is from the base, tensor by tensor.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { PROJECTIONS, TENSOR_KINDS, type Projection } from '../../../engine/model/types.ts';
import { DIFF_METRICS, type DiffMetric, type TensorIndex } from '../../shared/studio-api.ts';
import { formatCount, formatDuration, formatFigure } from '../../shared/format.ts';
import { fitScale, gradientCss, IDENTICAL_RGB, KEPT_RGB, METRIC_HELP, METRIC_LABEL, MISSING_RGB, type Scale } from '../colors.ts';
import { heatLayout, KIND_LABEL, KIND_SHORT, type Grid } from '../heat-data.ts';
import { GridCanvas as GridCanvasMemo } from './GridCanvas.tsx';
import { ViewSwitch } from './RoutingPanel.tsx';
import { hasDirectoryPicker, pickParentFolder } from '../open-parents.ts';
import { baseParent, cancelDiff, metricValue, runDiff, thresholdView, useStudio, type DiffData } from '../store.ts';

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
            `Exact figures for ${formatCount(diff.have)} tensors (${formatDuration(diff.elapsedMs)}).`
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

function Heatmaps({ index, diff, metric, experts }: { index: TensorIndex; diff: DiffData; metric: DiffMetric; experts: number }) {
  const layout = heatLayout(index, experts);
  const version = useStudio((s) => s.diffVersion);
  const overlay = useStudio((s) => s.overlay);
  const selection = useStudio((s) => s.selection);
  const threshold = useStudio((s) => s.recipe.threshold);
  const plan = useStudio((s) => s.plan);
  const parentsList = useStudio((s) => s.parents);
  const allDiffs = useStudio((s) => s.diffs);
  const tv = useMemo(
    () => (threshold ? thresholdView(useStudio.getState(), threshold.below) : null),
    [threshold, plan, parentsList, allDiffs, version, index],
  );
  const keep = overlay && tv ? tv.keep : null;
  const values = metric === 'rms_diff' ? diff.rms : metric === 'rel_diff' ? diff.rel : diff.cos;
  const scale = useMemo(() => fitScale(metric, values), [metric, values, version, diff.have]);
  const paint = useCallback((i: number, out: Uint8ClampedArray, at: number) => scale.rgb(values[i]!, out, at), [scale, values]);
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
  const maxCols = Math.max(...PROJECTIONS.map((p) => layout.experts[p]?.cols ?? 0));
  // Projections side by side when each still gets cells of 10 px or more; stacked otherwise.
  const side = (width - 28 - 2 * 16) / 3 - 30 >= maxCols * 10;

  return (
    <div className="heat-scroll" data-testid="heatmaps" ref={scrollRef}>
      <Legend scale={scale} metric={metric} keptCount={keep ? (tv?.kept ?? 0) : null} />
      <div className="heat-section-title">
        <h3>Routed experts</h3>
        <span className="muted">
          rows: MoE layers · columns: experts · drag to select (shift adds) · {formatCount(layout.routedCount)} tensors
        </span>
      </div>
      <div className={`proj-row ${side ? 'side' : ''}`}>
      {PROJECTIONS.map((p) => {
        const g = layout.experts[p];
        if (!g) return null;
        const projOn = selection.proj.includes(p);
        const selRows = new Set<number>();
        const selCols = new Set<number>();
        if (projOn) {
          g.rowLabels.forEach((l, r) => selection.layers.includes(l) && selRows.add(r));
          if (g.fused) for (let c = 0; c < g.cols; c++) selCols.add(c);
          else for (const e of selection.experts) selCols.add(e);
        }
        return (
          <div className="heat-block" key={p}>
            <div className="heat-label">
              {PROJ_LABEL[p]}
              {g.fused ? <span className="muted"> · stored fused: one tensor per layer for all experts</span> : null}
            </div>
            <GridCanvasMemo
              grid={g}
              paint={paint}
              version={`${version}:${metric}:${scale.lo}:${scale.hi}`}
              keep={keep}
              selRows={selRows}
              selCols={selCols}
              maxCell={side ? 30 : 22}
              minCellH={4}
              onHover={onHover}
              ariaLabel={`Routed experts, ${p} projection: ${g.rows} layers by ${g.cols} experts`}
              testId={`heatmap-${p}`}
              onSelect={(rows, cols, add) => selectCells(g, p, rows, cols, add)}
            />
          </div>
        );
      })}
      </div>
      {layout.strip && <Strip grid={layout.strip} paint={paint} version={`${version}:${metric}:${scale.lo}`} keep={keep} onHover={onHover} />}
      <TensorTable index={index} diff={diff} metric={metric} scale={scale} keep={keep} globals={layout.globals} />
      {hover && <Tooltip hover={hover} index={index} diff={diff} keep={keep} />}
    </div>
  );
}


function selectCells(g: Grid, p: Projection, rows: [number, number], cols: [number, number], add: boolean): void {
  const layers = g.rowLabels.slice(rows[0], rows[1] + 1);
  const experts: number[] = [];
  if (!g.fused) for (let c = cols[0]; c <= cols[1]; c++) experts.push(c);
  useStudio.setState((s) => {
    if (!add) return { selection: { layers, experts, proj: [p] } };
    const u = (a: number[], b: number[]) => [...new Set([...a, ...b])].sort((x, y) => x - y);
    return {
      selection: {
        layers: u(s.selection.layers, layers),
        experts: u(s.selection.experts, experts),
        proj: PROJECTIONS.filter((x) => x === p || s.selection.proj.includes(x)),
      },
    };
  });
}

function Strip({ grid, paint, version, keep, onHover }: { grid: Grid; paint: (i: number, o: Uint8ClampedArray, a: number) => void; version: string; keep: Uint8Array | null; onHover: (i: number | null, c: unknown, x: number, y: number) => void }) {
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
        keep={keep}
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
          <span className="swatch" style={{ background: `rgb(${KEPT_RGB.join(',')})` }} /> kept by threshold ({formatCount(keptCount)})
        </span>
      )}
    </div>
  );
}

function Tooltip({ hover, index, diff, keep }: { hover: HoverInfo; index: TensorIndex; diff: DiffData; keep: Uint8Array | null }) {
  const i = hover.i;
  const kind = TENSOR_KINDS[index.kind[i]!]!;
  const parts: string[] = [KIND_LABEL[kind]];
  if (index.layer[i]! >= 0) parts.push(`layer ${index.layer[i]}${index.mtpLayers.includes(index.layer[i]!) ? ' (multi-token prediction)' : ''}`);
  if (index.expert[i]! >= 0) parts.push(`expert ${index.expert[i]}`);
  if (index.proj[i]! >= 0) parts.push(PROJECTIONS[index.proj[i]!]!);
  const has = Number.isFinite(diff.rms[i]!);
  const left = Math.min(hover.x + 14, window.innerWidth - 380);
  const top = Math.min(hover.y + 14, window.innerHeight - 140);
  return (
    <div className="tooltip" style={{ left, top }} role="tooltip" data-testid="heat-tooltip">
      <div className="mono tt-name">{index.names[i]}</div>
      <div className="muted">{parts.join(' · ')}</div>
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
  const rows = useMemo(() => {
    let list: number[] = [];
    const f = filter.trim().toLowerCase();
    for (let i = 0; i < index.names.length; i++) if (!f || index.names[i]!.toLowerCase().includes(f)) list.push(i);
    if (sortBy === 'metric') {
      const v = (i: number) => {
        const x = metricValue(diff, metric, i);
        if (!Number.isFinite(x)) return -Infinity;
        return metric === 'cosine' ? 1 - x : x;
      };
      list = list.sort((a, b) => v(b) - v(a));
    }
    return list;
  }, [filter, sortBy, index, diff, metric, version]);
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
            scale.rgb(metricValue(diff, metric, i), swatch, 0);
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
