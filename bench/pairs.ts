// The generated parent pairs the benchmarks merge, kept in .cache/bench/ and shared between them
// (`npm run bench` and `npm run bench:studio` reuse each other's pairs).
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CACHE = path.join(ROOT, '.cache/bench');

export interface Pair {
  base: string;
  donor: string;
}

/** The pair `app/fixtures/cli.ts` generates with `args`, in .cache/bench/<label>: generated once, then reused. */
export function generatedPair(label: string, args: string[]): Pair {
  const dir = path.join(CACHE, label);
  const pair = path.join(dir, 'big-pair');
  if (!existsSync(path.join(pair, 'donor', 'model.safetensors.index.json'))) {
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`generating ${label} (once; kept in .cache/bench)...\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'app/fixtures/cli.ts', dir, ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error(`generating ${label} failed`);
  }
  return { base: path.join(pair, 'base'), donor: path.join(pair, 'donor') };
}

/** A BF16 Mixtral-shaped pair of `size` in all. */
export const bf16Pair = (size: string): Pair => generatedPair(`bf16-${size}`, ['--size', size]);

/** A DeepSeek-V3-shaped FP8 pair (128 × 128 block scales) of `size` in all. */
export const fp8Pair = (size: string): Pair => generatedPair(`fp8-${size}`, ['--size', size, '--family', 'deepseek_v3', '--dtype', 'FP8']);
