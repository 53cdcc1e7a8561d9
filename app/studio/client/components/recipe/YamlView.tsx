// The recipe as YAML, as the CLI reads it: edit, validate, import and export.
import { useEffect, useRef, useState } from 'react';
import { studio } from '../../bridge.ts';
import { notify, setRecipe, useStudio, type ParentEntry } from '../../store.ts';

export function YamlView() {
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
