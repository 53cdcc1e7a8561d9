// Spreads kernel calls over workers. The engine only schedules: each platform supplies endpoints
// (Comlink remotes of Node worker_threads or Web Workers, or an in-process Kernels for tests), so
// this file needs neither Comlink nor any worker API.
import type { FloatDtype } from '../formats/dtype.ts';
import type { Chunk, DiffStats, Encoded, Kernels, MixRequest } from './types.ts';

/** Kernels behind a message channel: every call is async and may take ownership of the buffers it is given. */
export interface KernelEndpoint {
  decode(chunk: Chunk): Promise<Float32Array>;
  encode(values: Float32Array, rows: number, cols: number, out: FloatDtype): Promise<Encoded>;
  mix(req: MixRequest): Promise<Encoded>;
  diff(a: Chunk, b: Chunk): Promise<DiffStats>;
  /** Many small diffs in one call: a sampled pass over ~90,000 tensors would otherwise be ~90,000 messages. */
  diffMany(pairs: [Chunk, Chunk][]): Promise<DiffStats[]>;
  /** XXH64 of each buffer, in one call (the buffers may be handed over). */
  hashMany(parts: Uint8Array[]): Promise<bigint[]>;
}

export interface KernelPool extends KernelEndpoint {
  readonly size: number;
  close(): Promise<void>;
}

/** Calls run on whichever endpoint has the fewest calls in flight; ties go to the lowest index. */
export function createKernelPool(endpoints: KernelEndpoint[], close: () => Promise<void> = async () => {}): KernelPool {
  if (endpoints.length === 0) throw new Error('a kernel pool needs at least one endpoint');
  const busy = endpoints.map(() => 0);
  const run = async <T>(call: (e: KernelEndpoint) => Promise<T>): Promise<T> => {
    let best = 0;
    for (let i = 1; i < busy.length; i++) if (busy[i]! < busy[best]!) best = i;
    busy[best]!++;
    try {
      return await call(endpoints[best]!);
    } finally {
      busy[best]!--;
    }
  };
  return {
    size: endpoints.length,
    decode: (c) => run((e) => e.decode(c)),
    encode: (v, r, c, o) => run((e) => e.encode(v, r, c, o)),
    mix: (req) => run((e) => e.mix(req)),
    diff: (a, b) => run((e) => e.diff(a, b)),
    diffMany: (pairs) => run((e) => e.diffMany(pairs)),
    hashMany: (parts) => run((e) => e.hashMany(parts)),
    close,
  };
}

/** The same kernels called in-process: for tests, `--workers 0`, and inside a worker itself. */
export function localEndpoint(k: Kernels): KernelEndpoint {
  return {
    decode: async (c) => k.decode(c),
    encode: async (v, r, c, o) => k.encode(v, r, c, o),
    mix: async (req) => k.mix(req),
    diff: async (a, b) => k.diff(a, b),
    diffMany: async (pairs) => pairs.map(([a, b]) => k.diff(a, b)),
    hashMany: async (parts) => parts.map((p) => k.hash(p)),
  };
}

/** Buffers a call hands over, so a platform bridge can transfer instead of copy. */
export function transferablesOf(...chunks: (Chunk | Float32Array | Uint8Array | undefined)[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const c of chunks) {
    if (!c) continue;
    if (c instanceof Float32Array || c instanceof Uint8Array) out.add(c.buffer as ArrayBuffer);
    else {
      out.add(c.bytes.buffer as ArrayBuffer);
      if (c.scales) out.add(c.scales.buffer as ArrayBuffer);
    }
  }
  return [...out];
}
