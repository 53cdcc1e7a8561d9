// Does a rule's `select` match a tensor? Compiled once per rule, then applied to every weight.
//
// `name:` patterns run on RE2JS, a linear-time regular-expression engine: a pattern from a recipe
// file cannot make a merge run for minutes (`(.+)+Z` against a long name backtracks for ever in a
// backtracking engine). Constructs RE2 does not have (backreferences, lookaround) are refused with
// the engine's own reason.
import { RE2JS } from 're2js';
import { MoeError, printable } from '../io.ts';
import type { TensorRole } from '../model/types.ts';
import type { IndexSet, Selector } from './schema.ts';

export type Matcher = (name: string, role: TensorRole) => boolean;

/** Longest `name:` pattern accepted; real ones are a few dozen characters. */
export const MAX_PATTERN_LENGTH = 1000;

/** A recipe's `name:` pattern, compiled for linear-time searching. */
export function compilePattern(pattern: string, where: string): (name: string) => boolean {
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw new MoeError(`${where}: name pattern is ${pattern.length} characters long; at most ${MAX_PATTERN_LENGTH} are accepted`);
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new MoeError(`${where}: name ${printable(JSON.stringify(pattern), 200)} is not a regular expression MoE Studio can run (${why}; patterns use RE2 syntax, without backreferences or lookaround)`);
  }
  return (name) => re.matcher(name).find();
}

export function compileSelector(select: Selector, where: string): Matcher {
  const kinds = toSet(select.kind);
  const projs = toSet(select.proj);
  const layers = select.layers === undefined ? undefined : indexSet(select.layers, `${where}: layers`);
  const experts = select.experts === undefined ? undefined : indexSet(select.experts, `${where}: experts`);
  const re = select.name === undefined ? undefined : compilePattern(select.name, where);
  return (name, role) =>
    (!kinds || kinds.has(role.kind)) &&
    (!projs || (role.proj !== undefined && projs.has(role.proj))) &&
    (!layers || (role.layer !== undefined && layers(role.layer))) &&
    (!experts || (role.expert !== undefined && experts(role.expert))) &&
    (!re || re(name));
}

function toSet<T>(v: T | T[] | undefined): Set<T> | undefined {
  return v === undefined ? undefined : new Set(Array.isArray(v) ? v : [v]);
}

/** The inclusive ranges an index set names, or "all". Ranges that run backwards are an error. */
export function indexRanges(v: IndexSet, where: string): [number, number][] | 'all' {
  if (typeof v === 'number') return [[v, v]];
  if (Array.isArray(v)) return v.map((i) => [i, i]);
  if (v.trim() === 'all') return 'all';
  return v.split(',').map((part) => {
    const [a, b] = part.split('-').map((x) => Number(x.trim())) as [number, number | undefined];
    const hi = b ?? a;
    if (a > hi) throw new MoeError(`${where}: range "${part.trim()}" runs backwards`);
    return [a, hi];
  });
}

/** An integer, a list, or a string of integers and ranges ("5", "3-10", "1, 4, 9-12", "all"). */
export function indexSet(v: IndexSet, where: string): (i: number) => boolean {
  const ranges = indexRanges(v, where);
  if (ranges === 'all') return () => true;
  if (ranges.length === 1) {
    const [a, b] = ranges[0]!;
    return (i) => i >= a && i <= b;
  }
  return (i) => ranges.some(([a, b]) => i >= a && i <= b);
}

/** The most readable index set for a list: one index, a range "a-b" when contiguous, else the sorted list. */
export function toIndexSet(values: readonly number[]): IndexSet {
  const sorted = [...new Set(values)].sort((x, y) => x - y);
  if (sorted.length === 1) return sorted[0]!;
  const contiguous = sorted.every((v, i) => i === 0 || v === sorted[i - 1]! + 1);
  return contiguous ? `${sorted[0]}-${sorted[sorted.length - 1]}` : sorted;
}
