// The files of a run, by the ids units use: every shard of every parent, and the child's files as
// they are created. The table also fills in bytes for the runners that cannot read a file
// themselves (a browser folder the workers cannot reach), just before a unit is sent.
import type { ByteSource, OutputFile } from '../io.ts';
import type { KernelPool, RunFile } from '../kernels/pool.ts';
import type { Model } from '../model/types.ts';
import { coalesceFor, readRanges } from './ranges.ts';
import type { Span, Unit } from './units.ts';

/** Ids of parents' shards, by the parent names of one plan. */
export interface SourceIds {
  source(parent: string, file: string): number;
}

export class FileTable implements SourceIds {
  /** Ids by model, then shard file: parents named differently in several recipes share ids. */
  private readonly ids = new Map<Model, Map<string, number>>();
  private readonly byName = new Map<string, Model>();
  private readonly sources = new Map<number, ByteSource>();
  private readonly outputs = new Map<number, OutputFile>();
  private next = 0;

  /** Registers every shard of a model under `parent`; returns the new entries (to open on the pool). */
  addModel(parent: string, model: Model): RunFile[] {
    this.byName.set(parent, model);
    if (this.ids.has(model)) return [];
    const files = new Map<string, number>();
    this.ids.set(model, files);
    const added: RunFile[] = [];
    for (const file of model.shards) {
      const id = this.next++;
      const source = model.sources.get(file)!;
      files.set(file, id);
      this.sources.set(id, source);
      added.push({ id, source });
    }
    return added;
  }

  private idOf(model: Model | undefined, parent: string, file: string): number {
    const id = model ? this.ids.get(model)?.get(file) : undefined;
    if (id === undefined) throw new Error(`internal: ${parent}/${file} is not in the run's file table`);
    return id;
  }

  /** The id of a parent's shard. */
  source(parent: string, file: string): number {
    return this.idOf(this.byName.get(parent), parent, file);
  }

  /** Ids by the parent names of one plan (a sweep's recipes may name the same parents differently). */
  bound(parents: ReadonlyMap<string, Model>): SourceIds {
    return { source: (parent, file) => this.idOf(parents.get(parent), parent, file) };
  }

  /** A parent's shard by id. */
  sourceOf(id: number): ByteSource {
    const s = this.sources.get(id);
    if (!s) throw new Error(`internal: file ${id} is not a parent's shard`);
    return s;
  }

  addOutput(output: OutputFile): RunFile {
    const id = this.next++;
    this.outputs.set(id, output);
    return { id, output };
  }

  output(id: number): OutputFile {
    const o = this.outputs.get(id);
    if (!o) throw new Error(`internal: output file ${id} is not open`);
    return o;
  }

  dropOutput(id: number): void {
    this.outputs.delete(id);
  }

  /** Ids of the outputs being written. */
  outputIds(): number[] {
    return [...this.outputs.keys()];
  }

  /** Every id handed out (to close them all on the pool when a run ends). */
  all(): number[] {
    return Array.from({ length: this.next }, (_, i) => i);
  }

  /** Reads, for the pool, the spans of files its runners cannot read themselves, touching ones in one read. */
  async inline(units: Unit[], pool: KernelPool): Promise<void> {
    // Where the runners read every file themselves (the CLI, the studio's Files), a batch needs
    // nothing here: skip walking its units.
    let needed = false;
    for (const src of this.sources.values()) {
      if (!pool.reads(src)) {
        needed = true;
        break;
      }
    }
    if (!needed) return;
    const byFile = new Map<number, Span[]>();
    const want = (s: Span) => {
      if (s.bytes || s.length === 0) return;
      const src = this.sources.get(s.file);
      if (!src || pool.reads(src)) return;
      const list = byFile.get(s.file);
      if (list) list.push(s);
      else byFile.set(s.file, [s]);
    };
    for (const u of units) {
      if (u.kind === 'copy') for (const p of u.parts) want(p.from);
      else if (u.kind === 'stripe' || u.kind === 'diff') for (const b of u.bands) [b.data, ...(b.scales ? [b.scales] : [])].forEach(want);
    }
    await Promise.all(
      [...byFile].map(async ([file, spans]) => {
        const src = this.sourceOf(file);
        // Only touching ranges are joined: a merge reads each needed byte once, no gap bytes.
        const got = await readRanges(src, spans, { ...coalesceFor(src), maxGap: 0 });
        spans.forEach((s, i) => (s.bytes = got[i]));
      }),
    );
  }
}
