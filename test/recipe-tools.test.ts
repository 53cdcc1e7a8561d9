// The studio's selection → recipe helpers (app/studio/shared/recipe-tools.ts): a selection is a
// union of rectangles, never the cross product of its layers and experts; expert changes are
// written as blocks that cover exactly the selected pairs; weights read back as typed.
import { describe, expect, it } from 'vitest';
import { applyEdits, pairBlocks, removeExperts, selectionPairs, selectionRules, weightOf, weightText, type ExpertSelection } from '../app/studio/shared/recipe-tools.ts';
import type { Recipe } from '../app/engine/recipe/schema.ts';

const recipe: Recipe = { parents: { a: 'a', b: 'b' }, base: 'a', rules: [], edits: [], output: { dtype: 'keep', shard_size: '5GB' } };
const TWO: ExpertSelection = {
  rects: [
    { layers: [1, 2], experts: [2, 3, 4, 5] },
    { layers: [4], experts: [10, 11] },
  ],
  proj: ['gate'],
};

/** Every pair a `{layers, experts}` index set names (the test's own reading of toIndexSet's forms). */
function expand(v: number | string | number[]): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v;
  const [lo, hi] = v.split('-').map(Number);
  return Array.from({ length: hi! - lo! + 1 }, (_, i) => lo! + i);
}

describe('heatmap selections as rectangles', () => {
  it('cover the union of their rectangles, not the cross product', () => {
    const pairs = selectionPairs(TWO);
    expect(pairs).toHaveLength(4 * 2 + 2);
    expect(pairs).toContainEqual({ layer: 4, expert: 10 });
    expect(pairs).not.toContainEqual({ layer: 1, expert: 10 });
    expect(applyEdits(recipe, TWO, 'mute').edits).toHaveLength(10);
    // Overlapping rectangles count each pair once.
    expect(selectionPairs({ rects: [...TWO.rects, { layers: [2], experts: [3, 4] }], proj: [] })).toHaveLength(10);
  });

  it('give one rule per rectangle', () => {
    const rules = selectionRules(TWO, { from: 'b' });
    expect(rules.map((r) => r.select)).toEqual([
      { kind: 'routed_expert', layers: '1-2', experts: '2-5', proj: 'gate' },
      { kind: 'routed_expert', layers: 4, experts: '10-11', proj: 'gate' },
    ]);
  });

  it('write expert changes as blocks covering exactly the selected pairs, each once', () => {
    // Random selections of random rectangles over 8 layers × 16 experts.
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let trial = 0; trial < 200; trial++) {
      const rects = Array.from({ length: 1 + rand(4) }, () => {
        const l0 = rand(8);
        const e0 = rand(16);
        return { layers: Array.from({ length: 1 + rand(8 - l0) }, (_, i) => l0 + i), experts: Array.from({ length: 1 + rand(16 - e0) }, (_, i) => e0 + i) };
      });
      const sel: ExpertSelection = { rects, proj: [] };
      const want = new Set<string>();
      for (const r of rects) for (const l of r.layers) for (const e of r.experts) want.add(`${l}:${e}`);
      const got: string[] = [];
      for (const b of pairBlocks(selectionPairs(sel))) for (const l of b.layers) for (const e of b.experts) got.push(`${l}:${e}`);
      expect(got.length).toBe(want.size);
      expect(new Set(got)).toEqual(want);
      // The recipe entries name the same pairs.
      const written: string[] = [];
      for (const x of removeExperts(recipe, sel).experts!.remove) for (const l of expand(x.layers as never)) for (const e of expand(x.experts as never)) written.push(`${l}:${e}`);
      expect(new Set(written)).toEqual(want);
      expect(written.length).toBe(want.size);
    }
  });
});

describe('weights as the studio shows them', () => {
  it('read back as typed: fractions of small denominators, else six significant digits', () => {
    expect(weightText(1 / 3)).toBe('1/3');
    expect(weightText(2 / 7)).toBe('2/7');
    expect(weightText(0.5)).toBe('0.5');
    expect(weightText(0.25)).toBe('0.25');
    expect(weightText(1 / 14)).toBe('0.0714286');
    expect(weightText(1)).toBe('1');
    for (const w of [1 / 3, 2 / 7, 5 / 12, 0.5, 0.125]) expect(weightOf(weightText(w))).toBe(w);
  });
});
