// Routing statistics (moe-studio.routing/1): `moe-studio routing show|compare` on generated files
// with known counts, checked against an independent computation written here (it does not import
// app/engine/routing); edits from a ranking merged into a child whose card says where they came
// from; and the refusals.
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { routingFixture, type RoutingFixture } from '../app/fixtures/routing.ts';
import { filesIn, presetDir, runCli, writeRecipe } from './support/cli.ts';

let dir = '';
let model: { modelType: string; moeLayers: number[]; experts: number; expertsPerToken: number };
const file = (name: string, value: unknown) => {
  const p = path.join(dir, name);
  writeFileSync(p, JSON.stringify(value));
  return p;
};

/** The statistics of `fixture`'s model with a refusal set (experts boosted) and a baseline set. */
function pair(): RoutingFixture {
  return {
    modelType: model.modelType,
    layers: model.moeLayers,
    experts: model.experts,
    topK: model.expertsPerToken,
    source: 'test/deepseek-v3-fp8-pair',
    sets: [
      { name: 'refusal', prompts: 40, tokens: 900, seed: 7, figures: true, loss: 2.5, boost: [{ layer: model.moeLayers[0]!, expert: 5, factor: 6 }, { layer: model.moeLayers[1]!, expert: 2, factor: 3 }, { layer: model.moeLayers[2]!, expert: 7, factor: 1.5 }] },
      { name: 'baseline', prompts: 60, tokens: 1400, seed: 11 },
    ],
  };
}

// ---- the independent computation ----
interface Row { layer: number; expert: number; ka: number; na: number; kb: number; nb: number; rd: number; lor: number; low: number; high: number }
function contrast(f: Record<string, any>, a: string, b: string): Row[] {
  const sa = f.sets.find((s: any) => s.name === a);
  const sb = f.sets.find((s: any) => s.name === b);
  const rows: Row[] = [];
  f.model.layers.forEach((layer: number, i: number) => {
    for (let e = 0; e < f.model.experts; e++) {
      const ka = sa.selected[i][e], na = sa.tokens[i], kb = sb.selected[i][e], nb = sb.tokens[i];
      const lor = Math.log(((ka + 0.5) * (nb - kb + 0.5)) / ((na - ka + 0.5) * (kb + 0.5)));
      const se = Math.sqrt(1 / (ka + 0.5) + 1 / (na - ka + 0.5) + 1 / (kb + 0.5) + 1 / (nb - kb + 0.5));
      rows.push({ layer, expert: e, ka, na, kb, nb, rd: ka / na - kb / nb, lor, low: lor - 1.959963984540054 * se, high: lor + 1.959963984540054 * se });
    }
  });
  return rows;
}
const ranked = <T extends { layer: number; expert: number }>(rows: T[], key: (r: T) => number) =>
  [...rows].sort((p, q) => key(q) - key(p) || p.layer - q.layer || p.expert - q.expert);

beforeAll(async () => {
  dir = await presetDir('deepseek-v3-fp8-pair');
  const s = JSON.parse(runCli(['inspect', path.join(dir, 'v3'), '--json']).stdout);
  model = { modelType: s.modelType, moeLayers: s.moeLayers, experts: s.experts, expertsPerToken: s.expertsPerToken };
}, 120_000);

describe('moe-studio routing compare', () => {
  it('ranks by risk difference and by the log-odds interval\'s lower end, as computed independently', () => {
    const f = routingFixture(pair());
    const p = file('stats.routing.json', f);
    const want = contrast(f, 'refusal', 'baseline');
    for (const metric of ['rd', 'log-odds'] as const) {
      const r = runCli(['routing', 'compare', `${p}#refusal`, `${p}#baseline`, '--metric', metric, '--top', '10', '--json', '--model', path.join(dir, 'v3')]);
      expect(r.stderr).toBe('');
      const got = JSON.parse(r.stdout);
      const top = ranked(want, (x) => (metric === 'rd' ? x.rd : x.low)).slice(0, 10);
      expect(got.top.map((t: any) => [t.layer, t.expert])).toEqual(top.map((t) => [t.layer, t.expert]));
      got.top.forEach((t: any, k: number) => {
        const w = top[k]!;
        expect([t.a.selected, t.a.tokens, t.b.selected, t.b.tokens]).toEqual([w.ka, w.na, w.kb, w.nb]);
        for (const [x, y] of [[t.rd, w.rd], [t.logOdds, w.lor], [t.low, w.low], [t.high, w.high]] as const) expect(Math.abs(x - y)).toBeLessThan(1e-12);
      });
    }
    // The planted experts lead: layer 1 expert 5 first.
    const first = JSON.parse(runCli(['routing', 'compare', `${p}#refusal`, `${p}#baseline`, '--json', '--top', '1']).stdout).top[0];
    expect([first.layer, first.expert]).toEqual([model.moeLayers[0], 5]);
    // A layer filter.
    const only = JSON.parse(runCli(['routing', 'compare', `${p}#refusal`, `${p}#baseline`, '--json', '--layers', String(model.moeLayers[2]), '--top', '3']).stdout).top;
    expect(only.map((t: any) => t.layer)).toEqual([model.moeLayers[2], model.moeLayers[2], model.moeLayers[2]]);
    // The table names both sets and the metric.
    const table = runCli(['routing', 'compare', `${p}#refusal`, `${p}#baseline`, '--top', '3']).stdout;
    expect(table).toMatch(/stats\.routing\.json#refusal against stats\.routing\.json#baseline: risk difference, top 3/);
    expect(table.trim().split('\n')).toHaveLength(6); // title, head, rule, 3 rows
  });

  it('ties are broken by layer, then expert; --edits prints the top N as recipe edits that merge, and the card says where they came from', () => {
    // Every expert of every layer equally often in A, and never in B except expert 0 of each layer: all other experts tie.
    const L = model.moeLayers;
    const sel = (v: number, zero: number) => L.map(() => Array.from({ length: model.experts }, (_, e) => (e === 0 ? zero : v)));
    const tied = {
      format: 'moe-studio.routing/1',
      model: { model_type: model.modelType, layers: L, experts: model.experts, top_k: model.expertsPerToken },
      sets: [
        { name: 'a', prompts: 1, counted: 'both', tokens: L.map(() => 100), selected: sel(20, 20), extra_key: 'kept and ignored' },
        { name: 'b', prompts: 1, counted: 'both', tokens: L.map(() => 100), selected: sel(0, 60) },
      ],
    };
    const p = file('tied.routing.json', tied);
    const r = runCli(['routing', 'compare', `${p}#a`, `${p}#b`, '--edits', 'off', '--top', '5']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^# The top 5 experts by risk difference, tied\.routing\.json#a against tied\.routing\.json#b\./);
    const edits = parseYaml(r.stdout).edits;
    expect(edits.map((e: any) => [e.layer, e.expert, e.action])).toEqual([[L[0], 1, 'off'], [L[0], 2, 'off'], [L[0], 3, 'off'], [L[0], 4, 'off'], [L[0], 5, 'off']]);
    expect(edits[0].why).toBe('rd 0.2000; routing tied.routing.json#a against tied.routing.json#b');

    // Pasted into a recipe, the edits merge; the model card lists each with its source.
    const recipe = writeRecipe(dir, 'steer.yaml', `parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert}\n    from: r1\n${r.stdout}`);
    const out = path.join(dir, 'out-steer');
    const m = runCli(['merge', recipe, '-o', out]);
    expect(m.stderr).not.toMatch(/error/);
    expect(m.status).toBe(0);
    const card = readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(card).toContain(`- layer ${L[0]}, expert 1: switched off (router bias entry set to -10000; the router never selects it) — rd 0.2000; routing tied.routing.json#a against tied.routing.json#b`);
    expect(filesIn(out)).toContain('model.safetensors.index.json');
  });
});

describe('moe-studio routing show', () => {
  it('lists a set\'s experts by rate, saliency or mean gate weight, with the set\'s facts', () => {
    const f = routingFixture(pair());
    const p = file('show.routing.json', f);
    const got = JSON.parse(runCli(['routing', 'show', `${p}#refusal`, '--json', '--top', '4']).stdout);
    const s = (f.sets as any[])[0];
    const rows = model.moeLayers.flatMap((layer, i) => s.selected[i].map((k: number, e: number) => ({ layer, expert: e, rate: k / s.tokens[i], sal: s.saliency[i][e], gate: s.gate_weight[i][e] / k })));
    expect(got.sets[0].top.map((t: any) => [t.layer, t.expert, t.rate])).toEqual(ranked(rows, (r) => r.rate).slice(0, 4).map((r) => [r.layer, r.expert, r.rate]));
    const bySal = JSON.parse(runCli(['routing', 'show', `${p}#refusal`, '--json', '--top', '3', '--metric', 'saliency']).stdout);
    expect(bySal.sets[0].top.map((t: any) => [t.layer, t.expert])).toEqual(ranked(rows, (r) => r.sal).slice(0, 3).map((r) => [r.layer, r.expert]));
    const byGate = JSON.parse(runCli(['routing', 'show', `${p}#refusal`, '--json', '--top', '3', '--metric', 'gate']).stdout);
    expect(byGate.sets[0].top.map((t: any) => t.meanGate)).toEqual(ranked(rows, (r) => r.gate).slice(0, 3).map((r) => r.gate));
    const text = runCli(['routing', 'show', p, '--top', '2']).stdout;
    expect(text).toContain(`show.routing.json: ${model.modelType} (test/deepseek-v3-fp8-pair), 3 MoE layers`);
    expect(text).toContain('set "refusal": 40 prompts, prompt tokens counted, 900 tokens per layer, mean loss 2.5000, saliency, gate weights');
    expect(text).toContain('set "baseline": 60 prompts');
    expect(runCli(['routing', 'show', `${p}#baseline`, '--metric', 'saliency']).stderr).toMatch(/set "baseline" has no saliency figures/);
  });
});

describe('routing statistics that do not fit are refused, the mismatch named', () => {
  it('another model, another format version, inconsistent counts, ambiguous or unknown sets', () => {
    const base = routingFixture(pair()) as any;
    const v3 = path.join(dir, 'v3');
    const refuse = (value: unknown, args: string[] = []) => {
      const p = file('bad.routing.json', value);
      return runCli(['routing', args[0] ?? 'show', ...(args.length > 1 ? args.slice(1).map((a) => a.replace('FILE', p)) : [p])]).stderr;
    };
    const withModel = (m: object) => ({ ...base, model: { ...base.model, ...m } });
    const gen = (f: Partial<RoutingFixture>) => routingFixture({ ...pair(), ...f });
    expect(runCli(['routing', 'show', file('x.json', gen({ experts: 16 })), '--model', v3]).stderr).toMatch(/x\.json: does not describe the model v3: 16 experts per layer here, 8 there/);
    expect(runCli(['routing', 'show', file('x.json', withModel({ model_type: 'mixtral' })), '--model', v3]).stderr).toMatch(/model_type is "mixtral" here, "deepseek_v3" there/);
    expect(runCli(['routing', 'show', file('x.json', gen({ layers: [0, 1, 2] })), '--model', v3]).stderr).toMatch(/layer 0 is not a MoE layer there \(its MoE layers: 1-3\)/);
    expect(runCli(['routing', 'show', file('x.json', withModel({ top_k: 4 })), '--model', v3]).stderr).toMatch(/top_k is 4 here, 2 there/);
    expect(refuse({ ...base, format: 'moe-studio.routing/2' })).toMatch(/bad\.routing\.json: format "moe-studio\.routing\/2": this MoE Studio reads "moe-studio\.routing\/1"/);
    expect(refuse({ hello: 1 })).toMatch(/not a routing statistics file: no "format"/);
    const over = structuredClone(base);
    over.sets[1].selected[1][3] = 5000;
    expect(refuse(over)).toMatch(/sets\[1\] "baseline": selected\[1\]\[3\] \(layer 2, expert 3\) is 5000, more than the layer's 1400 tokens/);
    const slots = structuredClone(base);
    slots.sets[1].selected[0] = slots.sets[1].selected[0].map(() => 1000);
    expect(refuse(slots)).toMatch(/layer 1 counts 8000 selections, more than 1400 tokens × top_k 2/);
    const short = structuredClone(base);
    short.sets[0].selected[2].pop();
    expect(refuse(short)).toMatch(/sets\[0\] "refusal": selected\[2\] \(layer 3\) has 7 entries for 8 experts/);
    expect(refuse({ ...base, sets: [base.sets[0], base.sets[0]] })).toMatch(/sets\[1\] "refusal": a second set with this name/);
    expect(refuse({ ...base, sets: [{ ...base.sets[0], counted: 'all' }] })).toMatch(/sets\[0\]\.counted: /);
    expect(refuse(base, ['compare', 'FILE', 'FILE'])).toMatch(/holds 2 sets \("refusal", "baseline"\): name one/);
    expect(refuse(base, ['compare', 'FILE#refusal', 'FILE#nope'])).toMatch(/has no set "nope" \(it has "refusal", "baseline"\)/);
    expect(refuse({ ...base, sets: [] })).toMatch(/bad\.routing\.json: sets: /);
    const sixteen = routingFixture({ ...pair(), experts: 16, sets: [{ name: 'x', prompts: 1, tokens: 50, seed: 3 }] });
    expect(runCli(['routing', 'compare', `${file('a.json', base)}#refusal`, file('b.json', sixteen)]).stderr).toMatch(/b\.json: cannot be compared with \S*a\.json: 16 experts per layer here, 8 there/);
    expect(runCli(['routing', 'compare', 'a', 'b', '--edits', 'disable']).stderr).toMatch(/--edits takes off, on or mute, not "disable"/);
    expect(runCli(['routing', 'frobnicate']).stderr).toMatch(/unknown routing command "frobnicate"/);
  });
});
