// How a runner reads a unit's ranges: all at once, a queued unit's File slices fetched ahead (the
// studio's workers), and never leaving a read running when its unit has failed; and where its
// time on a unit goes.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { prefetchUnit, runUnit, type RunnerFiles } from '../app/engine/exec/run-unit.ts';
import type { CopyUnit, StripeUnit } from '../app/engine/exec/units.ts';
import { runnerMemoryText, runnerTimeText } from '../app/engine/report/format.ts';
import { instantiateKernelsFromBytes, type WasmModule } from '../app/engine/kernels/wasm-kernels.ts';
import { BrowserWorkerFiles } from '../app/studio/worker/worker-files.ts';
import { NodeWorkerFiles } from '../app/cli/worker-files.ts';

let m: WasmModule;
beforeAll(async () => {
  m = await instantiateKernelsFromBytes(new Uint8Array(readFileSync(new URL('../public/moe_kernels.wasm', import.meta.url))));
});

/** A File that counts the slices taken of it (each is one fetch in a browser). */
class CountingFile extends File {
  slices = 0;
  override slice(start?: number, end?: number, type?: string): Blob {
    this.slices++;
    return super.slice(start, end, type);
  }
}

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17 + (i >> 8)) & 0xff);
}

/** Reads and prefetches through the studio's worker files; writes land in `out` (no OPFS in Node). */
function runner(files: BrowserWorkerFiles, out: Map<number, Uint8Array>): RunnerFiles {
  return {
    read: (f, o, n, dst) => files.read(f, o, n, dst),
    prefetch: (f, o, n) => files.prefetch(f, o, n),
    write: (f, o, src) => {
      const buf = out.get(f)!;
      buf.set(src, o);
      return true;
    },
  };
}

describe('reading a unit', () => {
  it("fetches a queued unit's File slices ahead, takes them when it runs, and moves the files' bytes exactly", async () => {
    const a = bytes(300_000, 1);
    const b = bytes(200_000, 2);
    const fa = new CountingFile([a], 'a.safetensors');
    const fb = new CountingFile([b], 'b.safetensors');
    const files = new BrowserWorkerFiles();
    files.open([
      { id: 0, ref: fa, write: false },
      { id: 1, ref: fb, write: false },
    ]);
    const out = new Map([[2, new Uint8Array(120_000)]]);
    // Two ranges of a close together (read as one slice), one far off, one of b.
    const unit: CopyUnit = {
      kind: 'copy',
      tensor: 't',
      parts: [
        { from: { file: 0, offset: 1000, length: 20_000 }, to: { file: 2, offset: 0, length: 20_000 } },
        { from: { file: 0, offset: 22_000, length: 30_000 }, to: { file: 2, offset: 20_000, length: 30_000 } },
        { from: { file: 0, offset: 250_000, length: 40_000 }, to: { file: 2, offset: 50_000, length: 40_000 } },
        { from: { file: 1, offset: 170_000, length: 30_000 }, to: { file: 2, offset: 90_000, length: 30_000 } },
      ],
    };
    const r = runner(files, out);
    prefetchUnit(r, unit);
    expect([fa.slices, fb.slices]).toEqual([2, 1]);
    await runUnit(m, r, unit);
    // The prefetched slices were taken, none fetched again.
    expect([fa.slices, fb.slices]).toEqual([2, 1]);
    const want = new Uint8Array(120_000);
    want.set(a.subarray(1000, 21_000), 0);
    want.set(a.subarray(22_000, 52_000), 20_000);
    want.set(a.subarray(250_000, 290_000), 50_000);
    want.set(b.subarray(170_000, 200_000), 90_000);
    expect(Buffer.from(out.get(2)!).equals(Buffer.from(want))).toBe(true);

    // Without a prefetch the unit fetches its slices itself; a prefetch left unread goes with its file.
    out.get(2)!.fill(0);
    await runUnit(m, r, unit);
    expect([fa.slices, fb.slices]).toEqual([4, 2]);
    expect(Buffer.from(out.get(2)!).equals(Buffer.from(want))).toBe(true);
    prefetchUnit(r, unit);
    await files.close([0, 1]);
    await expect(runUnit(m, r, unit)).rejects.toThrow(/file 0 was not opened in this worker/);
  });

  it('reports a prefetched slice that failed, naming the file', async () => {
    class Unreadable extends File {
      override slice(): Blob {
        return { arrayBuffer: () => Promise.reject(new DOMException('the file changed on disk', 'NotReadableError')) } as unknown as Blob;
      }
    }
    const files = new BrowserWorkerFiles();
    files.open([{ id: 0, ref: new Unreadable([bytes(1000, 3)], 'gone.safetensors'), write: false }]);
    const r = runner(files, new Map([[1, new Uint8Array(100)]]));
    const unit: CopyUnit = { kind: 'copy', tensor: 't', parts: [{ from: { file: 0, offset: 0, length: 100 }, to: { file: 1, offset: 0, length: 100 } }] };
    prefetchUnit(r, unit);
    await expect(runUnit(m, r, unit)).rejects.toThrow(/gone\.safetensors: read failed: .*the file changed on disk/);
  });

  it('a failed read fails its unit only once every other read of it has settled', async () => {
    const events: string[] = [];
    const files: RunnerFiles = {
      read: async (file, _offset, length, dst) => {
        if (file === 0) {
          events.push('read 0 failed');
          throw new Error('EIO: i/o error, read');
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
        dst().set(new Uint8Array(length).fill(7));
        events.push('read 1 landed');
      },
      write: () => true,
    };
    const unit: CopyUnit = {
      kind: 'copy',
      tensor: 't',
      parts: [
        { from: { file: 0, offset: 0, length: 64 }, to: { file: 2, offset: 0, length: 64 } },
        { from: { file: 1, offset: 0, length: 64 }, to: { file: 2, offset: 64, length: 64 } },
      ],
    };
    await expect(
      runUnit(m, files, unit).finally(() => events.push('unit ended')),
    ).rejects.toThrow(/EIO/);
    expect(events).toEqual(['read 0 failed', 'read 1 landed', 'unit ended']);
  });
});

/** Holds the thread for `ms` (a synchronous read or write, as the CLI's workers make). */
function hold(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe("a runner's time on a unit", () => {
  it('counts reading, writing and hashing where they happen and computing as the rest, adding up to the unit', async () => {
    const data = bytes(4096, 5);
    const files: RunnerFiles = {
      read: (_f, o, n, dst) => {
        hold(30);
        dst().set(data.subarray(o, o + n));
      },
      write: async () => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return true;
      },
    };
    const copy: CopyUnit = { kind: 'copy', tensor: 't', parts: [{ from: { file: 0, offset: 0, length: 4096 }, to: { file: 1, offset: 0, length: 4096 } }] };
    const t0 = performance.now();
    const r = await runUnit(m, files, copy);
    const wall = performance.now() - t0;
    const t = r.time!;
    expect(t.read).toBeGreaterThanOrEqual(30);
    expect(t.write).toBeGreaterThanOrEqual(19);
    expect(t.hash).toBeGreaterThanOrEqual(0);
    expect(t.compute).toBeLessThan(10);
    expect(t.read + t.compute + t.hash + t.write).toBeLessThanOrEqual(wall + 0.01);
    expect(t.read + t.compute + t.hash + t.write).toBeGreaterThan(wall - 5);

    // A mix of 1M BF16 values: its kernels are computing, not reading (instant here) or writing.
    const n = 1024 * 1024;
    const quick: RunnerFiles = { read: (_f, _o, len, dst) => void dst().fill(0x3f, 0, len), write: () => true };
    const bf16 = { kind: 'plain', dtype: 'BF16' } as const;
    const band = (file: number) => ({ codec: bf16, rows: 1024, cols: 1024, data: { file, offset: 0, length: 2 * n } });
    const mix: StripeUnit = {
      kind: 'stripe', tensor: 'mix', rows: 1024, cols: 1024, slabs: 1, out: bf16,
      bands: [band(0), band(1)],
      pieces: [{ kind: 'mix', nO: 1024, nI: 1024, dst: { at: 0, so: 1024, si: 1 }, inputs: [0, 1].map((b) => ({ band: b, weight: 0.5, src: { at: 0, so: 1024, si: 1 } })) }],
      data: { file: 2, offset: 0, length: 2 * n },
    };
    const mt = (await runUnit(m, quick, mix)).time!;
    expect(mt.compute).toBeGreaterThan(0);
  });

  it('is said as shares of the busy time, largest first, and how busy the runners were', () => {
    const t = { read: 300, compute: 500, hash: 50, write: 150 };
    expect(runnerTimeText(t, 1000, 2)).toBe('2 workers busy 50% of 1.0s: computing 50%, reading 30%, writing 15%, checksums 5%');
    expect(runnerTimeText(t, 1000, 1)).toBe('1 worker busy 100% of 1.0s: computing 50%, reading 30%, writing 15%, checksums 5%');
    expect(runnerTimeText({ read: 0, compute: 0, hash: 0, write: 0 }, 10, 0)).toBe('the kernels (in-process): no units run');
  });

  it("says the most memory one runner held for its kernels", () => {
    expect(runnerMemoryText(8_585_216, 2)).toBe('each of 2 workers held at most 8.6 MB for its kernels');
    expect(runnerMemoryText(22_200_000, 1)).toBe('the worker held at most 22.2 MB for its kernels');
    expect(runnerMemoryText(1_200_000, 0)).toBe('the kernels (in-process) held at most 1.2 MB');
    expect(runnerMemoryText(0, 2)).toBe('no kernel memory used');
  });
});

describe("the CLI's worker files", () => {
  it('write a range larger than one write call at its offset, byte for byte, and read it back', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'moe-wf-'));
    try {
      const file = path.join(dir, 'out.bin');
      writeFileSync(file, new Uint8Array(100));
      const files = new NodeWorkerFiles();
      files.open([{ id: 7, ref: file, write: true }]);
      // 5 MiB and 3 bytes: three calls of at most 2 MiB, the last a partial one.
      const data = bytes((5 << 20) + 3, 9);
      expect(files.write(7, 1000, data)).toBe(true);
      const back = new Uint8Array(data.length);
      files.read(7, 1000, data.length, () => back);
      files.close([7]);
      const onDisk = readFileSync(file);
      expect(onDisk.length).toBe(1000 + data.length);
      expect(onDisk.subarray(0, 100).every((b) => b === 0)).toBe(true);
      expect(Buffer.from(onDisk.subarray(1000)).equals(Buffer.from(data))).toBe(true);
      expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
