// Hands units to the pool: small ones batched into one message, a few batches in flight per
// runner, results taken as they come (every unit writes at its own offsets, so order does not
// matter). The first failure stops new work; what is in flight settles before it is reported.
import type { KernelPool, Lane } from '../kernels/pool.ts';
import type { FileTable } from './files.ts';
import { unitInputBytes, type Unit, type UnitResult } from './units.ts';

/** A batch closes at this many input bytes or units: few messages, yet every runner gets a share. */
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_UNITS = 256;

export interface DispatchOptions {
  /** Batches in flight, asked before each batch is sent (streams side by side share the pool); default two per runner. */
  window?: number | (() => number);
  /** The runners these units prefer (see `Lane`). */
  lane?: Lane;
  /** Throws to stop (a cancel); checked before each batch is sent. */
  check?: () => void;
}

export async function runUnits(
  pool: KernelPool,
  files: FileTable,
  units: Iterable<Unit>,
  onResult: (unit: Unit, result: UnitResult) => void | Promise<void>,
  opts: DispatchOptions = {},
): Promise<void> {
  const w = opts.window ?? pool.size * 2;
  const window = () => Math.max(1, typeof w === 'number' ? w : w());
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const submit = (batch: Unit[]) => {
    const p = (async () => {
      await files.inline(batch, pool);
      const results = await pool.run(batch, opts.lane);
      for (let i = 0; i < batch.length; i++) await onResult(batch[i]!, results[i]!);
    })().catch((error: unknown) => {
      failure ??= { error };
    });
    const tracked = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  let batch: Unit[] = [];
  let bytes = 0;
  try {
    for (const u of units) {
      if (failure) break;
      batch.push(u);
      bytes += unitInputBytes(u);
      if (bytes < BATCH_BYTES && batch.length < BATCH_UNITS) continue;
      opts.check?.();
      while (inFlight.size >= window()) await Promise.race(inFlight);
      if (failure) break;
      submit(batch);
      batch = [];
      bytes = 0;
    }
    if (!failure && batch.length > 0) {
      opts.check?.();
      while (inFlight.size >= window()) await Promise.race(inFlight);
      if (!failure) submit(batch);
    }
  } catch (e) {
    failure ??= { error: e };
  }
  while (inFlight.size > 0) await Promise.race(inFlight);
  if (failure) throw failure.error;
}
