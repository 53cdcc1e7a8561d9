// scripts/collect_routing.py, the collector users run where the model runs: its counting, on tiny
// PyTorch models with known routing (test/python/collect_routing_check.py), checked here against
// counts computed independently from the prompts' token ids; its files read by the engine and the
// CLI. Covered: the transformers >= 5 experts hook, both router fallbacks, prompt / generated /
// both counting through generate(), the loss, appending a set. Not covered here: loading a real
// transformers model (needs the weights and transformers >= 5; see the README).
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseRoutingFile } from '../app/engine/routing/format.ts';
import { ROOT, runCli, tempDir } from './support/cli.ts';

/** A Python with PyTorch: $PYTHON, else Debian's (npm test installs python3-torch where it can). */
function pythonWithTorch(): string | undefined {
  for (const py of [process.env.PYTHON, '/usr/bin/python3', 'python3']) {
    if (py && spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0) return py;
  }
  return undefined;
}
const python = pythonWithTorch();
if (!python) console.warn('collect-routing.test.ts: no Python with PyTorch (apt-get install python3-torch, or set PYTHON): the collector tests are skipped');

describe.skipIf(!python)('the routing collector (scripts/collect_routing.py)', () => {
  let out = '';
  let manifest: { prompts: number[][]; E: number; layers: number[]; V: number; refused: string };
  beforeAll(() => {
    out = tempDir('collector');
    const r = spawnSync(python!, [path.join(ROOT, 'test/python/collect_routing_check.py'), out], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  }, 120_000);

  /** The tiny models' routing: token t at layer l → (t + l) % E at 0.75, (2t + l + 1) % E (next if equal) at 0.25. */
  const route = (t: number, l: number, E: number) => {
    const a = (t + l) % E;
    let b = (2 * t + l + 1) % E;
    if (b === a) b = (b + 1) % E;
    return [a, b] as const;
  };
  /** Tokens routed: each prompt's, and with generate(N) the N − 1 new tokens fed back (the last is never routed). */
  const tokensOf = (counted: 'prompt' | 'generated' | 'both', generate: number) =>
    manifest.prompts.flatMap((p) => {
      const gen: number[] = [];
      let t = p[p.length - 1]!;
      for (let k = 0; k < generate - 1; k++) gen.push((t = (t * 5 + 3) % manifest.V));
      return counted === 'prompt' ? p : counted === 'generated' ? gen : [...p, ...gen];
    });
  const expected = (tokens: number[]) =>
    manifest.layers.map((l) => {
      const sel = new Array<number>(manifest.E).fill(0);
      const gate = new Array<number>(manifest.E).fill(0);
      for (const t of tokens) {
        const [a, b] = route(t, l, manifest.E);
        sel[a]++;
        sel[b]++;
        gate[a] += 0.75;
        gate[b] += 0.25;
      }
      return { sel, gate };
    });
  const read = (name: string) => parseRoutingFile(readFileSync(path.join(out, `${name}.routing.json`), 'utf8'), name);

  it('counts the chosen experts and their weights from the experts module\'s top_k_index, for prompt, generated and both', () => {
    for (const [name, counted, generate] of [['experts-prompt', 'prompt', 0], ['experts-generated', 'generated', 3], ['experts-both', 'both', 3]] as const) {
      const f = read(name);
      expect(f.model).toMatchObject({ model_type: 'tiny_moe', layers: manifest.layers, experts: 8, top_k: 2 });
      expect((f as { collector?: { hook: string } }).collector?.hook).toBe('experts');
      const s = f.sets[0]!;
      const tokens = tokensOf(counted, generate);
      expect([s.counted, s.prompts]).toEqual([counted, manifest.prompts.length]);
      expect(s.tokens).toEqual(manifest.layers.map(() => tokens.length));
      const want = expected(tokens);
      expect(s.selected).toEqual(want.map((w) => w.sel));
      expect(s.gate_weight).toEqual(want.map((w) => w.gate));
      expect(s.saliency).toBeNull();
    }
    // The loss: the tiny model's loss is its input's length, weighted by the next-token count.
    const lens = manifest.prompts.map((p) => p.length);
    const mean = lens.reduce((a, n) => a + n * (n - 1), 0) / lens.reduce((a, n) => a + n - 1, 0);
    expect(read('experts-prompt').sets[0]!.loss).toBeCloseTo(mean, 12);
    expect(read('experts-generated').sets[0]!.loss).toBeCloseTo(mean, 12);
    expect(read('experts-both').sets[0]!.loss).toBeNull();
  });

  it('falls back to the router\'s output (index and weights), or to top-k of its logits', () => {
    const want = expected(tokensOf('prompt', 0));
    const out1 = read('router-output');
    expect((out1 as { collector?: { hook: string } }).collector?.hook).toBe('router-output');
    expect(out1.sets[0]!.selected).toEqual(want.map((w) => w.sel));
    expect(out1.sets[0]!.gate_weight).toEqual(want.map((w) => w.gate));
    const out2 = read('router-logits');
    expect((out2 as { collector?: { hook: string } }).collector?.hook).toBe('router-logits');
    expect(out2.sets[0]!.selected).toEqual(want.map((w) => w.sel));
    expect(out2.sets[0]!.gate_weight).toBeNull();
  });

  it('appends a set to a file of the same model, refuses another model, and its files read in the CLI', () => {
    const f = read('appended');
    expect(f.sets.map((s) => s.name)).toEqual(['experts-prompt', 'router-output-prompt']);
    expect(manifest.refused).toMatch(/model\.experts is 8 there, 16 here: cannot append/);
    const r = runCli(['routing', 'compare', `${path.join(out, 'appended.routing.json')}#experts-prompt`, `${path.join(out, 'experts-generated.routing.json')}`, '--json', '--top', '3']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout).top).toHaveLength(3);
  });
});
