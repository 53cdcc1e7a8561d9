// Bottom sheet: pick the output folder, see what will be written, run with progress, cancel, summary.
import { useEffect, useRef, useState } from 'react';
import { formatBytes, formatCount, formatDuration } from '../../shared/format.ts';
import type { MergeProgress, MergeResult, OutputCheck, OutputTarget, Recipe } from '../../shared/studio-api.ts';
import { parseLambdas, sweepRecipes } from '../../shared/recipe-tools.ts';
import { listener, newJobId, studio } from '../bridge.ts';
import { hasDirectoryPicker } from '../open-parents.ts';
import { bindings, notify, useStudio } from '../store.ts';
import { KindTable } from './recipe/PlanDetails.tsx';

interface Sample {
  t: number;
  bytes: number;
}

export function MergeDialog() {
  const open = useStudio((s) => s.mergeOpen);
  const plan = useStudio((s) => s.plan);
  const planError = useStudio((s) => s.planError);
  const [target, setTarget] = useState<OutputTarget | null>(null);
  const [check, setCheck] = useState<OutputCheck | null>(null);
  const [opfsName, setOpfsName] = useState(() => `merged-${new Date().toISOString().slice(0, 10)}`);
  const [job, setJob] = useState<string | null>(null);
  const [progress, setProgress] = useState<MergeProgress | null>(null);
  const [result, setResult] = useState<MergeResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [overwrite, setOverwrite] = useState(false);
  const samples = useRef<Sample[]>([]);
  // A λ sweep: one child per value of one rule's donor share, each in a subfolder of the target.
  const recipe = useStudio((s) => s.recipe);
  const [sweepOn, setSweepOn] = useState(false);
  const [sweepRule, setSweepRule] = useState(0);
  const [sweepText, setSweepText] = useState('0.25, 0.5, 0.75');
  const [sweepDone, setSweepDone] = useState<MergeResult[] | null>(null);
  const lambdas = parseLambdas(sweepText);
  const sweep = !sweepOn ? null : typeof lambdas === 'string' ? lambdas : sweepRecipes(recipe, sweepRule, lambdas);

  // Leaving the page mid-merge loses the merge: the browser asks first.
  useEffect(() => {
    if (!job) return;
    const onLeave = (e: BeforeUnloadEvent) => {
      e.preventDefault();
      e.returnValue = '';
    };
    window.addEventListener('beforeunload', onLeave);
    return () => window.removeEventListener('beforeunload', onLeave);
  }, [job]);

  useEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && !job && close();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [open, job]);

  if (!open) return null;

  function close() {
    useStudio.setState({ mergeOpen: false });
    setResult(null);
    setSweepDone(null);
    setError(null);
    setProgress(null);
  }

  async function useTarget(t: OutputTarget) {
    setTarget(t);
    setCheck(null);
    setResult(null);
    setError(null);
    setCheck(await recheck(t));
  }

  function recheck(t: OutputTarget): Promise<OutputCheck> {
    const s = useStudio.getState();
    return studio.checkOutput(t, bindings(s), s.recipe);
  }

  async function discard() {
    if (!target) return;
    const r = await studio.discardInterrupted(target);
    if (!r.ok) setError(r.error);
    setResult(null);
    setCheck(await recheck(target));
  }

  async function pickFolder() {
    try {
      const handle = await window.showDirectoryPicker!({ id: 'moe-output', mode: 'readwrite', startIn: 'documents' });
      const perm = (await handle.requestPermission?.({ mode: 'readwrite' })) ?? 'granted';
      if (perm !== 'granted') {
        setError('Write access to that folder was not granted.');
        return;
      }
      await useTarget({ kind: 'handle', handle });
    } catch (e) {
      if ((e as { name?: string }).name !== 'AbortError') setError(String(e));
    }
  }

  /** Progress of a merge or sweep: the figures, and samples for the throughput over the last seconds. */
  function track(p: MergeProgress) {
    samples.current.push({ t: p.elapsedMs, bytes: p.bytesDone });
    if (samples.current.length > 60) samples.current.shift();
    setProgress(p);
  }

  async function runSweep(children: { name: string; recipe: Recipe }[]) {
    if (!target) return;
    const id = newJobId('merge');
    setJob(id);
    setResult(null);
    setSweepDone(null);
    setError(null);
    samples.current = [];
    const s = useStudio.getState();
    try {
      await askPersistence(target);
      const res = await studio.sweep(id, children, bindings(s), target, { overwrite }, listener(track));
      if (!res.ok) setError(res.error);
      else if (res.value[0]?.cancelled) setResult(res.value[0]);
      else setSweepDone(res.value);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setJob(null);
    }
  }

  async function run(mode: { resume?: boolean; overwrite?: boolean } = {}) {
    if (!target || !plan) return;
    const id = newJobId('merge');
    setJob(id);
    setResult(null);
    setError(null);
    setProgress({ bytesDone: 0, bytesTotal: plan.totalBytes, resumedBytes: 0, tensor: '', tensorsDone: 0, tensorsTotal: plan.tensors, file: '', elapsedMs: 0 });
    samples.current = [];
    const s = useStudio.getState();
    await askPersistence(target);
    try {
      const res = await studio.merge(
        id,
        s.recipe,
        bindings(s),
        target,
        { overwrite: mode.overwrite ?? (overwrite || !!(result && !result.cancelled)), resume: mode.resume ?? false },
        listener(track),
      );
      if (res.ok) setResult(res.value);
      else setError(res.error);
      // After a finished merge the folder holds this child: the next run would replace it.
      if (res.ok && !res.value.cancelled) setOverwrite(false);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setJob(null);
      void recheck(target).then(setCheck);
    }
  }

  const rate = throughput(samples.current, progress);
  const eta = progress && rate > 0 ? ((progress.bytesTotal - progress.bytesDone) / rate) * 1000 : NaN;
  const pct = progress && progress.bytesTotal ? (100 * progress.bytesDone) / progress.bytesTotal : 0;
  const planFiles = plan?.files ?? [];
  const replaced = check ? planFiles.filter((f) => check.existing.includes(f.name)).map((f) => f.name) : [];
  const others = check ? check.existing.filter((f) => !planFiles.some((p) => p.name === f)) : [];
  const shardLike = /^model-\d{5}-of-\d{5}\.safetensors(\.partial)?$|^model\.safetensors$/;
  const interrupted = check?.interrupted;
  // An interrupted merge's files are handled by Resume / Start over / Discard, not the overwrite box.
  const clash = check && !interrupted ? check.existing.filter((f) => planFiles.some((p) => p.name === f) || shardLike.test(f)) : [];
  const tooBig = check?.freeBytes !== undefined && plan ? plan.totalBytes > check.freeBytes : false;

  return (
    <div className="sheet-backdrop" onClick={(e) => e.target === e.currentTarget && !job && close()}>
      <div className="sheet" role="dialog" aria-modal="true" aria-label="Merge" data-testid="merge-dialog">
        <div className="sheet-head">
          <h2>Merge</h2>
          <span className="muted">{plan ? plan.description : planError}</span>
          <span className="grow" />
          <button className="icon-btn" aria-label="Close" disabled={!!job} onClick={close}>
            ×
          </button>
        </div>
        <div className="sheet-body">
          <div className="sheet-col">
            <h3>Output folder</h3>
            <div className="row wrap">
              {hasDirectoryPicker ? (
                <button className="btn primary" disabled={!!job} onClick={() => void pickFolder()} data-testid="pick-output">
                  Choose output folder…
                </button>
              ) : (
                <span className="note warn">Writing to a folder needs Chrome or Edge 86+, or Opera (File System Access API).</span>
              )}
              <span className="muted small">or</span>
              <input className="input" value={opfsName} onChange={(e) => setOpfsName(e.target.value.replace(/[\\/]/g, '-'))} aria-label="Browser storage folder" disabled={!!job} />
              <button className="btn" disabled={!!job || !opfsName} onClick={() => void useTarget({ kind: 'opfs', folder: opfsName })} data-testid="use-opfs" title="The browser's private storage (OPFS): for trying small models; files stay inside the browser">
                Use browser storage
              </button>
            </div>
            <StoredChildren refresh={`${result?.elapsedMs ?? ""}:${sweepDone?.[0]?.elapsedMs ?? ""}`} busy={!!job} />
            {check && (
              <div className={`check ${check.ok ? '' : 'bad'}`} data-testid="output-check">
                <div>
                  <b>{target?.kind === 'opfs' ? `browser storage / ${check.name}` : check.name}</b>
                  {check.freeBytes !== undefined && <span className="muted"> · {formatBytes(check.freeBytes)} free</span>}
                </div>
                {check.problems.map((p, i) => (
                  <div className="err-text" key={i}>
                    {p}
                  </div>
                ))}
                {tooBig && <div className="err-text">Not enough space: the child needs {formatBytes(plan!.totalBytes)}.</div>}
                {clash.length > 0 && !(result && !result.cancelled) && (
                  <label className="check warn-text">
                    <input type="checkbox" checked={overwrite} onChange={(e) => setOverwrite(e.target.checked)} data-testid="overwrite" />
                    The folder holds an earlier child ({clash.slice(0, 3).join(', ')}
                    {clash.length > 3 ? ` and ${clash.length - 3} more` : ''}): replace it
                  </label>
                )}
                {replaced.length > 0 && clash.length === 0 && <div className="warn-text">Replaces {replaced.join(', ')}</div>}
                {others.length > 0 && <div className="muted small">{others.length} other file{others.length === 1 ? '' : 's'} in the folder stay untouched.</div>}
                {!check.canRename && <div className="muted small">This browser cannot rename files: shards are written under their final names.</div>}
                {interrupted && !job && (
                  <div className="interrupted" data-testid="interrupted">
                    <div>
                      <b>An interrupted merge is here:</b> {interrupted.shards} of {interrupted.of} shards complete.{' '}
                      {interrupted.resumable ? 'Resume keeps them (each is checked) and writes the rest.' : <span className="warn-text">It cannot be resumed: {interrupted.why}.</span>}
                    </div>
                    <div className="row">
                      {interrupted.resumable && (
                        <button className="btn primary" disabled={!check.ok || !plan} onClick={() => void run({ resume: true })} data-testid="resume-merge">
                          Resume
                        </button>
                      )}
                      <button className="btn" disabled={!check.ok || !plan} onClick={() => void run({ overwrite: true })} data-testid="restart-merge">
                        Start over
                      </button>
                      <button className="btn ghost" onClick={() => void discard()} data-testid="discard-merge" title="Removes its temporary files and journal; nothing else in the folder">
                        Discard
                      </button>
                    </div>
                  </div>
                )}
              </div>
            )}
            <div className="sweep-box" data-testid="sweep">
              <label className="check">
                <input type="checkbox" checked={sweepOn} disabled={!!job} onChange={(e) => setSweepOn(e.target.checked)} data-testid="sweep-on" />
                Sweep λ: one child per value, the parents read once
              </label>
              {sweepOn && (
                <div className="row wrap">
                  <select className="input" value={sweepRule} onChange={(e) => setSweepRule(Number(e.target.value))} aria-label="Rule to sweep" disabled={!!job}>
                    {recipe.rules.map((_, i) => (
                      <option key={i} value={i}>
                        rule {i + 1}
                      </option>
                    ))}
                  </select>
                  <input className="input mono" value={sweepText} onChange={(e) => setSweepText(e.target.value)} aria-label="λ values" data-testid="sweep-lambdas" disabled={!!job} />
                  <span className={`small ${typeof sweep === 'string' ? 'err-text' : 'muted'}`} data-testid="sweep-note">
                    {typeof sweep === 'string'
                      ? sweep
                      : sweep && `λ is the donor's share; children in ${target?.kind === 'opfs' ? target.folder : (check?.name ?? 'the folder')}/${sweep.map((c) => c.name).join(', ')}`}
                  </span>
                </div>
              )}
            </div>
            {error && (
              <div className="err-box" role="alert">
                {error}
              </div>
            )}
            {progress && (job || result || sweepDone) && (
              <div className="merge-progress" data-testid="merge-progress">
                <div className="progress">
                  <div style={{ width: `${result && !result.cancelled ? 100 : pct}%` }} />
                </div>
                <div className="prog-figures mono">
                  <span>
                    {formatBytes(progress.bytesDone)} / {formatBytes(progress.bytesTotal)}
                  </span>
                  <span>{rate > 0 ? `${formatBytes(rate)}/s` : '—'}</span>
                  <span>{job ? (Number.isFinite(eta) ? `${formatDuration(eta)} left` : 'estimating…') : formatDuration(progress.elapsedMs)}</span>
                  <span>
                    {formatCount(progress.tensorsDone)} / {formatCount(progress.tensorsTotal)} tensors
                  </span>
                </div>
                {job && <div className="muted mono small ellipsis">{progress.tensor || 'starting…'}</div>}
              </div>
            )}
            {result && <Summary r={result} opfs={target?.kind === 'opfs' ? target.folder : undefined} />}
            {sweepDone && (
              <div className="summary" data-testid="merge-summary">
                <b>Done.</b> {sweepDone.length} children, {formatBytes(sweepDone.reduce((a, r) => a + r.bytesWritten, 0))} in {formatDuration(sweepDone[0]?.elapsedMs ?? 0)}:
                <ul className="note-list">
                  {sweepDone.map((r) => (
                    <li key={r.folder}>
                      <span className="mono">{r.folder}</span>: {r.files.length} files, {formatBytes(r.bytesWritten)}
                    </li>
                  ))}
                </ul>
                {sweepDone[0]?.runners && (
                  <div className="muted small" data-testid="merge-runners">
                    {sweepDone[0].runners} (one pass for every child).
                  </div>
                )}
              </div>
            )}
          </div>
          <div className="sheet-col files">
            <h3>
              To be written: {planFiles.length} files, {plan ? formatBytes(plan.totalBytes) : '—'}
            </h3>
            <div className="file-list" data-testid="file-list">
              {planFiles.map((f) => (
                <div className="file-row" key={f.name}>
                  <span className="mono">{f.name}</span>
                  <span className="muted">{f.what}</span>
                  <span className="mono">{formatBytes(f.bytes)}</span>
                </div>
              ))}
            </div>
          </div>
        </div>
        <div className="sheet-foot">
          {job ? (
            <button className="btn danger" onClick={() => void studio.cancel(job)} data-testid="cancel-merge">
              Cancel
            </button>
          ) : (
            sweep !== null ? (
              <button className="btn primary" disabled={!check?.ok || typeof sweep === 'string'} onClick={() => typeof sweep !== 'string' && void runSweep(sweep)} data-testid="run-merge">
                {typeof sweep === 'string' ? 'Start sweep' : `Start sweep: ${sweep.length} children`}
              </button>
            ) : (
            <button className="btn primary" disabled={!check?.ok || !plan || tooBig || !!interrupted || (clash.length > 0 && !overwrite && !(result && !result.cancelled))} onClick={() => void run()} data-testid="run-merge">
              {result && !result.cancelled ? 'Merge again (replaces it)' : 'Start merge'}
            </button>
            )
          )}
        </div>
      </div>
    </div>
  );
}

/** Browser storage may be evicted under pressure unless the site is granted persistence: ask first. */
async function askPersistence(target: OutputTarget): Promise<void> {
  if (target.kind !== 'opfs' || !navigator.storage?.persist) return;
  const persisted = await navigator.storage.persisted().catch(() => false);
  if (!persisted && !(await navigator.storage.persist().catch(() => false))) {
    notify('info', 'The browser did not grant persistent storage: it may evict the child under disk pressure. Save it to a folder or download it when the merge is done.');
  }
}

/** A child in browser storage, to its user's disk: the files streamed from OPFS, never whole in memory. */
async function opfsFiles(folder: string): Promise<File[]> {
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
  const out: File[] = [];
  for await (const [, h] of dir.entries()) if (h.kind === 'file' && !h.name.startsWith('.')) out.push(await (h as FileSystemFileHandle).getFile());
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function saveToFolder(folder: string): Promise<void> {
  let dest: FileSystemDirectoryHandle;
  try {
    dest = await window.showDirectoryPicker!({ id: 'moe-child', mode: 'readwrite' });
  } catch (e) {
    if ((e as { name?: string }).name !== 'AbortError') notify('error', `The folder could not be opened: ${String(e)}`);
    return;
  }
  const into = await dest.getDirectoryHandle(folder, { create: true });
  let names = 0;
  for await (const _ of into.keys()) names++;
  if (names > 0 && !window.confirm(`“${dest.name}/${folder}” already holds ${names} files. Replace the child's files in it?`)) return;
  const files = await opfsFiles(folder);
  for (const f of files) {
    const out = await (await into.getFileHandle(f.name, { create: true })).createWritable();
    await f.stream().pipeTo(out);
  }
  notify('info', `Saved ${files.length} files (${formatBytes(files.reduce((a, f) => a + f.size, 0))}) to “${dest.name}/${folder}”.`);
}

async function download(folder: string): Promise<void> {
  for (const f of await opfsFiles(folder)) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(f);
    a.download = f.name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  }
}

interface StoredChild {
  name: string;
  files: number;
  bytes: number;
  modified: number;
}

/** The children kept in this browser's storage: folders of the origin-private file system. */
async function storedChildren(): Promise<StoredChild[]> {
  const root = await navigator.storage.getDirectory();
  const out: StoredChild[] = [];
  for await (const [name, h] of root.entries()) {
    if (h.kind !== 'directory') continue;
    const c: StoredChild = { name, files: 0, bytes: 0, modified: 0 };
    for await (const [, f] of (h as FileSystemDirectoryHandle).entries()) {
      if (f.kind !== 'file') continue;
      const file = await (f as FileSystemFileHandle).getFile();
      c.files++;
      c.bytes += file.size;
      c.modified = Math.max(c.modified, file.lastModified);
    }
    out.push(c);
  }
  return out.sort((a, b) => b.modified - a.modified);
}

/** "In browser storage": each kept child with its size and date, to save, download or delete. */
function StoredChildren({ refresh, busy }: { refresh: string; busy: boolean }) {
  const [list, setList] = useState<StoredChild[] | null>(null);
  const [again, setAgain] = useState(0);
  useEffect(() => {
    let live = true;
    void storedChildren()
      .then((l) => live && setList(l))
      .catch(() => live && setList([]));
    return () => {
      live = false;
    };
  }, [refresh, again]);
  if (!list || list.length === 0) return null;
  const remove = async (c: StoredChild) => {
    if (!window.confirm(`Delete “${c.name}” (${c.files} files, ${formatBytes(c.bytes)}) from this browser's storage?`)) return;
    await (await navigator.storage.getDirectory()).removeEntry(c.name, { recursive: true });
    setAgain((n) => n + 1);
  };
  return (
    <details className="stored" data-testid="stored-children">
      <summary>
        In this browser's storage: {list.length} folder{list.length === 1 ? '' : 's'}, {formatBytes(list.reduce((a, c) => a + c.bytes, 0))}
      </summary>
      {list.map((c) => (
        <div className="stored-row" key={c.name} data-testid="stored-child">
          <span className="mono ellipsis" title={c.name}>
            {c.name}
          </span>
          <span className="muted small">
            {c.files} files · {formatBytes(c.bytes)} · {c.modified ? new Date(c.modified).toLocaleString() : '—'}
          </span>
          {hasDirectoryPicker && (
            <button className="btn small" disabled={busy} onClick={() => void saveToFolder(c.name).catch((e: unknown) => notify('error', `Saving failed: ${String(e)}`))}>
              Save…
            </button>
          )}
          <button className="btn small" disabled={busy} onClick={() => void download(c.name).catch((e: unknown) => notify('error', `Download failed: ${String(e)}`))}>
            Download
          </button>
          <button className="btn small ghost" disabled={busy} onClick={() => void remove(c)} aria-label={`Delete ${c.name}`}>
            Delete
          </button>
        </div>
      ))}
    </details>
  );
}

/** What the child is made of: how each tensor was made, per kind and parent, and its files. */
function Report({ r }: { r: MergeResult }) {
  const plan = useStudio((s) => s.plan);
  const rep = r.report as { tensors?: number; copied?: number; converted?: number; mixed?: number; assembled?: number; muted?: number; patched?: number; thresholdKept?: number; threshold?: unknown[] } | undefined;
  const made = rep
    ? [
        [rep.copied, 'copied'],
        [rep.converted, 'converted'],
        [rep.mixed, 'mixed'],
        [rep.assembled, 'assembled'],
        [rep.muted, 'with muted experts'],
        [rep.patched, 'router biases edited'],
      ].filter(([n]) => (n as number) > 0)
    : [];
  return (
    <div className="report" data-testid="merge-report">
      {rep && (
        <p>
          {formatCount(rep.tensors ?? 0)} tensors: {made.map(([n, what]) => `${formatCount(n as number)} ${what}`).join(', ')}
          {rep.threshold && rep.threshold.length > 0 ? `; the threshold kept ${rep.thresholdKept} of ${rep.threshold.length} from the base` : ''}.
        </p>
      )}
      {plan && <KindTable plan={plan} />}
      <details>
        <summary>{r.files.length} files</summary>
        {r.files.map((f) => (
          <div className="file-row" key={f.name}>
            <span className="mono">{f.name}</span>
            <span className="muted">{f.what}</span>
            <span className="mono">{formatBytes(f.bytes)}</span>
          </div>
        ))}
      </details>
    </div>
  );
}

function Summary({ r, opfs }: { r: MergeResult; opfs?: string | undefined }) {
  if (r.cancelled) {
    return (
      <div className="summary bad" data-testid="merge-summary">
        Cancelled after {formatDuration(r.elapsedMs)}. Nothing looks like a finished model: there is no index and no shard under its final name.{' '}
        {r.kept
          ? `${r.kept.shards} of ${r.kept.of} shards (${formatBytes(r.kept.bytes)}) are complete and kept: resume to write the rest, or discard them.`
          : 'The unfinished files were removed.'}
      </div>
    );
  }
  return (
    <div className="summary" data-testid="merge-summary">
      <b>Done.</b> {formatBytes(r.bytesWritten)} in {r.files.length} files written to “{r.folder}” in {formatDuration(r.elapsedMs)} (
      {formatBytes(r.bytesWritten / Math.max(0.001, r.elapsedMs / 1000))}/s){r.resumedShards > 0 ? `, ${r.resumedShards} shards kept from the interrupted merge` : ''}.
      {r.runners && (
        <div className="muted small" data-testid="merge-runners">
          {r.runners}.
        </div>
      )}
      {opfs !== undefined && (
        <div className="row take-home">
          <span className="muted small">It is in this browser's storage. Take it home:</span>
          {hasDirectoryPicker && (
            <button className="btn small" onClick={() => void saveToFolder(opfs).catch((e: unknown) => notify('error', `Saving failed: ${String(e)}`))} data-testid="save-to-folder">
              Save to folder…
            </button>
          )}
          <button className="btn small" onClick={() => void download(opfs).catch((e: unknown) => notify('error', `Download failed: ${String(e)}`))} data-testid="download-child">
            Download {r.files.length} files
          </button>
        </div>
      )}
      {r.notices.length > 0 && (
        <ul className="note-list">
          {r.notices.map((n, i) => (
            <li key={i}>{n}</li>
          ))}
        </ul>
      )}
      {r.warnings.length > 0 && (
        <ul className="warn-list">
          {r.warnings.slice(0, 10).map((w, i) => (
            <li key={i}>{w}</li>
          ))}
        </ul>
      )}
      <Report r={r} />
      {r.report !== undefined && (
        <details>
          <summary>Engine report (JSON)</summary>
          <pre className="summary-text">{JSON.stringify(r.report, null, 2).slice(0, 20000)}</pre>
        </details>
      )}
    </div>
  );
}

/** Bytes per second over the last few seconds of samples (overall when fewer). */
function throughput(samples: Sample[], p: MergeProgress | null): number {
  if (!p || samples.length === 0) return 0;
  const last = samples[samples.length - 1]!;
  let first = samples[0]!;
  for (const s of samples) if (last.t - s.t <= 5000) {
    first = s;
    break;
  }
  if (last.t - first.t < 300) return p.elapsedMs > 0 ? (p.bytesDone / p.elapsedMs) * 1000 : 0;
  return ((last.bytes - first.bytes) / (last.t - first.t)) * 1000;
}
