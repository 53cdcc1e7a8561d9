// Does a rule's `select` match a tensor? Compiled once per rule, then applied to every weight.
import { MoeError } from '../io.ts';
import type { TensorRole } from '../model/types.ts';
import type { IndexSet, Selector } from './schema.ts';

export type Matcher = (name: string, role: TensorRole) => boolean;

export function compileSelector(select: Selector, where: string): Matcher {
  const kinds = toSet(select.kind);
  const projs = toSet(select.proj);
  const layers = select.layers === undefined ? undefined : indexSet(select.layers, `${where}: layers`);
  const experts = select.experts === undefined ? undefined : indexSet(select.experts, `${where}: experts`);
  let re: RegExp | undefined;
  if (select.name !== undefined) {
    try {
      re = new RegExp(select.name);
    } catch (e) {
      throw new MoeError(`${where}: name is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  return (name, role) =>
    (!kinds || kinds.has(role.kind)) &&
    (!projs || (role.proj !== undefined && projs.has(role.proj))) &&
    (!layers || (role.layer !== undefined && layers(role.layer))) &&
    (!experts || (role.expert !== undefined && experts(role.expert))) &&
    (!re || re.test(name));
}

function toSet<T>(v: T | T[] | undefined): Set<T> | undefined {
  return v === undefined ? undefined : new Set(Array.isArray(v) ? v : [v]);
}

/** An integer, a list, or "a-b" inclusive. */
export function indexSet(v: IndexSet, where: string): (i: number) => boolean {
  if (typeof v === 'number') return (i) => i === v;
  if (Array.isArray(v)) {
    const s = new Set(v);
    return (i) => s.has(i);
  }
  const [a, b] = v.split('-').map((x) => Number(x.trim())) as [number, number];
  if (a > b) throw new MoeError(`${where}: range "${v}" runs backwards`);
  return (i) => i >= a && i <= b;
}

/** The most readable index set for a list: one index, a range "a-b" when contiguous, else the sorted list. */
export function toIndexSet(values: readonly number[]): IndexSet {
  const sorted = [...new Set(values)].sort((x, y) => x - y);
  if (sorted.length === 1) return sorted[0]!;
  const contiguous = sorted.every((v, i) => i === 0 || v === sorted[i - 1]! + 1);
  return contiguous ? `${sorted[0]}-${sorted[sorted.length - 1]}` : sorted;
}
