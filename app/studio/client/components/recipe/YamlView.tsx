// The recipe as YAML, as the CLI reads it: edit, validate, import and export.
import { useEffect, useRef, useState } from 'react';
import { studio } from '../../bridge.ts';
import { setRecipe, useStudio, type ParentEntry } from '../../store.ts';
import { importRecipeFile } from '../../open-parents.ts';

export function YamlView() {
  const recipe = useStudio((s) => s.recipe);
  const planError = useStudio((s) => s.planError);
  const [text, setText] = useState('');
  const error = useStudio((s) => s.yamlError);
  const setError = (e: string | null) => useStudio.setState({ yamlError: e });
  // Leaving the tab drops the draft, and with it its error.
  useEffect(() => () => useStudio.setState({ yamlError: null }), []);
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
        <span className={`small ${error || planError ? 'err-text' : 'muted'}`} data-testid="yaml-status">
          {error ? 'invalid YAML: Merge waits until it is fixed' : dirty ? 'checking…' : planError ? 'valid YAML, but the recipe cannot run (see above)' : 'valid'}
        </span>
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
            setDirty(false);
            setError(null);
            await importRecipeFile(f);
          }}
        />
      </div>
      {error && (
        <div className="err-box" role="alert" data-testid="yaml-error">
          {error}
        </div>
      )}
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
      <p className="muted small">
        The CLI reads this file as it is: <span className="mono">moe-studio merge recipe.yaml OUT</span>. Parent paths are the folder names; change them to the
        paths on the machine that runs the CLI.
      </p>
    </div>
  );
}

export type { ParentEntry };
