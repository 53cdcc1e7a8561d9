// Left: the parents (2 to 8), their shape, and whether they can be merged.
import { useRef, useState } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { formatBytes, formatCount, formatIndexList } from '../../shared/format.ts';
import type { CompatProblem } from '../../shared/studio-api.ts';
import { hasDirectoryPicker, openFromHub, openFromInput, pickParentFolder, setHubToken } from '../open-parents.ts';
import { dropParent } from '../../shared/recipe-tools.ts';
import { baseParent, forget, removeParent, renameParent, reopenRecent, setBase, updateRecipe, useStudio, type ParentEntry } from '../store.ts';

export function ParentsPanel() {
  const parents = useStudio((s) => s.parents);
  const opening = useStudio((s) => s.opening);
  const recents = useStudio((s) => s.recents);
  useStudio((s) => s.recipe.base);
  const base = baseParent(useStudio.getState());
  const inputRef = useRef<HTMLInputElement>(null);
  const openIds = new Set(parents.map((p) => p.summary.folderName + '|' + p.name));
  const closedRecents = recents.filter((r) => !openIds.has(r.folderName + '|' + r.name) && !parents.some((p) => p.name === r.name));

  return (
    <section className="panel left-panel" aria-label="Parents">
      <div className="panel-head">
        <h2>Parents</h2>
        <span className="muted">{parents.length} of 2–8</span>
      </div>
      <div className="open-row">
        {hasDirectoryPicker ? (
          <button className="btn primary" onClick={() => void pickParentFolder()} data-testid="open-folder">
            Open model folder…
          </button>
        ) : (
          <button className="btn primary" onClick={() => inputRef.current?.click()}>
            Choose model folder…
          </button>
        )}
        <input
          ref={inputRef}
          type="file"
          data-testid="folder-input"
          aria-label="Model folder"
          // @ts-expect-error: webkitdirectory is not in React's input attributes
          webkitdirectory=""
          directory=""
          multiple
          hidden
          onChange={(e) => {
            void openFromInput(e.currentTarget.files);
            e.currentTarget.value = '';
          }}
        />
      </div>
      <p className="drop-hint muted">
        or drop model folders anywhere on the page
        {hasDirectoryPicker && (
          <>
            {' · '}
            <button className="link" onClick={() => inputRef.current?.click()} title="The browser's file dialog: read-only, and the folder cannot be reopened after a reload">
              file dialog
            </button>
          </>
        )}
      </p>
      <HubOpen />
      {!hasDirectoryPicker && (
        <div className="note warn" role="note" data-testid="no-fsa">
          This browser has no File System Access API. Parents can still be read (file dialog or drop), but writing a merged model and reopening
          folders after a reload need Chrome or Edge 86+, or Opera.
        </div>
      )}

      {opening.map((o, k) => (
        <div className="card opening" key={`${o}-${k}`}>
          <span className="spinner" /> Opening {o}… reading headers
        </div>
      ))}

      <div className="parent-list">
        {parents.map((p) => (
          <ParentCard key={p.id} p={p} isBase={p.id === base?.id} />
        ))}
      </div>

      <MissingParents />
      {parents.length >= 2 && <Compat />}

      {closedRecents.length > 0 && (
        <div className="recents">
          <div className="sub-head">
            <h3>Recent folders</h3>
            {closedRecents.length > 1 && (
              <button
                className="btn ghost small"
                onClick={async () => {
                  // Oldest first, so the parents come back in the order they were opened.
                  for (const r of [...closedRecents].reverse()) if (!(await reopenRecent(r))) break;
                }}
              >
                Reopen all
              </button>
            )}
          </div>
          {closedRecents.map((r) => (
            <div className="recent" key={`${r.folderName}-${r.openedAt}`} data-testid="recent">
              <div>
                <b>{r.name}</b>
                <div className="muted small mono">{r.folderName}</div>
              </div>
              <button className="btn small" onClick={() => void reopenRecent(r)} title="Asks the browser for read access again">
                Reopen
              </button>
              <button className="icon-btn" aria-label={`Forget ${r.name}`} onClick={() => void forget(r)}>
                ×
              </button>
            </div>
          ))}
        </div>
      )}
    </section>
  );
}

/** "From the Hub": a model id (and a token for gated or private repos) opened by range requests. */
function HubOpen() {
  const [ref, setRef] = useState('');
  const [token, setToken] = useState('');
  const [showToken, setShowToken] = useState(false);
  const submit = () => {
    setHubToken(token);
    if (ref.trim() !== '') void openFromHub(ref).then(() => setRef(''));
  };
  return (
    <form
      className="hub-open"
      aria-label="From the Hub"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <label className="small muted" htmlFor="hub-ref">
        From the Hub
      </label>
      <div className="hub-row">
        <input
          id="hub-ref"
          data-testid="hub-ref"
          className="mono"
          placeholder="ORG/NAME or hf://ORG/NAME@REV"
          value={ref}
          spellCheck={false}
          autoComplete="off"
          onChange={(e) => setRef(e.currentTarget.value)}
        />
        <button className="btn small" type="submit" disabled={ref.trim() === ''} data-testid="hub-open">
          Open
        </button>
      </div>
      {showToken ? (
        <input
          data-testid="hub-token"
          type="password"
          className="mono"
          aria-label="Hub access token"
          placeholder="hf_… (gated or private repos)"
          value={token}
          autoComplete="off"
          onChange={(e) => {
            setToken(e.currentTarget.value);
            setHubToken(e.currentTarget.value);
          }}
          title="Kept in this tab's memory only and sent to the Hub only; gone when the tab closes"
        />
      ) : (
        <button type="button" className="link small" onClick={() => setShowToken(true)} data-testid="hub-token-show">
          token for gated or private repos…
        </button>
      )}
    </form>
  );
}

/** Parents the recipe names (restored or imported) that are not open. */
function MissingParents() {
  const recipeParents = useStudio((s) => s.recipe.parents);
  const parents = useStudio((s) => s.parents);
  const missing = Object.entries(recipeParents).filter(([name]) => !parents.some((p) => p.name === name));
  if (missing.length === 0) return null;
  return (
    <div className="note" data-testid="missing-parents">
      The recipe also names{' '}
      {missing.map(([name, path], i) => (
        <span key={name}>
          {i > 0 ? ', ' : ''}
          <b>{name}</b> <span className="muted mono">({path})</span>
          {path.startsWith('hf://') && (
            <>
              {' '}
              <button className="link" onClick={() => void openFromHub(path, name)}>
                open from the Hub
              </button>
            </>
          )}
        </span>
      ))}
      : open {missing.length === 1 ? 'it' : 'them'} (a recent folder reopens under its name), or{' '}
      <button className="link" onClick={() => updateRecipe((r) => missing.reduce((acc, [name]) => dropParent(acc, name), r))}>
        drop {missing.length === 1 ? 'it' : 'them'} from the recipe
      </button>
      .
    </div>
  );
}

function ParentCard({ p, isBase }: { p: ParentEntry; isBase: boolean }) {
  const [name, setName] = useState(p.name);
  const [err, setErr] = useState<string | null>(null);
  const [open, setOpen] = useState(false);
  const s = p.summary;
  const commit = () => {
    const e = renameParent(p.id, name.trim());
    setErr(e);
    if (e) setName(p.name);
  };
  return (
    <div className={`card parent ${isBase ? 'is-base' : ''}`} data-testid="parent-card">
      <div className="parent-top">
        <input
          className="name-input"
          value={name}
          aria-label="Parent name"
          onChange={(e) => setName(e.target.value)}
          onBlur={commit}
          onKeyDown={(e) => e.key === 'Enter' && (e.target as HTMLInputElement).blur()}
        />
        {isBase ? (
          <span className="badge base" title="Attention, embeddings, norms, router and unmatched tensors come from the base">
            base
          </span>
        ) : (
          <button className="btn ghost small" onClick={() => setBase(p.id)}>
            make base
          </button>
        )}
        <button className="icon-btn" aria-label={`Close ${p.name}`} onClick={() => removeParent(p.id)}>
          ×
        </button>
      </div>
      {err && <div className="err-text small">{err}</div>}
      <div className="muted small mono folder" title={s.folderName}>
        {s.folderName} {p.handle ? '' : '· files'}
      </div>
      <dl className="facts">
        <dt>architecture</dt>
        <dd>
          {s.arch}
          {s.modelType && s.modelType !== s.arch ? <span className="muted"> ({s.modelType})</span> : null}
        </dd>
        <dt>layers</dt>
        <dd>
          {s.layers}{' '}
          <span className="muted">
            ({s.denseLayers.length} dense{s.denseLayers.length ? `: ${formatIndexList(s.denseLayers)}` : ''}, {s.moeLayers.length} MoE)
          </span>
        </dd>
        <dt>experts</dt>
        <dd>
          {s.experts} routed{s.expertsPerToken ? `, top ${s.expertsPerToken}` : ''}
          {s.sharedExperts ? `, ${s.sharedExperts} shared` : ', no shared'}
        </dd>
        <dt>dtypes</dt>
        <dd className="chips">
          {s.dtypes.map((d) => (
            <span key={d.dtype} className="chip" title={`${formatCount(d.tensors)} weights, ${formatBytes(d.bytes)}`}>
              {d.dtype}
            </span>
          ))}
        </dd>
        <dt>size</dt>
        <dd>
          {formatBytes(s.sizeOnDisk)} <span className="muted">· {formatCount(s.tensorCount)} weights · {s.shardCount} shard{s.shardCount === 1 ? '' : 's'}</span>
        </dd>
        <dt>router</dt>
        <dd title={s.edits.map((e) => `${e.action}: ${e.available ? (e.exact ? 'exact' : 'not exact') : 'refused'} — ${e.why}`).join('\n')} data-testid="router-kind">
          {s.routerBias === 'selection' ? 'selection bias' : s.routerBias === 'logits' ? 'logit bias' : 'no bias'}
          {' · '}
          {s.edits.filter((e) => e.available && e.exact).map((e) => e.action).join(', ')} exact
        </dd>
        <dt>layout</dt>
        <dd title={s.fusedLayouts.join('\n')} data-testid="expert-layout">
          {s.expertLayout === 'fused' ? 'fused tensors' : s.expertLayout === 'per-expert' ? 'one tensor each' : 'mixed layout'}
          {s.fusedLayouts.length > 0 && <span className="muted small"> · {s.fusedLayouts[0]}{s.fusedLayouts.length > 1 ? ` (+${s.fusedLayouts.length - 1})` : ''}</span>}
        </dd>
        <dt>formats</dt>
        <dd className="chips">
          {s.formats.map((f) => (
            <span key={f.format} className="chip" title={`${formatCount(f.weights)} weights, ${formatBytes(f.bytes)}`}>
              {f.format}
            </span>
          ))}
        </dd>
      </dl>
      {s.text && (
        <button className="link small" onClick={() => setOpen(!open)}>
          {open ? 'hide details' : 'details'}
        </button>
      )}
      {open && <pre className="summary-text">{s.text}</pre>}
    </div>
  );
}

function Compat() {
  const compat = useStudio((s) => s.compat);
  const scrollRef = useRef<HTMLDivElement>(null);
  const problems: CompatProblem[] = compat?.problems ?? [];
  const virt = useVirtualizer({ count: problems.length, getScrollElement: () => scrollRef.current, estimateSize: () => 40, overscan: 10 });
  if (!compat) return null;
  const errors = problems.filter((p) => p.severity === 'error').length;
  const warnings = problems.filter((p) => p.severity === 'warning').length;
  return (
    <div className="compat" data-testid="compat">
      <div className="sub-head">
        <h3>Compatibility</h3>
        {compat.ok ? <span className="badge ok">mergeable</span> : <span className="badge err">not mergeable</span>}
      </div>
      <div className="muted small">
        {errors} error{errors === 1 ? '' : 's'}, {warnings} warning{warnings === 1 ? '' : 's'}
        {problems.length === 0 ? ': same skeleton, same tensor names, shapes and dtypes.' : ''}
      </div>
      {problems.length > 0 && (
        <div className="compat-list" ref={scrollRef}>
          <div style={{ height: virt.getTotalSize(), position: 'relative' }}>
            {virt.getVirtualItems().map((v) => {
              const p = problems[v.index]!;
              return (
                <div
                  key={v.key}
                  ref={virt.measureElement}
                  data-index={v.index}
                  className={`problem sev-${p.severity}`}
                  style={{ position: 'absolute', top: 0, left: 0, right: 0, transform: `translateY(${v.start}px)` }}
                >
                  <span className="sev">{p.severity}</span> <b>{p.parent}</b>
                  {p.tensor && <span className="mono small tensor"> {p.tensor}</span>}
                  <div>{p.message}</div>
                </div>
              );
            })}
          </div>
        </div>
      )}
    </div>
  );
}
