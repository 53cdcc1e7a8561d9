// Output dtype and shard size.
import { useEffect, useState } from 'react';
import { updateRecipe, useStudio } from '../../store.ts';
import { Section } from './Section.tsx';

export function Output() {
  const output = useStudio((s) => s.recipe.output);
  const [shard, setShard] = useState(String(output.shard_size));
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => setShard(String(output.shard_size)), [output.shard_size]);
  return (
    <Section title="Output">
      <div className="row">
        <label className="field inline">
          <span>dtype</span>
          <select className="input" value={output.dtype} onChange={(e) => updateRecipe((r) => ({ ...r, output: { ...r.output, dtype: e.target.value as typeof output.dtype } }))} aria-label="Output dtype">
            <option value="keep">keep (each tensor's own)</option>
            <option value="bf16">bf16</option>
            <option value="f16">f16</option>
            <option value="f32">f32</option>
          </select>
        </label>
        <label className="field inline">
          <span>shard size</span>
          <input
            className="input"
            value={shard}
            aria-label="Shard size"
            onChange={(e) => setShard(e.target.value)}
            onBlur={() => {
              if (!/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/i.test(shard)) return setErr('a size like 5GB or 500MB');
              setErr(null);
              updateRecipe((r) => ({ ...r, output: { ...r.output, shard_size: /^\d+$/.test(shard.trim()) ? Number(shard.trim()) : shard.trim() } }));
            }}
          />
        </label>
      </div>
      {err && <div className="err-text small">{err}</div>}
      <p className="muted small">keep: FP8 weights stay FP8 (mixed ones are requantized with fresh 128×128 block scales); the router bias always keeps its F32.</p>
    </Section>
  );
}
