// Spreads units over workers. The engine only schedules: each platform supplies endpoints
// (Comlink remotes of Node worker_threads or Web Workers, or an in-process runner for tests and
// `--workers 0`), so this file needs neither Comlink nor any worker API.
import type { ByteSource, OutputFile } from '../io.ts';
import type { Unit, UnitResult } from '../exec/units.ts';

/** A file of a run, by the id units name it with: a parent's shard to read, or a child's file to write. */
export interface RunFile {
  id: number;
  source?: ByteSource;
  output?: OutputFile;
}

/** A unit runner behind a message channel: every call is async and may take over the buffers it is given. */
export interface KernelEndpoint {
  /** Makes files reachable by id (a worker opens them itself where the platform lets it). */
  openFiles(files: RunFile[]): Promise<void>;
  /** Closes the endpoint's own handles of these files (before the coordinator finishes them). */
  closeFiles(ids: number[]): Promise<void>;
  run(units: Unit[]): Promise<UnitResult[]>;
  /** XXH3-64 of each buffer, in one call (the buffers may be handed over). */
  hashMany(parts: Uint8Array[]): Promise<bigint[]>;
}

/**
 * Which runners a stream of batches prefers: those whose index is `index` modulo `of`. Shards
 * written side by side each take a lane, so that each file has as few writers as possible (a
 * file's writes into the page cache take turns on its lock); a batch still goes elsewhere when
 * another runner has less in flight than every runner of its lane.
 */
export interface Lane {
  index: number;
  of: number;
}

export interface KernelPool {
  readonly size: number;
  /** Whether the runners read this file themselves; if not, units carry the bytes they read. */
  reads(source: ByteSource): boolean;
  /** Whether the runners write this file themselves; if not, they hand the bytes back. */
  writes(file: OutputFile): boolean;
  openFiles(files: RunFile[]): Promise<void>;
  closeFiles(ids: number[]): Promise<void>;
  /**
   * Runs units (a batch) on the endpoint with the fewest in flight, ties to the lowest index; with
   * a lane, on the lane's endpoint with the fewest in flight unless another has fewer.
   */
  run(units: Unit[], lane?: Lane): Promise<UnitResult[]>;
  hashMany(parts: Uint8Array[]): Promise<bigint[]>;
  close(): Promise<void>;
}

export interface PoolOptions {
  /** In-process runners reach every file through the engine's own objects. */
  inProcess?: boolean;
  close?: () => Promise<void>;
}

export function createKernelPool(endpoints: KernelEndpoint[], opts: PoolOptions = {}): KernelPool {
  if (endpoints.length === 0) throw new Error('a kernel pool needs at least one endpoint');
  const busy = endpoints.map(() => 0);
  const pick = async <T>(call: (e: KernelEndpoint) => Promise<T>, lane?: Lane): Promise<T> => {
    let best = 0;
    for (let i = 1; i < busy.length; i++) if (busy[i]! < busy[best]!) best = i;
    if (lane && lane.of > 1) {
      let own = -1;
      for (let i = lane.index % lane.of; i < busy.length; i += lane.of) if (own < 0 || busy[i]! < busy[own]!) own = i;
      // Another runner takes the batch only when it has fewer in flight: one stream alone keeps
      // every runner busy, and streams side by side each keep their own.
      if (own >= 0 && busy[own]! <= busy[best]!) best = own;
    }
    busy[best]!++;
    try {
      return await call(endpoints[best]!);
    } finally {
      busy[best]!--;
    }
  };
  return {
    size: endpoints.length,
    reads: (s) => opts.inProcess === true || s.workerRef !== undefined,
    writes: (f) => opts.inProcess === true || f.workerRef !== undefined,
    openFiles: async (files) => {
      await Promise.all(endpoints.map((e) => e.openFiles(files)));
    },
    closeFiles: async (ids) => {
      await Promise.all(endpoints.map((e) => e.closeFiles(ids)));
    },
    run: (units, lane) => pick((e) => e.run(units), lane),
    hashMany: (parts) => pick((e) => e.hashMany(parts)),
    close: opts.close ?? (async () => {}),
  };
}

/** Buffers a batch of units carries, so a platform bridge can transfer instead of copy. */
export function unitTransferables(units: Unit[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  const add = (b: Uint8Array | undefined) => {
    if (b) out.add(b.buffer as ArrayBuffer);
  };
  for (const u of units) {
    if (u.kind === 'bytes') add(u.bytes);
    else if (u.kind === 'copy') for (const p of u.parts) add(p.from.bytes);
    else for (const b of u.bands) {
      add(b.data.bytes);
      add(b.scales?.bytes);
    }
  }
  return [...out];
}

/** Buffers results hand back (bytes of writes the runner could not make itself). */
export function resultTransferables(results: UnitResult[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const r of results) for (const w of r.written) if (w.bytes) out.push(w.bytes.buffer as ArrayBuffer);
  return out;
}
