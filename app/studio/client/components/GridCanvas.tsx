// One heatmap drawn on a <canvas>: a cell per tensor (or per expert), never one DOM node per cell.
// The cells are painted one pixel each into an offscreen image (rebuilt only when the figures
// change), then scaled up without smoothing; the threshold hatch, badges, selection outlines,
// keyboard focus, hover and labels are drawn on top on every frame that needs them.
//
// Zoom widens the columns (experts) and the view pans along them; rows grow with the columns up
// to the largest cell height and the page scrolls them. Ctrl+wheel (and a trackpad pinch, which
// Chrome reports as ctrl+wheel) and a two-finger pinch zoom around the pointer; a horizontal or
// shift+wheel, a middle-button or alt+drag, and the minimap under a zoomed grid pan. The grid
// takes the keyboard focus: arrows move, shift+arrows extend, Enter selects (shift+Enter adds),
// + / − / 0 zoom.
import { useEffect, useMemo, useRef, useState, type KeyboardEvent as ReactKeyboardEvent, type PointerEvent as ReactPointerEvent } from 'react';
import type { Grid } from '../heat-data.ts';

/** A rectangle of cells, in grid rows and columns, inclusive. */
export interface CellRect {
  r0: number;
  r1: number;
  c0: number;
  c1: number;
}

/** Zoom (1 = the grid fits the width) and the first column in view (fractional). */
export interface GridView {
  zoom: number;
  left: number;
}

export const FIT: GridView = { zoom: 1, left: 0 };
const MAX_ZOOM = 64;
/** Zoom stops where a cell is this wide (or at the fitted width, when that is wider). */
const MAX_CELL_ZOOMED = 40;

export interface GridCanvasProps {
  grid: Grid;
  /** Paints the colour of tensor i at out[at..at+2]. */
  paint: (i: number, out: Uint8ClampedArray, at: number) => void;
  /** Redraw trigger for the cells' colours (figures arrived, metric changed, …). */
  version: unknown;
  /** 1 per tensor the threshold keeps from the base: drawn as a hatch over the cell's colour. */
  hatch?: Uint8Array | null;
  /** A short mark per tensor (removed, muted, off, …), drawn on cells large enough to read it. */
  badge?: ((i: number) => string | null) | null;
  /** Selected rectangles, drawn as outlines. */
  selRects?: readonly CellRect[];
  /** Selected cells (1 per grid cell, row-major), drawn as outlines. */
  selCells?: Uint8Array | null;
  maxCell?: number;
  minCellH?: number;
  /** Largest cell height (defaults to maxCell). */
  maxCellH?: number;
  /** Label every column (strip) instead of numbering experts. */
  colTitle?: (c: number) => string;
  /** Column groups labelled in the top gutter (strip: kinds of tensors), separated by lines. */
  colGroups?: { label: string; short?: string; from: number; to: number }[];
  /** Shared zoom and pan (the three projections move together); internal when absent. */
  view?: GridView;
  onView?: (v: GridView) => void;
  /** Zoom and pan (default: on). */
  zoomable?: boolean;
  onHover?: (tensor: number | null, cell: { row: number; col: number } | null, x: number, y: number) => void;
  onSelect?: (rect: CellRect, additive: boolean) => void;
  /** A single cell clicked, or Enter on one: its tensor. */
  onPick?: (tensor: number, cell: { row: number; col: number }) => void;
  ariaLabel: string;
  testId?: string;
}

const GUTTER_L = 30;
const GUTTER_T = 14;
const MINIMAP_H = 26;
const MIN_GRID_H = 90;

let hatchTile: HTMLCanvasElement | null = null;
/** Diagonal white lines on transparent: "kept from the base", readable over any colour of the scale. */
function hatchPattern(ctx: CanvasRenderingContext2D): CanvasPattern | null {
  if (!hatchTile) {
    hatchTile = document.createElement('canvas');
    hatchTile.width = 6;
    hatchTile.height = 6;
    const h = hatchTile.getContext('2d')!;
    h.strokeStyle = 'rgba(255,255,255,0.85)';
    h.lineWidth = 1.2;
    h.beginPath();
    h.moveTo(0, 6);
    h.lineTo(6, 0);
    h.moveTo(-1, 1);
    h.lineTo(1, -1);
    h.moveTo(5, 7);
    h.lineTo(7, 5);
    h.stroke();
  }
  return ctx.createPattern(hatchTile, 'repeat');
}

export function GridCanvas(props: GridCanvasProps) {
  const { grid, paint, version, hatch, badge, selRects, selCells, maxCell = 22, minCellH = 4, maxCellH = maxCell, onHover, onSelect, onPick, zoomable = true } = props;
  const wrapRef = useRef<HTMLDivElement>(null);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const miniRef = useRef<HTMLCanvasElement>(null);
  const [width, setWidth] = useState(0);
  const [drag, setDrag] = useState<{ r0: number; c0: number; r1: number; c1: number; add: boolean } | null>(null);
  const [hoverCell, setHoverCell] = useState<{ row: number; col: number } | null>(null);
  const [focus, setFocus] = useState<{ row: number; col: number; ar: number; ac: number } | null>(null);
  const [focused, setFocused] = useState(false);
  const [ownView, setOwnView] = useState<GridView>(FIT);
  /** A pan (middle or alt drag) or a two-finger pinch in progress, and the touches down. */
  const gesture = useRef<{ kind: 'pan'; x: number; left: number } | { kind: 'pinch'; dist: number; zoom: number; at: number } | null>(null);
  const touches = useRef(new Map<number, number>());
  const view = props.view ?? ownView;
  const setView = props.onView ?? setOwnView;

  useEffect(() => {
    const el = wrapRef.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);

  // Geometry: the fitted cell width, the zoomed one, and the window onto the columns.
  const avail = Math.max(50, width - GUTTER_L - 2);
  const fitCw = Math.min(maxCell, avail / grid.cols);
  const maxZoom = zoomable ? Math.min(MAX_ZOOM, Math.max(1, Math.max(MAX_CELL_ZOOMED, fitCw) / fitCw)) : 1;
  const zoom = Math.min(maxZoom, Math.max(1, view.zoom));
  const cw = fitCw * zoom;
  const contentW = cw * grid.cols;
  const viewW = Math.min(avail, contentW);
  const visibleCols = viewW / cw;
  const maxLeft = Math.max(0, grid.cols - visibleCols);
  const left = Math.min(maxLeft, Math.max(0, view.left));
  const offX = left * cw;
  const panned = contentW > avail + 0.5;
  // Square cells, but a grid of few rows gets rows tall enough to aim at and label.
  const ch = Math.max(minCellH, Math.min(maxCellH, Math.max(cw, MIN_GRID_H / grid.rows)));
  const cssW = Math.ceil(GUTTER_L + viewW);
  const cssH = Math.ceil(GUTTER_T + ch * grid.rows);
  const geo = useRef({ cw, ch, left, offX, visibleCols, maxLeft, zoom, fitCw, maxZoom });
  geo.current = { cw, ch, left, offX, visibleCols, maxLeft, zoom, fitCw, maxZoom };

  // A shared view asked for more zoom than this grid allows: settle on the most it allows, so the
  // zoom shown is the zoom drawn.
  useEffect(() => {
    if (props.view && width > 0 && view.zoom > maxZoom + 1e-9) setView({ zoom: maxZoom, left });
  });

  /** Zoom to `z`, keeping the column at `anchorX` px (from the left of the cells) in place. */
  const zoomTo = (z: number, anchorX: number) => {
    const g = geo.current;
    const nz = Math.min(g.maxZoom, Math.max(1, z));
    const col = (anchorX + g.offX) / g.cw;
    const ncw = g.fitCw * nz;
    setView({ zoom: nz, left: Math.max(0, col - anchorX / ncw) });
  };
  const panTo = (l: number) => setView({ zoom: geo.current.zoom, left: Math.min(geo.current.maxLeft, Math.max(0, l)) });

  // Wheel: non-passive, so a zoom or a pan does not also scroll the page.
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || !zoomable) return;
    const onWheel = (e: WheelEvent) => {
      const g = geo.current;
      const rect = canvas.getBoundingClientRect();
      if (e.ctrlKey || e.metaKey) {
        e.preventDefault();
        zoomTo(g.zoom * Math.exp(-e.deltaY * 0.004), Math.max(0, e.clientX - rect.left - GUTTER_L));
        return;
      }
      const dx = e.shiftKey ? e.deltaY : e.deltaX;
      if (g.maxLeft > 0 && dx !== 0 && (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY))) {
        e.preventDefault();
        panTo(g.left + dx / g.cw);
      }
    };
    canvas.addEventListener('wheel', onWheel, { passive: false });
    return () => canvas.removeEventListener('wheel', onWheel);
  });

  // The cells, one pixel each: rebuilt when the figures or the colouring change, not on hover.
  const cells = useMemo(() => {
    if (typeof document === 'undefined') return null;
    const img = new ImageData(grid.cols, grid.rows);
    const px = img.data;
    for (let k = 0; k < grid.cells.length; k++) {
      const i = grid.cells[k]!;
      const at = k * 4;
      px[at + 3] = 255;
      if (i < 0) {
        px[at] = 14;
        px[at + 1] = 16;
        px[at + 2] = 21;
        continue;
      }
      paint(i, px, at);
    }
    const off = document.createElement('canvas');
    off.width = grid.cols;
    off.height = grid.rows;
    off.getContext('2d')!.putImageData(img, 0, 0);
    return off;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [grid, paint, version]);

  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || width === 0 || !cells) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const X = (c: number) => GUTTER_L + c * cw - offX;
    const Y = (r: number) => GUTTER_T + r * ch;
    const c0 = Math.max(0, Math.floor(left));
    const c1 = Math.min(grid.cols - 1, Math.ceil(left + visibleCols));

    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER_L, GUTTER_T, viewW, ch * grid.rows);
    ctx.clip();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cells, X(0), GUTTER_T, contentW, ch * grid.rows);

    // Grid lines when cells are large enough to read.
    if (cw >= 7 && ch >= 7) {
      ctx.strokeStyle = 'rgba(10,12,16,0.55)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let c = Math.max(1, c0); c <= c1; c++) {
        const x = Math.round(X(c)) + 0.5;
        ctx.moveTo(x, GUTTER_T);
        ctx.lineTo(x, Y(grid.rows));
      }
      for (let r = 1; r < grid.rows; r++) {
        const y = Math.round(Y(r)) + 0.5;
        ctx.moveTo(GUTTER_L, y);
        ctx.lineTo(GUTTER_L + viewW, y);
      }
      ctx.stroke();
    }

    // Threshold: a hatch over each kept cell (runs of kept cells in a row are one rectangle).
    if (hatch) {
      const pat = hatchPattern(ctx);
      if (pat) {
        ctx.fillStyle = pat;
        for (let r = 0; r < grid.rows; r++) {
          let run = -1;
          for (let c = c0; c <= c1 + 1; c++) {
            const i = c <= c1 ? grid.cells[r * grid.cols + c]! : -1;
            const on = i >= 0 && hatch[i] === 1;
            if (on && run < 0) run = c;
            if (!on && run >= 0) {
              ctx.fillRect(X(run), Y(r), (c - run) * cw, ch);
              run = -1;
            }
          }
        }
      }
    }

    // Badges, where a cell can hold a character.
    if (badge && cw >= 9 && ch >= 9) {
      ctx.font = `bold ${Math.min(12, Math.floor(Math.min(cw, ch) * 0.75))}px ui-monospace, SFMono-Regular, Menlo, monospace`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      for (let r = 0; r < grid.rows; r++)
        for (let c = c0; c <= c1; c++) {
          const i = grid.cells[r * grid.cols + c]!;
          const b = i >= 0 ? badge(i) : null;
          if (!b) continue;
          ctx.fillStyle = 'rgba(10,12,16,0.75)';
          ctx.fillText(b, X(c) + cw / 2 + 0.5, Y(r) + ch / 2 + 0.5);
          ctx.fillStyle = '#fff';
          ctx.fillText(b, X(c) + cw / 2, Y(r) + ch / 2);
        }
    } else if (badge) {
      // Too small for a character: a white corner marks the cell.
      ctx.fillStyle = '#fff';
      for (let r = 0; r < grid.rows; r++)
        for (let c = c0; c <= c1; c++) {
          const i = grid.cells[r * grid.cols + c]!;
          if (i >= 0 && badge(i)) ctx.fillRect(X(c), Y(r), Math.max(1, cw / 2), Math.max(1, ch / 2));
        }
    }

    const outline = (r: CellRect, style: string, dash: number[] = [], lw = 1.5) => {
      ctx.strokeStyle = style;
      ctx.lineWidth = lw;
      ctx.setLineDash(dash);
      const rr0 = Math.min(r.r0, r.r1);
      const rr1 = Math.max(r.r0, r.r1);
      const cc0 = Math.min(r.c0, r.c1);
      const cc1 = Math.max(r.c0, r.c1);
      const w = Math.max((cc1 - cc0 + 1) * cw, 2);
      const h = Math.max((rr1 - rr0 + 1) * ch, 2);
      // A dark line under the white one: the outline reads on yellow as well as on purple.
      ctx.strokeStyle = 'rgba(0,0,0,0.8)';
      ctx.strokeRect(X(cc0) + 0.5, Y(rr0) + 0.5, w - 1, h - 1);
      ctx.strokeStyle = style;
      ctx.strokeRect(X(cc0) + 1.5, Y(rr0) + 1.5, Math.max(w - 3, 1), Math.max(h - 3, 1));
      ctx.setLineDash([]);
    };
    for (const r of selRects ?? []) outline(r, '#fff');
    if (selCells) {
      for (let k = 0; k < selCells.length; k++) {
        if (!selCells[k]) continue;
        const r = Math.floor(k / grid.cols);
        const c = k - r * grid.cols;
        outline({ r0: r, r1: r, c0: c, c1: c }, '#fff');
      }
    }
    if (drag) outline(drag, '#fff', [3, 2], 1);
    if (focus && focused) {
      if (focus.ar !== focus.row || focus.ac !== focus.col) outline({ r0: focus.ar, r1: focus.row, c0: focus.ac, c1: focus.col }, '#fff', [3, 2], 1);
      outline({ r0: focus.row, r1: focus.row, c0: focus.col, c1: focus.col }, '#ffd166', [], 2);
    }
    if (hoverCell) {
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(X(hoverCell.col), Y(hoverCell.row), Math.max(cw, 2), Math.max(ch, 2));
    }
    ctx.restore();

    // Labels: layer numbers on the left, expert numbers (or slot groups) on top.
    ctx.fillStyle = '#8b93a7';
    ctx.font = '10px ui-monospace, SFMono-Regular, Menlo, monospace';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const rowStep = Math.max(1, Math.ceil(11 / ch));
    for (let r = 0; r < grid.rows; r += rowStep) ctx.fillText(grid.rowNames?.[r] ?? String(grid.rowLabels[r]), GUTTER_L - 5, Y(r) + ch / 2);
    ctx.textBaseline = 'bottom';
    // Column labels stay over the columns in view; the corner above the layer numbers is free, so
    // the first column's label may reach into it rather than be cut in half.
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER_L - 12, 0, viewW + 12, GUTTER_T);
    ctx.clip();
    if (props.colGroups) {
      ctx.textAlign = 'left';
      for (const g of props.colGroups) {
        const x0 = X(g.from);
        const w = (g.to - g.from + 1) * cw;
        // The full label, else the short one, else none: a cut-off word reads worse than a gap
        // (hovering a cell names its tensor either way).
        const fits = (t: string) => ctx.measureText(t).width <= w - 5;
        const text = fits(g.label) ? g.label : g.short && fits(g.short) ? g.short : '';
        if (text) ctx.fillText(text, x0 + 2, GUTTER_T - 2);
      }
    } else if (!props.colTitle) {
      ctx.textAlign = 'center';
      const colStep = niceStep(Math.ceil(26 / cw));
      for (let c = Math.floor(c0 / colStep) * colStep; c <= c1; c += colStep) ctx.fillText(String(c), X(c) + cw / 2, GUTTER_T - 2);
    }
    ctx.restore();
    if (props.colGroups) {
      ctx.strokeStyle = '#0f1115';
      ctx.lineWidth = 2;
      ctx.beginPath();
      for (const g of props.colGroups) {
        if (g.from === 0) continue;
        const x0 = X(g.from);
        if (x0 < GUTTER_L || x0 > GUTTER_L + viewW) continue;
        ctx.moveTo(x0, GUTTER_T);
        ctx.lineTo(x0, Y(grid.rows));
      }
      ctx.stroke();
    }
  }, [grid, cells, hatch, badge, selRects, selCells, cw, ch, cssW, cssH, width, drag, hoverCell, focus, focused, offX, left, visibleCols, viewW, contentW, props.colTitle, props.colGroups]);

  // The minimap: the whole grid squeezed to the width, with the window in view outlined.
  useEffect(() => {
    const mini = miniRef.current;
    if (!mini || !cells || !panned) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(viewW);
    mini.width = Math.round(w * dpr);
    mini.height = Math.round(MINIMAP_H * dpr);
    const ctx = mini.getContext('2d')!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(cells, 0, 0, w, MINIMAP_H);
    ctx.fillStyle = 'rgba(10,12,16,0.55)';
    const x0 = (left / grid.cols) * w;
    const x1 = ((left + visibleCols) / grid.cols) * w;
    ctx.fillRect(0, 0, x0, MINIMAP_H);
    ctx.fillRect(x1, 0, w - x1, MINIMAP_H);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x0 + 0.75, 0.75, Math.max(2, x1 - x0 - 1.5), MINIMAP_H - 1.5);
  }, [cells, panned, viewW, left, visibleCols, grid.cols]);

  const cellAtPoint = (clientX: number, clientY: number): { row: number; col: number } | null => {
    const rect = canvasRef.current!.getBoundingClientRect();
    const x = clientX - rect.left - GUTTER_L;
    const y = clientY - rect.top - GUTTER_T;
    if (x < 0 || y < 0 || x >= viewW) return null;
    const col = Math.floor((x + offX) / cw);
    const row = Math.floor(y / ch);
    if (col >= grid.cols || row >= grid.rows) return null;
    return { row, col };
  };
  const cellAt = (e: ReactPointerEvent) => cellAtPoint(e.clientX, e.clientY);
  const tensorAt = (cell: { row: number; col: number }) => grid.cells[cell.row * grid.cols + cell.col]!;

  /** Hover and tooltip for the keyboard's cell, at the cell's place on screen. */
  const announce = (row: number, col: number) => {
    const rect = canvasRef.current?.getBoundingClientRect();
    if (!rect) return;
    const i = tensorAt({ row, col });
    onHover?.(i >= 0 ? i : null, { row, col }, rect.left + GUTTER_L + (col + 1) * cw - offX, rect.top + GUTTER_T + (row + 1) * ch);
  };

  const onKeyDown = (e: ReactKeyboardEvent<HTMLCanvasElement>) => {
    const f = focus ?? { row: 0, col: Math.floor(left), ar: 0, ac: Math.floor(left) };
    const move: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const step = move[e.key];
    if (step) {
      e.preventDefault();
      const big = e.ctrlKey || e.metaKey || e.altKey ? 8 : 1;
      const row = Math.min(grid.rows - 1, Math.max(0, f.row + step[0] * big));
      const col = Math.min(grid.cols - 1, Math.max(0, f.col + step[1] * big));
      const next = e.shiftKey ? { row, col, ar: f.ar, ac: f.ac } : { row, col, ar: row, ac: col };
      setFocus(next);
      // The view follows the cell.
      const g = geo.current;
      if (col < g.left) panTo(col);
      else if (col + 1 > g.left + g.visibleCols) panTo(col + 1 - g.visibleCols);
      announce(row, col);
      return;
    }
    if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      const col = e.key === 'Home' ? 0 : grid.cols - 1;
      setFocus({ ...f, col, ...(e.shiftKey ? {} : { ar: f.row, ac: col }) });
      panTo(e.key === 'Home' ? 0 : grid.cols);
      return;
    }
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      setFocus(f);
      onSelect?.({ r0: Math.min(f.ar, f.row), r1: Math.max(f.ar, f.row), c0: Math.min(f.ac, f.col), c1: Math.max(f.ac, f.col) }, e.shiftKey);
      const i = tensorAt(f);
      if (f.ar === f.row && f.ac === f.col && i >= 0) onPick?.(i, f);
      return;
    }
    if (!zoomable) return;
    const at = (f.col + 0.5) * cw - offX;
    if (e.key === '+' || e.key === '=') {
      e.preventDefault();
      zoomTo(zoom * 2, Math.min(viewW, Math.max(0, at)));
    } else if (e.key === '-' || e.key === '_') {
      e.preventDefault();
      zoomTo(zoom / 2, Math.min(viewW, Math.max(0, at)));
    } else if (e.key === '0') {
      e.preventDefault();
      setView(FIT);
    }
  };

  const miniPan = (e: ReactPointerEvent<HTMLCanvasElement>) => {
    const rect = e.currentTarget.getBoundingClientRect();
    panTo(((e.clientX - rect.left) / rect.width) * grid.cols - visibleCols / 2);
  };

  return (
    <div ref={wrapRef} className="grid-wrap">
      <canvas
        ref={canvasRef}
        role="grid"
        tabIndex={0}
        aria-label={`${props.ariaLabel}${zoomable ? ' (arrows move, shift extends, Enter selects, + and − zoom)' : ''}`}
        data-testid={props.testId}
        data-zoom={zoom.toFixed(3)}
        data-left={left.toFixed(3)}
        style={{ width: cssW, height: cssH, cursor: onSelect ? 'crosshair' : onPick ? 'pointer' : 'default' }}
        onFocus={() => setFocused(true)}
        onBlur={() => {
          setFocused(false);
          onHover?.(null, null, 0, 0);
        }}
        onKeyDown={onKeyDown}
        // The middle button pans the grid, not the page (no autoscroll).
        onMouseDown={(e) => e.button === 1 && e.preventDefault()}
        onPointerDown={(e) => {
          const rect = canvasRef.current!.getBoundingClientRect();
          // Two fingers pinch (zoom about their midpoint); the middle button, or alt with the left,
          // drags the view along the columns.
          if (zoomable && e.pointerType === 'touch') {
            touches.current.set(e.pointerId, e.clientX);
            if (touches.current.size === 2) {
              const [a, b] = [...touches.current.values()];
              gesture.current = { kind: 'pinch', dist: Math.max(8, Math.abs(a! - b!)), zoom, at: (a! + b!) / 2 - rect.left - GUTTER_L };
              setDrag(null);
              return;
            }
          }
          if (zoomable && (e.button === 1 || (e.button === 0 && e.altKey))) {
            e.preventDefault();
            (e.target as HTMLCanvasElement).setPointerCapture(e.pointerId);
            gesture.current = { kind: 'pan', x: e.clientX, left };
            return;
          }
          if ((!onSelect && !onPick) || e.button !== 0) return;
          const add = e.shiftKey || e.metaKey || e.ctrlKey;
          const x = e.clientX - rect.left - GUTTER_L;
          const y = e.clientY - rect.top - GUTTER_T;
          // A click on a layer number selects the layer; on an expert number, that expert in every layer.
          if (onSelect && x < 0 && y >= 0 && y < ch * grid.rows) {
            const r = Math.floor(y / ch);
            onSelect({ r0: r, r1: r, c0: 0, c1: grid.cols - 1 }, add);
            return;
          }
          if (onSelect && y < 0 && x >= 0 && x < viewW) {
            const c = Math.floor((x + offX) / cw);
            if (c < grid.cols) onSelect({ r0: 0, r1: grid.rows - 1, c0: c, c1: c }, add);
            return;
          }
          const cell = cellAt(e);
          if (!cell) return;
          (e.target as HTMLCanvasElement).setPointerCapture(e.pointerId);
          setDrag({ r0: cell.row, c0: cell.col, r1: cell.row, c1: cell.col, add });
          setFocus({ row: cell.row, col: cell.col, ar: cell.row, ac: cell.col });
        }}
        onPointerMove={(e) => {
          const g = gesture.current;
          if (g?.kind === 'pan') {
            panTo(g.left - (e.clientX - g.x) / cw);
            return;
          }
          if (g?.kind === 'pinch' && touches.current.has(e.pointerId)) {
            touches.current.set(e.pointerId, e.clientX);
            const [a, b] = [...touches.current.values()];
            zoomTo((g.zoom * Math.max(8, Math.abs(a! - b!))) / g.dist, Math.max(0, g.at));
            return;
          }
          const cell = cellAt(e);
          if (drag && cell && onSelect) setDrag({ ...drag, r1: cell.row, c1: cell.col });
          if (cell?.row !== hoverCell?.row || cell?.col !== hoverCell?.col) setHoverCell(cell);
          const i = cell ? tensorAt(cell) : -1;
          onHover?.(i >= 0 ? i : null, cell, e.clientX, e.clientY);
        }}
        onPointerUp={(e) => {
          touches.current.delete(e.pointerId);
          if (gesture.current) {
            if (gesture.current.kind === 'pan' || touches.current.size === 0) gesture.current = null;
            return;
          }
          if (!drag) return;
          const rect = { r0: Math.min(drag.r0, drag.r1), r1: Math.max(drag.r0, drag.r1), c0: Math.min(drag.c0, drag.c1), c1: Math.max(drag.c0, drag.c1) };
          onSelect?.(rect, drag.add);
          setFocus({ row: drag.r1, col: drag.c1, ar: drag.r0, ac: drag.c0 });
          const i = tensorAt({ row: rect.r0, col: rect.c0 });
          if (rect.r0 === rect.r1 && rect.c0 === rect.c1 && i >= 0) onPick?.(i, { row: rect.r0, col: rect.c0 });
          setDrag(null);
        }}
        onPointerCancel={(e) => {
          touches.current.delete(e.pointerId);
          gesture.current = null;
          setDrag(null);
        }}
        onPointerLeave={() => {
          setHoverCell(null);
          onHover?.(null, null, 0, 0);
        }}
      />
      {panned && (
        <div className="minimap" style={{ marginLeft: GUTTER_L, width: viewW }}>
          <canvas
            ref={miniRef}
            data-testid={props.testId ? `${props.testId}-minimap` : undefined}
            aria-label={`Overview: columns ${Math.floor(left)}–${Math.min(grid.cols, Math.ceil(left + visibleCols)) - 1} of ${grid.cols} in view`}
            style={{ width: viewW, height: MINIMAP_H }}
            onPointerDown={(e) => {
              e.currentTarget.setPointerCapture(e.pointerId);
              miniPan(e);
            }}
            onPointerMove={(e) => {
              if (e.buttons & 1) miniPan(e);
            }}
          />
        </div>
      )}
    </div>
  );
}

function niceStep(n: number): number {
  for (const s of [1, 2, 4, 8, 16, 32, 64, 128]) if (s >= n) return s;
  return 256;
}
