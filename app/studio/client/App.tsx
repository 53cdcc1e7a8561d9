// The studio shell: parents on the left, heatmaps in the center, recipe on the right, merge below.
import { useEffect, useState } from 'react';
import { HeatmapPanel } from './components/HeatmapPanel.tsx';
import { RoutingPanel } from './components/RoutingPanel.tsx';
import { useRouting } from './routing-store.ts';
import { MergeDialog } from './components/MergeDialog.tsx';
import { ParentsPanel } from './components/ParentsPanel.tsx';
import { RecipePanel } from './components/RecipePanel.tsx';
import { hasDirectoryPicker, openFromDrop } from './open-parents.ts';
import { dismiss, notify, startStudio, useStudio } from './store.ts';
import { NO_SELECTION } from '../shared/recipe-tools.ts';

export function App() {
  const [dragging, setDragging] = useState(false);
  const centerView = useRouting((s) => s.view);
  const hasBase = useStudio((s) => s.parents.length > 0);
  useEffect(() => {
    startStudio().catch((e: unknown) => notify('error', `The studio worker did not start: ${e instanceof Error ? e.message : String(e)}`));
  }, []);

  useEffect(() => {
    let depth = 0;
    const hasFiles = (e: DragEvent) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    const enter = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth++;
      setDragging(true);
    };
    const over = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer!.dropEffect = 'copy';
    };
    const leave = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      depth = Math.max(0, depth - 1);
      if (depth === 0) setDragging(false);
    };
    const drop = (e: DragEvent) => {
      if (!e.dataTransfer) return;
      e.preventDefault();
      depth = 0;
      setDragging(false);
      openFromDrop(e.dataTransfer);
    };
    const key = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (e.key === 'Escape' && !(t && /INPUT|TEXTAREA|SELECT/.test(t.tagName))) useStudio.setState({ selection: NO_SELECTION });
    };
    window.addEventListener('keydown', key);
    window.addEventListener('dragenter', enter);
    window.addEventListener('dragover', over);
    window.addEventListener('dragleave', leave);
    window.addEventListener('drop', drop);
    return () => {
      window.removeEventListener('keydown', key);
      window.removeEventListener('dragenter', enter);
      window.removeEventListener('dragover', over);
      window.removeEventListener('dragleave', leave);
      window.removeEventListener('drop', drop);
    };
  }, []);

  return (
    <div className="app" data-testid="studio">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden>
            ◧
          </span>
          <b>MoE Studio</b>
          <span className="muted">assemble Mixture-of-Experts models, locally</span>
        </div>
        <span className="grow" />
        <StatusLine />
      </header>
      <main className="columns">
        <ParentsPanel />
        {centerView === 'routing' && hasBase ? <RoutingPanel /> : <HeatmapPanel />}
        <RecipePanel />
      </main>
      <MergeDialog />
      <Notices />
      {dragging && (
        <div className="drop-overlay" data-testid="drop-overlay">
          <div>Drop model folders to open them as parents (or routing statistics files to load them)</div>
        </div>
      )}
    </div>
  );
}

function StatusLine() {
  const status = useStudio((s) => s.status);
  const isolated = typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated;
  return (
    <div className="status-line" data-testid="status-line">
      <span className={isolated ? 'ok' : 'warn'} title="Cross-origin isolation (COOP/COEP): enables shared memory between workers" data-testid="coi">
        {isolated ? 'cross-origin isolated' : 'not cross-origin isolated'}
      </span>
      <span className={status?.kernels === 'ready' ? 'ok' : status ? 'warn' : ''} title={status?.kernels} data-testid="kernels">
        {status ? (status.kernels === 'ready' ? `${status.kernelWorkers} kernel worker${status.kernelWorkers === 1 ? '' : 's'}` : `kernels ${status.kernels.split(':')[0]}`) : 'starting…'}
      </span>
      <span className={hasDirectoryPicker ? 'ok' : 'warn'} title={hasDirectoryPicker ? 'File System Access API available' : 'No File System Access API: use Chrome or Edge 86+, or Opera to write merged models'}>
        {hasDirectoryPicker ? 'folder access' : 'read-only: no folder access'}
      </span>
      <span className="muted">no data leaves this machine</span>
    </div>
  );
}

function Notices() {
  const notices = useStudio((s) => s.notices);
  return (
    <div className="notices" aria-live="polite">
      {notices.map((n) => (
        <div key={n.id} className={`notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'} data-testid="notice">
          <span>{n.text}</span>
          <button className="icon-btn" aria-label="Dismiss" onClick={() => dismiss(n.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
