// `npm run bench`: merge time of the CLI on a generated pair (about 2 GB per parent), next to a
// copy-only floor measured in the same run on the same files, their ratio, and peak RSS; then the
// same recipe on one 2 GB tensor and on a 2 MB one, to show memory does not grow with tensor size.
//   npm run bench [-- --size 4GB] [-- --fp8] [-- --runs 2] [-- --workers N] [-- --json]
// Generated models are kept in .cache/bench/ and reused.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, statSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpus, totalmem } from 'node:os';
import { build } from 'esbuild';
import { buildSafetensorsHeader } from '../app/engine/formats/safetensors.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CACHE = path.join(ROOT, '.cache/bench');
const { values: opts } = parseArgs({
  options: {
    size: { type: 'string', default: '4GB' },
    fp8: { type: 'boolean', default: false },
    runs: { type: 'string', default: '2' },
    workers: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const runs = Number(opts.runs);

interface Measure {
  ms: number;
  peakRssMB: number;
}

/** Runs a command, sampling its peak resident memory (VmHWM, all threads) from /proc until it exits. */
function measured(cmd: string, args: string[]): Promise<Measure & { stdout: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    let peakKB = 0;
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKB = Math.max(peakKB, Number(m[1]));
      } catch {}
    };
    const timer = setInterval(sample, 20);
    child.stdout.on('data', (d) => (stdout += d));
    child.on('exit', (code) => {
      clearInterval(timer);
      const ms = performance.now() - started;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`));
      else resolve({ ms, peakRssMB: peakKB / 1024, stdout });
    });
  });
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((s, f) => s + statSync(path.join(dir, f)).size, 0);
}

/** A generated parent pair from the fixture generator, cached by its parameters. */
function generatedPair(label: string, args: string[]): { base: string; donor: string } {
  const dir = path.join(CACHE, label);
  const pair = path.join(dir, 'big-pair');
  if (!existsSync(path.join(pair, 'donor', 'model.safetensors.index.json'))) {
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`generating ${label} (once; kept in .cache/bench)...\n`);
    run(process.execPath, ['--import', 'tsx', 'app/fixtures/cli.ts', dir, ...args]);
  }
  return { base: path.join(pair, 'base'), donor: path.join(pair, 'donor') };
}

/**
 * A pair holding one tensor of `bytes` BF16 (random finite values), written directly: the
 * generator's PRNG would take minutes for 2 GB, and only the size matters here.
 */
async function oneTensorPair(label: string, rows: number, cols: number): Promise<{ base: string; donor: string }> {
  const dir = path.join(CACHE, label);
  const result = { base: path.join(dir, 'base'), donor: path.join(dir, 'donor') };
  if (existsSync(path.join(result.donor, 'done'))) return result;
  for (const [i, d] of [result.base, result.donor].entries()) {
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'one_tensor_moe', num_hidden_layers: 1, hidden_size: cols, num_local_experts: 1 }));
    const name = 'model.layers.0.mlp.experts.0.down_proj.weight';
    const { header } = buildSafetensorsHeader([{ name, dtype: 'BF16', shape: [rows, cols], length: rows * cols * 2 }], { format: 'pt' });
    const fh = await open(path.join(d, 'model.safetensors'), 'w');
    await fh.write(header);
    const block = new Uint16Array(8 * 1024 * 1024);
    let x = 0x9e3779b9 ^ (i + 1);
    for (let done = 0; done < rows * cols; done += block.length) {
      const n = Math.min(block.length, rows * cols - done);
      for (let k = 0; k < n; k++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        block[k] = (x & 0x807f) | 0x3c00; // sign, mantissa random; exponent fixed: finite values near 2^-7
      }
      await fh.write(new Uint8Array(block.buffer, 0, n * 2));
    }
    await fh.close();
    writeFileSync(path.join(d, 'done'), '');
  }
  return result;
}

function recipe(dir: string, pair: { base: string; donor: string }, rules: string): string {
  const file = path.join(dir, 'recipe.yaml');
  writeFileSync(file, `parents: {base: ${JSON.stringify(pair.base)}, donor: ${JSON.stringify(pair.donor)}}\nrules:\n${rules}`);
  return file;
}

async function mergeRun(file: string, out: string): Promise<Measure> {
  rmSync(out, { recursive: true, force: true });
  const args = ['dist/cli/moe-studio.mjs', 'merge', file, '-o', out];
  if (opts.workers) args.push('--workers', opts.workers);
  const m = await measured(process.execPath, args);
  return m;
}

async function floorRun(pair: { base: string; donor: string }, out: string, childBytes: number): Promise<Measure> {
  rmSync(out, { recursive: true, force: true });
  // The merge's default window: twice the workers plus two.
  const window = 2 * Number(opts.workers ?? Math.min(8, cpus().length)) + 2;
  return measured(process.execPath, [FLOOR, pair.base, pair.donor, path.join(out, 'floor.bin'), String(childBytes), String(window)]);
}

function best(ms: Measure[]): Measure {
  return ms.reduce((a, b) => (b.ms < a.ms ? b : a));
}

// The floor is bundled like the CLI, so neither pays for compiling TypeScript at start-up.
const FLOOR = path.join(CACHE, 'copy-floor.mjs');
mkdirSync(CACHE, { recursive: true });
await build({ entryPoints: [path.join(ROOT, 'bench/copy-floor.ts')], outfile: FLOOR, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning',
  banner: { js: "import { createRequire as __moeCreateRequire } from 'node:module'; const require = __moeCreateRequire(import.meta.url);" },
});

const MIX_EXPERTS = '  - select: {kind: routed_expert}\n    weights: {base: 0.5, donor: 0.5}\n';
const results: Record<string, unknown>[] = [];
mkdirSync(CACHE, { recursive: true });
const out = path.join(CACHE, 'out');

const scenarios: { name: string; pair: () => Promise<{ base: string; donor: string }>; rules: string }[] = [
  { name: `BF16 Mixtral-shaped pair, ${opts.size} in all, α=0.5 on every routed expert`, pair: async () => generatedPair(`bf16-${opts.size}`, ['--size', opts.size!]), rules: MIX_EXPERTS },
];
if (opts.fp8) {
  scenarios.push({
    name: 'DeepSeek-V3 FP8 pair, 2GB in all, α=0.5 on every routed expert (dequantize, mix, re-quantize)',
    pair: async () => generatedPair('fp8-2GB', ['--size', '2GB', '--family', 'deepseek_v3', '--dtype', 'FP8']),
    rules: MIX_EXPERTS,
  });
}

for (const s of scenarios) {
  const pair = await s.pair();
  const file = recipe(CACHE, pair, s.rules);
  const floor: Measure[] = [];
  const merge: Measure[] = [];
  let childBytes = 0;
  for (let i = 0; i < runs; i++) {
    merge.push(await mergeRun(file, out));
    childBytes = dirBytes(out);
    floor.push(await floorRun(pair, path.join(CACHE, 'floor'), childBytes));
  }
  const f = best(floor);
  const m = best(merge);
  const parentBytes = dirBytes(pair.base) + dirBytes(pair.donor);
  results.push({
    scenario: s.name,
    parentsGB: +(parentBytes / 1e9).toFixed(2),
    childGB: +(childBytes / 1e9).toFixed(2),
    floorSeconds: +(f.ms / 1000).toFixed(2),
    mergeSeconds: +(m.ms / 1000).toFixed(2),
    mergeOverFloor: +(m.ms / f.ms).toFixed(2),
    mergeGBps: +((parentBytes + childBytes) / 1e6 / m.ms).toFixed(2),
    floorPeakRssMB: Math.round(f.peakRssMB),
    mergePeakRssMB: Math.round(m.peakRssMB),
  });
}

// Memory does not grow with tensor size: the same recipe on one tensor of 2 MB, 200 MB and 2 GB.
const memory: { tensor: string; mergeSeconds: number; floorSeconds: number; mergeOverFloor: number; peakRssMB: number }[] = [];
for (const [label, side] of [['2 MB', 1024], ['200 MB', 10240], ['2 GB', 32768]] as const) {
  const pair = await oneTensorPair(`one-tensor-${side}`, side, side);
  const file = recipe(CACHE, pair, MIX_EXPERTS);
  const m = await mergeRun(file, out);
  const childBytes = dirBytes(out);
  const f = await floorRun(pair, path.join(CACHE, 'floor'), childBytes);
  memory.push({ tensor: label, mergeSeconds: +(m.ms / 1000).toFixed(2), floorSeconds: +(f.ms / 1000).toFixed(2), mergeOverFloor: +(m.ms / f.ms).toFixed(2), peakRssMB: Math.round(m.peakRssMB) });
}
rmSync(out, { recursive: true, force: true });
rmSync(path.join(CACHE, 'floor'), { recursive: true, force: true });

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
if (opts.json) {
  process.stdout.write(JSON.stringify({ machine, results, memory }, null, 2) + '\n');
} else {
  process.stdout.write(`machine: ${machine}\n\n`);
  for (const r of results) {
    process.stdout.write(
      `${r.scenario}\n  parents ${r.parentsGB} GB, child ${r.childGB} GB\n` +
        `  copy-only floor ${r.floorSeconds} s (peak RSS ${r.floorPeakRssMB} MB)\n` +
        `  merge           ${r.mergeSeconds} s (peak RSS ${r.mergePeakRssMB} MB), ${r.mergeGBps} GB/s read+written\n` +
        `  merge / floor   ${r.mergeOverFloor}\n\n`,
    );
  }
  process.stdout.write('one BF16 tensor per parent, α=0.5 (memory must not grow with tensor size):\n');
  for (const m of memory) {
    process.stdout.write(`  ${m.tensor.padEnd(7)} merge ${m.mergeSeconds} s, floor ${m.floorSeconds} s, merge / floor ${m.mergeOverFloor}, peak RSS ${m.peakRssMB} MB\n`);
  }
}
