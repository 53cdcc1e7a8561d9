// One heatmap drawn on a <canvas>: a cell per tensor (or per expert), never one DOM node per cell.
// The cells are painted one pixel each into an offscreen image, then scaled up without smoothing;
// selection, threshold overlay, hover and labels are drawn on top.
import { useEffect, useRef, useState, type PointerEvent as ReactPointerEvent } from 'react';
import type { Grid } from '../heat-data.ts';
import { KEPT_RGB } from '../colors.ts';

export interface GridCanvasProps {
  grid: Grid;
  /** Paints the colour of tensor i at out[at..at+2]; returns false when there is no figure. */
  paint: (i: number, out: Uint8ClampedArray, at: number) => void;
  /** Redraw trigger (figures arrived, metric changed, …). */
  version: unknown;
  keep?: Uint8Array | null;
  selRows?: ReadonlySet<number>;
  selCols?: ReadonlySet<number>;
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
  onHover?: (tensor: number | null, cell: { row: number; col: number } | null, x: number, y: number) => void;
  onSelect?: (rows: [number, number], cols: [number, number], additive: boolean) => void;
  ariaLabel: string;
  testId?: string;
}

const GUTTER_L = 30;
const GUTTER_T = 14;

export function GridCanvas(props: GridCanvasProps) {
  const { grid, paint, version, keep, selRows, selCols, selCells, maxCell = 22, minCellH = 4, maxCellH = maxCell, onHover, onSelect } = props;
  const wrapRef = useRef<HTMLDivElement>(null);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const [width, setWidth] = useState(0);
  const [drag, setDrag] = useState<{ r0: number; c0: number; r1: number; c1: number; add: boolean } | null>(null);
  const [hoverCell, setHoverCell] = useState<{ row: number; col: number } | null>(null);

  useEffect(() => {
    const el = wrapRef.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);

  const avail = Math.max(50, width - GUTTER_L - 2);
  const cw = Math.min(maxCell, avail / grid.cols);
  const ch = Math.max(minCellH, Math.min(maxCellH, cw));
  const cssW = Math.ceil(GUTTER_L + cw * grid.cols);
  const cssH = Math.ceil(GUTTER_T + ch * grid.rows);

  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || width === 0) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);

    // Cells: one pixel each, then scaled.
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
      if (keep && keep[i]) {
        px[at] = (px[at]! * 0.25 + KEPT_RGB[0] * 0.75) | 0;
        px[at + 1] = (px[at + 1]! * 0.25 + KEPT_RGB[1] * 0.75) | 0;
        px[at + 2] = (px[at + 2]! * 0.25 + KEPT_RGB[2] * 0.75) | 0;
      }
    }
    const off = document.createElement('canvas');
    off.width = grid.cols;
    off.height = grid.rows;
    off.getContext('2d')!.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, GUTTER_L, GUTTER_T, cw * grid.cols, ch * grid.rows);

    // Grid lines when cells are large enough to read.
    if (cw >= 7 && ch >= 7) {
      ctx.strokeStyle = 'rgba(10,12,16,0.55)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let c = 1; c < grid.cols; c++) {
        const x = Math.round(GUTTER_L + c * cw) + 0.5;
        ctx.moveTo(x, GUTTER_T);
        ctx.lineTo(x, GUTTER_T + ch * grid.rows);
      }
      for (let r = 1; r < grid.rows; r++) {
        const y = Math.round(GUTTER_T + r * ch) + 0.5;
        ctx.moveTo(GUTTER_L, y);
        ctx.lineTo(GUTTER_L + cw * grid.cols, y);
      }
      ctx.stroke();
    }

    // Selection: the product of selected rows and columns.
    if (selRows && selCols && selRows.size > 0 && selCols.size > 0) {
      ctx.fillStyle = 'rgba(255,255,255,0.38)';
      for (const r of selRows) for (const c of selCols) ctx.fillRect(GUTTER_L + c * cw, GUTTER_T + r * ch, Math.max(cw, 1), Math.max(ch, 1));
      ctx.strokeStyle = 'rgba(255,255,255,0.9)';
      ctx.lineWidth = 1;
      for (const r of selRows) {
        ctx.beginPath();
        ctx.moveTo(GUTTER_L - 4, GUTTER_T + r * ch + ch / 2);
        ctx.lineTo(GUTTER_L - 1, GUTTER_T + r * ch + ch / 2);
        ctx.stroke();
      }
    }
    if (selCells) {
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1.5;
      for (let k = 0; k < selCells.length; k++) {
        if (!selCells[k]) continue;
        const r = Math.floor(k / grid.cols);
        const c = k - r * grid.cols;
        ctx.strokeRect(GUTTER_L + c * cw + 1, GUTTER_T + r * ch + 1, Math.max(cw - 2, 1), Math.max(ch - 2, 1));
      }
    }
    if (drag) {
      const [r0, r1] = [Math.min(drag.r0, drag.r1), Math.max(drag.r0, drag.r1)];
      const [c0, c1] = [Math.min(drag.c0, drag.c1), Math.max(drag.c0, drag.c1)];
      ctx.strokeStyle = '#fff';
      ctx.setLineDash([3, 2]);
      ctx.strokeRect(GUTTER_L + c0 * cw + 0.5, GUTTER_T + r0 * ch + 0.5, (c1 - c0 + 1) * cw - 1, (r1 - r0 + 1) * ch - 1);
      ctx.setLineDash([]);
    }
    if (hoverCell) {
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(GUTTER_L + hoverCell.col * cw, GUTTER_T + hoverCell.row * ch, Math.max(cw, 2), Math.max(ch, 2));
    }

    // Labels: layer numbers on the left, expert numbers (or slot ticks) on top.
    ctx.fillStyle = '#8b93a7';
    ctx.font = '10px ui-monospace, SFMono-Regular, Menlo, monospace';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const rowStep = Math.max(1, Math.ceil(11 / ch));
    for (let r = 0; r < grid.rows; r += rowStep) ctx.fillText(grid.rowNames?.[r] ?? String(grid.rowLabels[r]), GUTTER_L - 5, GUTTER_T + r * ch + ch / 2);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    if (props.colGroups) {
      ctx.textAlign = 'left';
      for (const g of props.colGroups) {
        const x0 = GUTTER_L + g.from * cw;
        const w = (g.to - g.from + 1) * cw;
        // The full label, else the short one, else none: a cut-off word reads worse than a gap
        // (hovering a cell names its tensor either way).
        const fits = (t: string) => ctx.measureText(t).width <= w - 5;
        const text = fits(g.label) ? g.label : g.short && fits(g.short) ? g.short : '';
        if (text) ctx.fillText(text, x0 + 2, GUTTER_T - 2);
        if (g.from > 0) {
          ctx.strokeStyle = '#0f1115';
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.moveTo(x0, GUTTER_T);
          ctx.lineTo(x0, GUTTER_T + ch * grid.rows);
          ctx.stroke();
        }
      }
    } else if (!props.colTitle) {
      const colStep = niceStep(Math.ceil(26 / cw));
      for (let c = 0; c < grid.cols; c += colStep) ctx.fillText(String(c), GUTTER_L + c * cw + cw / 2, GUTTER_T - 2);
    }
  }, [grid, paint, version, keep, selRows, selCols, selCells, cw, ch, cssW, cssH, width, drag, hoverCell, props.colTitle, props.colGroups]);

  const cellAt = (e: ReactPointerEvent): { row: number; col: number } | null => {
    const rect = canvasRef.current!.getBoundingClientRect();
    const x = e.clientX - rect.left - GUTTER_L;
    const y = e.clientY - rect.top - GUTTER_T;
    if (x < 0 || y < 0) return null;
    const col = Math.floor(x / cw);
    const row = Math.floor(y / ch);
    if (col >= grid.cols || row >= grid.rows) return null;
    return { row, col };
  };

  return (
    <div ref={wrapRef} className="grid-wrap">
      <canvas
        ref={canvasRef}
        role="img"
        aria-label={props.ariaLabel}
        data-testid={props.testId}
        style={{ width: cssW, height: cssH, cursor: onSelect ? 'crosshair' : 'default' }}
        onPointerDown={(e) => {
          if (!onSelect || e.button !== 0) return;
          const add = e.shiftKey || e.metaKey || e.ctrlKey;
          const rect = canvasRef.current!.getBoundingClientRect();
          const x = e.clientX - rect.left - GUTTER_L;
          const y = e.clientY - rect.top - GUTTER_T;
          // A click on a layer number selects the layer; on an expert number, that expert in every layer.
          if (x < 0 && y >= 0 && y < ch * grid.rows) {
            const r = Math.floor(y / ch);
            onSelect([r, r], [0, grid.cols - 1], add);
            return;
          }
          if (y < 0 && x >= 0 && x < cw * grid.cols) {
            const c = Math.floor(x / cw);
            onSelect([0, grid.rows - 1], [c, c], add);
            return;
          }
          const cell = cellAt(e);
          if (!cell) return;
          (e.target as HTMLCanvasElement).setPointerCapture(e.pointerId);
          setDrag({ r0: cell.row, c0: cell.col, r1: cell.row, c1: cell.col, add });
        }}
        onPointerMove={(e) => {
          const cell = cellAt(e);
          if (drag && cell) setDrag({ ...drag, r1: cell.row, c1: cell.col });
          if (cell?.row !== hoverCell?.row || cell?.col !== hoverCell?.col) setHoverCell(cell);
          const i = cell ? grid.cells[cell.row * grid.cols + cell.col]! : -1;
          onHover?.(i >= 0 ? i : null, cell, e.clientX, e.clientY);
        }}
        onPointerUp={() => {
          if (!drag || !onSelect) return;
          onSelect([Math.min(drag.r0, drag.r1), Math.max(drag.r0, drag.r1)], [Math.min(drag.c0, drag.c1), Math.max(drag.c0, drag.c1)], drag.add);
          setDrag(null);
        }}
        onPointerLeave={() => {
          setHoverCell(null);
          onHover?.(null, null, 0, 0);
        }}
      />
    </div>
  );
}

function niceStep(n: number): number {
  for (const s of [1, 2, 4, 8, 16, 32, 64, 128]) if (s >= n) return s;
  return 256;
}
