// Both sides of a kernel worker, for any message channel. The platform passes in its transfer
// function (Comlink.transfer), so buffers move between threads instead of being copied, and the
// Node and browser worker entry points stay a few lines each.
import type { FloatDtype } from '../formats/dtype.ts';
import { transferablesOf, type KernelEndpoint } from './pool.ts';
import type { Chunk, Encoded, Kernels, MixRequest } from './types.ts';

export type Transfer = <T>(value: T, buffers: ArrayBuffer[]) => T;

/** Inside the worker: the kernels, with every result's buffers handed back to the caller. */
export function serveKernels(k: Kernels, transfer: Transfer): KernelEndpoint {
  const encoded = (e: Encoded) => transfer(e, e.scales ? [e.bytes.buffer as ArrayBuffer, e.scales.buffer as ArrayBuffer] : [e.bytes.buffer as ArrayBuffer]);
  return {
    decode: async (c) => {
      const v = k.decode(c);
      return transfer(v, [v.buffer as ArrayBuffer]);
    },
    encode: async (v, r, c, o) => encoded(k.encode(v, r, c, o)),
    mix: async (req) => encoded(k.mix(req)),
    diff: async (a, b) => k.diff(a, b),
    diffMany: async (pairs) => pairs.map(([a, b]) => k.diff(a, b)),
    hashMany: async (parts) => parts.map((p) => k.hash(p)),
  };
}

/** Outside: a remote endpoint whose calls hand their input buffers over to the worker. */
export function callKernels(remote: KernelEndpoint, transfer: Transfer): KernelEndpoint {
  return {
    decode: (c: Chunk) => remote.decode(transfer(c, transferablesOf(c))),
    encode: (v: Float32Array, r: number, c: number, o: FloatDtype) => remote.encode(transfer(v, transferablesOf(v)), r, c, o),
    mix: (req: MixRequest) => remote.mix(transfer(req, transferablesOf(...req.inputs))),
    diff: (a: Chunk, b: Chunk) => remote.diff(transfer(a, transferablesOf(a, b)), b),
    diffMany: (pairs: [Chunk, Chunk][]) => remote.diffMany(transfer(pairs, transferablesOf(...pairs.flat()))),
    hashMany: (parts: Uint8Array[]) => remote.hashMany(transfer(parts, transferablesOf(...parts))),
  };
}
