// Many small reads cost far more than a few large ones (a browser Blob read is ~1 ms per call
// whatever its size), so nearby ranges of one file are fetched together and cut apart after.
import type { ByteSource } from '../io.ts';

export interface Range {
  offset: number;
  length: number;
}

export interface CoalesceOptions {
  /** Ranges closer than this are read as one (the gap is read and thrown away). */
  maxGap: number;
  /** No merged read is larger than this. */
  maxRead: number;
  /** Reads in flight at once. */
  concurrency: number;
}

export const DEFAULT_COALESCE: CoalesceOptions = { maxGap: 256 * 1024, maxRead: 64 * 1024 * 1024, concurrency: 8 };

/** How to coalesce reads of `source`: network sources read through larger gaps, more at once. */
export function coalesceFor(source: ByteSource): CoalesceOptions {
  if (!source.readThrough) return DEFAULT_COALESCE;
  return { ...DEFAULT_COALESCE, maxGap: Math.max(DEFAULT_COALESCE.maxGap, source.readThrough), concurrency: 16 };
}

/** Reads every range; each result is its own copy (safe to transfer to a worker). */
export async function readRanges(source: ByteSource, ranges: Range[], opts: CoalesceOptions = DEFAULT_COALESCE): Promise<Uint8Array[]> {
  const order = ranges.map((_, i) => i).sort((a, b) => ranges[a]!.offset - ranges[b]!.offset);
  const groups: { offset: number; end: number; members: number[] }[] = [];
  for (const i of order) {
    const r = ranges[i]!;
    const g = groups[groups.length - 1];
    if (g && r.offset - g.end <= opts.maxGap && Math.max(g.end, r.offset + r.length) - g.offset <= opts.maxRead) {
      g.end = Math.max(g.end, r.offset + r.length);
      g.members.push(i);
    } else {
      groups.push({ offset: r.offset, end: r.offset + r.length, members: [i] });
    }
  }
  const out: Uint8Array[] = new Array(ranges.length);
  let next = 0;
  const worker = async () => {
    while (next < groups.length) {
      const g = groups[next++]!;
      const bytes = await source.read(g.offset, g.end - g.offset);
      // A read of exactly one range is already its own buffer.
      if (g.members.length === 1 && ranges[g.members[0]!]!.length === bytes.length) {
        out[g.members[0]!] = bytes;
        continue;
      }
      for (const i of g.members) {
        const r = ranges[i]!;
        out[i] = bytes.slice(r.offset - g.offset, r.offset - g.offset + r.length);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, groups.length) }, worker));
  return out;
}
