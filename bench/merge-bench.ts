// `npm run bench`: what the CLI's merges cost against the fastest way this machine moves the same
// bytes, measured in the same run (not a timed test; see README "Figures").
//
//   npm run bench [-- --size 2.3GB] [-- --runs 3] [-- --workers 1,2] [-- --json] [-- --quick] [-- --out DIR]
//                 [-- --only bf16,fp8,fused,sweep,memory,tensors]
//
// For each scenario: the floor — the operating system copying the bytes (`cat` the donor's
// shards, `cp` the base's next to the output, then `sync` the copies: cp uses copy_file_range, the
// fastest path the platform has, and the merge also makes its child durable before naming it) —
// and the merge at each worker count, best of `runs`, with peak RSS; merge / floor, and the same
// with the CLI's fixed start-up (the same merge on tiny tensors) taken out of the merge. Each run's
// CPU time too (the CLI's own, threads included; the floor's through `times`): a merge cannot take
// less than its CPU time over the machine's cores, so that share against the floor tells where the
// cores, not the pipeline, bound merge / floor; and the CLI's line on where its workers' time went
// (reading, computing, writing, checksums). The BF16 and FP8 pairs also get the arithmetic alone:
// their kernel timed in this process on one expert, at that rate for every routed expert value,
// over the cores; and that with the merge's system CPU (its reads and writes), which leaves what
// JavaScript, checksums and V8's compilers may take before merge / floor meets a target. Whatever
// is compared is measured in turn, run by run (floor, 1 worker, 2 workers, floor, ...), so that a
// slow spell of a shared machine falls on all of it. `--only` runs some scenarios (`--quick`: bf16).
// Scenarios: a BF16 Mixtral-shaped pair, α = 0.5 on every routed expert; a DeepSeek-V3-shaped FP8
// pair re-quantizing every routed expert; one expert mixed inside fused tensors against the same
// merge on the per-expert layout; a 3-child λ sweep against three merges, each keeping its child
// as the sweep does (time, and bytes read by the process: each parent byte once); one tensor of
// 2 MB, 200 MB and 2 GB (peak RSS stays flat); DeepSeek-V3's full tensor layout at tiny shapes with
// 256 experts against 32 (the coordinator's time per tensor stays flat; its peak RSS, which holds
// every tensor's description and plan, is printed too). Every timed run starts with its parents in
// the page cache. Generated parents are kept in .cache/bench/ and reused;
// children and the floor's copies are written there too, or under `--out DIR` (another disk, or
// /dev/shm to leave the disk out).
// Free memory at the start is printed: writing gigabytes into a page cache already full of other
// files (earlier runs' parents) makes the kernel reclaim as it goes, which slows every writer.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { cpus, freemem, totalmem } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openNodeModelFolder } from '../app/cli/node-io.ts';
import { dataBytes, stripeScales } from '../app/engine/formats/codec.ts';
import { buildSafetensorsHeader } from '../app/engine/formats/safetensors.ts';
import { instantiateKernelsFromBytes, type MixInput } from '../app/engine/kernels/wasm-kernels.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import { bf16Pair, CACHE, fp8Pair, generatedPair, ROOT, type Pair } from './pairs.ts';

const CLI = path.join(ROOT, 'dist/cli/moe-studio.mjs');
const { values: opts } = parseArgs({
  options: {
    size: { type: 'string', default: '2.3GB' },
    runs: { type: 'string', default: '2' },
    workers: { type: 'string' },
    json: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
  },
});
const runs = Math.max(1, Number(opts.runs));
const SCENARIOS = ['bf16', 'fp8', 'fused', 'sweep', 'memory', 'tensors'] as const;
const only = new Set(opts.only ? opts.only.split(',') : opts.quick ? ['bf16'] : SCENARIOS);
for (const o of only) if (!(SCENARIOS as readonly string[]).includes(o)) throw new Error(`--only: ${o} is not one of ${SCENARIOS.join(', ')}`);
const cores = cpus().length;
// Every worker count from 1 to the machine's cores, unless told (`--workers 1,2,4,8,16`).
const workerCounts = opts.workers ? opts.workers.split(',').map(Number) : Array.from({ length: cores }, (_, i) => i + 1);

interface Measure {
  ms: number;
  peakRssMB: number;
  /** CPU time, user and system, of the process and its threads (the CLI's `cpu:` line, the floor's `times`). */
  cpuMs: number;
  /** The system part of it: time in the operating system (for a merge, mostly its reads and writes). */
  systemMs: number;
  stdout: string;
  stderr: string;
}

/** CPU milliseconds, user and system, from a run's stderr: the CLI's own `cpu: user U ms, system S ms`, or the last `times` line (children: 0m1.5s 0m0.3s). */
function cpuOf(stderr: string): { user: number; system: number } {
  const cli = /^cpu: user (\d+) ms, system (\d+) ms$/m.exec(stderr);
  if (cli) return { user: Number(cli[1]), system: Number(cli[2]) };
  const times = [...stderr.matchAll(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/gm)].pop();
  return times ? { user: (Number(times[1]) * 60 + Number(times[2])) * 1000, system: (Number(times[3]) * 60 + Number(times[4])) * 1000 } : { user: NaN, system: NaN };
}

/** Runs a command, sampling its peak resident memory (VmHWM, all threads) until it exits. */
function measured(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Measure> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    let peakKB = 0;
    const timer = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKB = Math.max(peakKB, Number(m[1]));
      } catch {}
    }, 20);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => {
      clearInterval(timer);
      const ms = performance.now() - started;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.slice(-2000)}`));
      else {
        const cpu = cpuOf(stderr);
        resolve({ ms, peakRssMB: peakKB / 1024, cpuMs: cpu.user + cpu.system, systemMs: cpu.system, stdout, stderr });
      }
    });
  });
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}

/**
 * Flushes earlier runs' dirty pages and reads the parents' shards once, so each run starts from
 * the same state of the page cache: parents cached (the other scenarios' files, and the
 * children written, may have pushed some of them out), nothing left to write back.
 */
function settle(pair?: Pair): void {
  spawnSync('sync');
  if (pair) spawnSync('/bin/sh', ['-c', `cat ${quoted([...shardsOf(pair.base), ...shardsOf(pair.donor)])} > /dev/null`]);
}

/** Paths as single-quoted words of a shell command. */
const quoted = (paths: string[]) => paths.map((p) => `'${p}'`).join(' ');

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((s, f) => s + statSync(path.join(dir, f)).size, 0);
}

const shardsOf = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(dir, f));

/**
 * The same model re-saved with fused experts, as transformers ≥ 5 writes qwen3_moe: per layer
 * `mlp.experts.gate_up_proj` [E, 2I, H] (each expert's gate rows, then its up rows) and
 * `mlp.experts.down_proj` [E, H, I] — the per-expert tensors' bytes, concatenated.
 */
async function fusedCopy(from: string, to: string): Promise<void> {
  if (existsSync(path.join(to, 'done'))) return;
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to, { recursive: true });
  const folder = await openNodeModelFolder(from);
  const model = await openModel(folder);
  const E = model.layout.experts;
  type Out = { name: string; dtype: string; shape: number[]; parts: { file: string; offset: number; length: number }[] };
  const tensors: Out[] = [];
  for (const w of model.weights) {
    const r = w.role;
    if (r.kind === 'routed_expert') {
      if (r.expert !== 0 || r.proj === 'up') continue;
      const parts = (proj: string) => Array.from({ length: E }, (_, e) => model.experts.get(r.layer!)!.parts[e]!.find((p) => p.proj === proj)!.weight.data);
      if (r.proj === 'gate') {
        const g = parts('gate');
        const u = parts('up');
        tensors.push({ name: `model.layers.${r.layer}.mlp.experts.gate_up_proj`, dtype: w.data.dtype, shape: [E, 2 * w.shape[0]!, w.shape[1]!], parts: g.flatMap((x, e) => [x, u[e]!]) });
      } else tensors.push({ name: `model.layers.${r.layer}.mlp.experts.down_proj`, dtype: w.data.dtype, shape: [E, w.shape[0]!, w.shape[1]!], parts: parts('down') });
      continue;
    }
    tensors.push({ name: w.name, dtype: w.data.dtype, shape: w.shape, parts: [w.data] });
  }
  const built = buildSafetensorsHeader(tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, length: t.parts.reduce((n, p) => n + p.length, 0) })), { format: 'pt' });
  const fh = await open(path.join(to, 'model.safetensors'), 'w');
  await fh.write(built.header);
  for (const t of tensors) for (const p of t.parts) await fh.write(await model.sources.get(p.file)!.read(p.offset, p.length));
  await fh.close();
  await folder.close();
  const config = JSON.parse(readFileSync(path.join(from, 'config.json'), 'utf8'));
  config.num_local_experts = config.num_experts;
  delete config.num_experts;
  writeFileSync(path.join(to, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(path.join(to, 'done'), '');
}

/**
 * The arithmetic alone: one core mixing the first routed expert of each parent by MIX_WEIGHTS, in
 * WASM memory, with the kernel the workers use (mix_e4m3 into E4M3 blocks, mix_tiled into a plain
 * output) and the module the CLI bundles; and how many values the routed experts hold, every one
 * of which the merge mixes. `rate()` times the kernel for about half a second, best call kept
 * (values per second); the bench calls it once per round of runs, so a slow spell of the machine
 * falls on it as on the rest. Nothing read or written is timed.
 */
async function arithmetic(pair: Pair): Promise<{ values: number; rate: () => number }> {
  const wasm = await instantiateKernelsFromBytes(new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm'))));
  const folders = [await openNodeModelFolder(pair.base), await openNodeModelFolder(pair.donor)];
  try {
    const models = [await openModel(folders[0]!), await openModel(folders[1]!)];
    const routed = models[0]!.weights.filter((w) => w.role.kind === 'routed_expert');
    if (routed.length === 0) throw new Error(`${pair.base}: no routed expert`);
    const values = routed.reduce((n, w) => n + w.view.slabs * w.view.rows * w.view.cols, 0);
    const first = routed[0]!;
    const { slabs, rows: r, cols } = first.view;
    const rows = slabs * r;
    const inputs: MixInput[] = [];
    const weights = [MIX_WEIGHTS.base, MIX_WEIGHTS.donor];
    for (const [i, model] of models.entries()) {
      const w = model.byName.get(first.name);
      if (!w) throw new Error(`${model.name}: no ${first.name}`);
      const read = (t: { file: string; offset: number; length: number }) => model.sources.get(t.file)!.read(t.offset, t.length);
      const scale = w.companions.find((c) => c.role === 'scale');
      const data = wasm.put(`in${i}`, await read(w.data));
      inputs.push({ codec: w.codec, data, scales: scale ? wasm.put(`in${i}.scales`, await read(scale.record)) : 0, weight: weights[i]! });
    }
    // The child keeps the base's codec (the bench's recipes convert nothing).
    const out = first.codec;
    const dst = wasm.slot('out', dataBytes(out, rows, cols));
    const blocked = wasm.mixesE4m3(out, rows, cols);
    const dstScales = blocked ? wasm.slot('out.scales', Math.max(16, stripeScales(out, rows, cols).bytes)) : 0;
    const once = () => {
      const rc = blocked ? wasm.mixE4m3(inputs, rows, cols, out, dst, dstScales) : wasm.mixTiled(inputs, rows, cols, out, dst);
      if (rc !== 0) throw new Error(`${first.name}: the kernel returned ${rc}`);
    };
    // Warm-up: V8 runs a WASM function from its baseline compiler until the optimized code is in.
    for (let i = 0; i < 5; i++) once();
    const rate = () => {
      let bestMs = Infinity;
      const started = performance.now();
      while (performance.now() - started < 500) {
        const t0 = performance.now();
        once();
        bestMs = Math.min(bestMs, performance.now() - t0);
      }
      return (rows * cols) / (bestMs / 1000);
    };
    return { values, rate };
  } finally {
    for (const f of folders) await f.close();
  }
}

/** A pair holding one BF16 tensor of rows × cols (random finite values), written directly. */
async function oneTensorPair(label: string, rows: number, cols: number): Promise<Pair> {
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
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        block[k] = (x & 0x807f) | 0x3c00; // sign, mantissa random; exponent fixed: finite values near 2^-7
      }
      await fh.write(new Uint8Array(block.buffer, 0, n * 2));
    }
    await fh.close();
    writeFileSync(path.join(d, 'done'), '');
  }
  return result;
}

function recipe(file: string, pair: Pair, rules: string): string {
  writeFileSync(file, `parents: {base: ${JSON.stringify(pair.base)}, donor: ${JSON.stringify(pair.donor)}}\nrules:\n${rules}`);
  return file;
}

/** Where children and the floor's copies are written (`--out`; the disk under .cache/bench by default). */
const OUT_ROOT = opts.out ? path.resolve(opts.out, 'moe-studio-bench') : CACHE;
const OUT = path.join(OUT_ROOT, 'out');

async function mergeRun(pair: Pair, files: string[], workers: number, out = OUT): Promise<Measure> {
  rmSync(out, { recursive: true, force: true });
  settle(pair);
  return measured(process.execPath, [CLI, 'merge', ...files, '-o', out, '--workers', String(workers)], { MOE_STUDIO_REPORT_USAGE: '1' });
}

/** The operating system's copy: read the donor, copy the base's shards, make the copies durable. */
async function floorRun(pair: Pair): Promise<Measure> {
  const dir = path.join(OUT_ROOT, 'floor');
  // As a merge starts without the floor's copy (removed below), the floor starts without the last
  // merge's child.
  rmSync(OUT, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  settle(pair);
  // `times` (POSIX) ends with the CPU time of the shell's children: cat, cp and sync.
  const script = `cat ${quoted(shardsOf(pair.donor))} > /dev/null & cp ${quoted(shardsOf(pair.base))} '${dir}/'; wait; sync '${dir}'/*; times >&2`;
  const m = await measured('/bin/sh', ['-c', script]);
  rmSync(dir, { recursive: true, force: true });
  return m;
}

async function best(n: number, fn: () => Promise<Measure>): Promise<Measure> {
  let b: Measure | undefined;
  for (let i = 0; i < n; i++) {
    const m = await fn();
    if (!b || m.ms < b.ms) b = m;
  }
  return b!;
}

const ioRead = (m: Measure) => Number(/io: read (\d+) bytes/.exec(m.stderr)?.[1] ?? NaN);
const s = (ms: number) => +(ms / 1000).toFixed(2);
/** The parents' weights on every routed expert in the scenarios (α = 0.5), and that rule as recipe YAML. */
const MIX_WEIGHTS = { base: 0.5, donor: 0.5 };
const MIX = `  - select: {kind: routed_expert}\n    weights: {base: ${MIX_WEIGHTS.base}, donor: ${MIX_WEIGHTS.donor}}\n`;

mkdirSync(CACHE, { recursive: true });
const machine = `${cores} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const memoryNote = `${(freemem() / 2 ** 30).toFixed(1)} GiB free memory at start; outputs under ${OUT_ROOT}`;
process.stderr.write(`${machine}; ${memoryNote}; worker counts ${workerCounts.join(', ')}; best of ${runs}\n`);

// The CLI's fixed cost: the same kind of merge on a tiny pair.
const tinyDir = path.join(CACHE, 'tiny');
if (!existsSync(path.join(tinyDir, 'fixture-manifest.json'))) run(process.execPath, ['--import', 'tsx', 'app/fixtures/cli.ts', tinyDir, 'mixtral-pair']);
const tinyPair = { base: path.join(tinyDir, 'mixtral-pair', 'base'), donor: path.join(tinyDir, 'mixtral-pair', 'instruct') };
const tiny = recipe(path.join(CACHE, 'tiny.yaml'), tinyPair, MIX);
const startup = await best(runs + 1, () => mergeRun(tinyPair, [tiny], Math.min(2, cores)));
process.stderr.write(`start-up (the same merge on tiny tensors): ${s(startup.ms)} s\n`);

interface Row {
  scenario: string;
  parentsGB: number;
  childGB: number;
  floorSeconds: number;
  floorCpuSeconds: number;
  /**
   * The arithmetic alone (see `arithmetic`): the routed experts' values, mixed at one core's rate,
   * spread over every core, against the floor; then with the floor's own CPU time added.
   */
  arithmetic: { valuesG: number; valuesPerSecondM: number; kernelsOverCoresOverFloor: number; withFloorCpuOverCoresOverFloor: number };
  merges: {
    workers: number;
    seconds: number;
    peakRssMB: number;
    overFloor: number;
    overFloorWithoutStartup: number;
    cpuSeconds: number;
    systemCpuSeconds: number;
    /** The merge's CPU time less start-up's, spread over every core, against the floor: no faster merge / floor with this much work. */
    cpuOverCoresOverFloor: number;
    /**
     * The kernels' time (`arithmetic`) and the merge's system CPU less start-up's (its reads and
     * writes in the operating system), spread over every core, against the floor: what is left
     * below the merge's own share is everything else (JavaScript, checksums, V8's compilers).
     */
    kernelsAndSystemOverCoresOverFloor: number;
    /** The CLI's line on where its workers' time went. */
    runners: string;
  }[];
}
const rows: Row[] = [];

async function scenario(name: string, pair: Pair, rules: string): Promise<Row> {
  process.stderr.write(`${name}...\n`);
  const file = recipe(path.join(CACHE, 'scenario.yaml'), pair, rules);
  const kernels = await arithmetic(pair);
  let valuesPerSecond = 0;
  // Run by run, the floor and each worker count in turn, so that a slow spell of a shared machine
  // falls on all of them rather than on one; the best of each is kept.
  let floor: Measure | undefined;
  const bestMerge = new Map<number, Measure>();
  let childBytes = 0;
  for (let r = 0; r < runs; r++) {
    valuesPerSecond = Math.max(valuesPerSecond, kernels.rate());
    const f = await floorRun(pair);
    if (!floor || f.ms < floor.ms) floor = f;
    for (const w of workerCounts) {
      const m = await mergeRun(pair, [file], w);
      childBytes = dirBytes(OUT);
      if (!bestMerge.has(w) || m.ms < bestMerge.get(w)!.ms) bestMerge.set(w, m);
    }
  }
  const kernelMs = (kernels.values / valuesPerSecond) * 1000;
  const merges: Row['merges'] = workerCounts.map((w) => {
    const m = bestMerge.get(w)!;
    return {
      workers: w,
      seconds: s(m.ms),
      peakRssMB: Math.round(m.peakRssMB),
      overFloor: +(m.ms / floor!.ms).toFixed(2),
      overFloorWithoutStartup: +((m.ms - startup.ms) / floor!.ms).toFixed(2),
      cpuSeconds: s(m.cpuMs),
      systemCpuSeconds: s(m.systemMs),
      cpuOverCoresOverFloor: +((m.cpuMs - startup.cpuMs) / cores / floor!.ms).toFixed(2),
      kernelsAndSystemOverCoresOverFloor: +((kernelMs + m.systemMs - startup.systemMs) / cores / floor!.ms).toFixed(2),
      runners: /^\d+ workers? .*$/m.exec(m.stdout)?.[0] ?? '',
    };
  });
  const row = {
    scenario: name,
    parentsGB: +((dirBytes(pair.base) + dirBytes(pair.donor)) / 1e9).toFixed(2),
    childGB: +(childBytes / 1e9).toFixed(2),
    floorSeconds: s(floor!.ms),
    floorCpuSeconds: s(floor!.cpuMs),
    arithmetic: {
      valuesG: +(kernels.values / 1e9).toFixed(2),
      valuesPerSecondM: Math.round(valuesPerSecond / 1e6),
      kernelsOverCoresOverFloor: +(kernelMs / cores / floor!.ms).toFixed(2),
      withFloorCpuOverCoresOverFloor: +((kernelMs + floor!.cpuMs) / cores / floor!.ms).toFixed(2),
    },
    merges,
  };
  rows.push(row);
  return row;
}

if (only.has('bf16')) await scenario(`BF16 Mixtral-shaped pair, α = 0.5 on every routed expert`, bf16Pair(opts.size!), MIX);

const extra: Record<string, unknown> = {};
const w = Math.min(2, cores);
if (only.has('fp8')) {
  const fp8 = fp8Pair(opts.size!);
  await scenario('DeepSeek-V3-shaped FP8 pair, α = 0.5 on every routed expert (dequantize, mix, re-quantize)', fp8, MIX);
}

if (only.has('fused')) {
  // One expert inside fused tensors, against the same merge on the per-expert layout, in turn.
  const perExpert = generatedPair(`qwen3-${opts.size}`, ['--size', opts.size!, '--family', 'qwen3_moe']);
  const fused = { base: path.join(CACHE, `qwen3-fused-${opts.size}`, 'base'), donor: path.join(CACHE, `qwen3-fused-${opts.size}`, 'donor') };
  await fusedCopy(perExpert.base, fused.base);
  await fusedCopy(perExpert.donor, fused.donor);
  const ONE = '  - select: {kind: routed_expert, experts: 3}\n    weights: {base: 0.5, donor: 0.5}\n';
  const one = (pair: Pair) => mergeRun(pair, [recipe(path.join(CACHE, 'one.yaml'), pair, ONE)], w);
  let [a, b] = [Infinity, Infinity];
  for (let r = 0; r < runs; r++) {
    a = Math.min(a, (await one(perExpert)).ms);
    b = Math.min(b, (await one(fused)).ms);
  }
  extra.fused = { workers: w, perExpertSeconds: s(a), fusedSeconds: s(b), fusedOverPerExpert: +(b / a).toFixed(2) };
}

if (only.has('sweep')) {
  // A 3-child sweep against three merges, in turn. The three merges run one after another, each
  // child kept (as the sweep keeps its three) until all are written: deleting each child before the
  // next would hand the next merge the memory it freed.
  const bf16 = bf16Pair(opts.size!);
  const lam = [0.25, 0.5, 0.75].map((l) => recipe(path.join(CACHE, `lambda-${l}.yaml`), bf16, `  - select: {kind: routed_expert}\n    weights: {base: ${1 - l}, donor: ${l}}\n`));
  let sweep: Measure | undefined;
  let three = Infinity;
  let threeRead = 0;
  for (let r = 0; r < runs; r++) {
    const m = await mergeRun(bf16, lam, w, path.join(OUT_ROOT, 'sweep'));
    rmSync(path.join(OUT_ROOT, 'sweep'), { recursive: true, force: true });
    if (!sweep || m.ms < sweep.ms) sweep = m;
    let ms = 0;
    let read = 0;
    for (const [k, f] of lam.entries()) {
      const one = await mergeRun(bf16, [f], w, path.join(OUT_ROOT, 'three', String(k)));
      ms += one.ms;
      read += ioRead(one);
    }
    rmSync(path.join(OUT_ROOT, 'three'), { recursive: true, force: true });
    if (ms < three) [three, threeRead] = [ms, read];
  }
  const parentBytes = dirBytes(bf16.base) + dirBytes(bf16.donor);
  extra.sweep = {
    workers: w, sweepSeconds: s(sweep!.ms), threeMergesSeconds: s(three), sweepOverThree: +(sweep!.ms / three).toFixed(2),
    parentsGB: +(parentBytes / 1e9).toFixed(2), sweepReadGB: +(ioRead(sweep!) / 1e9).toFixed(2), threeMergesReadGB: +(threeRead / 1e9).toFixed(2),
  };
}

if (only.has('memory')) {
  // Peak RSS does not grow with tensor size.
  const memory: { tensor: string; seconds: number; peakRssMB: number; workerKernelsMB: number }[] = [];
  for (const [label, side] of [['2 MB', 1024], ['200 MB', 10240], ['2 GB', 32768]] as const) {
    const pair = await oneTensorPair(`one-tensor-${side}`, side, side);
    const m = await best(runs, () => mergeRun(pair, [recipe(path.join(CACHE, 'mem.yaml'), pair, MIX)], w));
    // The CLI's own figure: the most WASM memory one worker held (its "memory:" line).
    const kernels = Number(/held at most ([\d.]+) MB for its kernels/.exec(m.stdout)?.[1] ?? NaN);
    memory.push({ tensor: label, seconds: s(m.ms), peakRssMB: Math.round(m.peakRssMB), workerKernelsMB: kernels });
  }
  extra.memory = memory;
}
if (only.has('tensors')) {
  // What the coordinator does per tensor (opening both parents' headers, planning, one unit or
  // more per tensor, the index) must not grow with the number of tensors: DeepSeek-V3's full
  // layout (58 MoE layers, 163 and 160 shards) at tiny shapes with 256 experts, about 91,000
  // tensors per parent, against the same with 32. The child is one shard of all of them, α = 0.5
  // on every routed expert; start-up is taken out, and what is left is divided by the tensors.
  const sizes: { experts: number; tensorsPerParent: number; seconds: number; usPerTensor: number; peakRssMB: number }[] = [];
  for (const experts of [32, 256]) {
    const dir = path.join(CACHE, `full-count-${experts}`);
    const manifest = path.join(dir, 'deepseek-v3-full', 'fixture-manifest.json');
    if (!existsSync(manifest)) run(process.execPath, ['--import', 'tsx', 'app/fixtures/cli.ts', dir, '--full-count', '--experts', String(experts)]);
    const tensors = (JSON.parse(readFileSync(manifest, 'utf8')) as { parents: { v3: { tensors: number } } }).parents.v3.tensors;
    const pair = { base: path.join(dir, 'deepseek-v3-full', 'v3'), donor: path.join(dir, 'deepseek-v3-full', 'r1') };
    const m = await best(runs, () => mergeRun(pair, [recipe(path.join(CACHE, `tensors-${experts}.yaml`), pair, MIX)], w));
    sizes.push({ experts, tensorsPerParent: tensors, seconds: s(m.ms), usPerTensor: Math.round((1000 * (m.ms - startup.ms)) / tensors), peakRssMB: Math.round(m.peakRssMB) });
  }
  extra.tensors = { workers: w, sizes, perTensorRatio: +(sizes[1]!.usPerTensor / sizes[0]!.usPerTensor).toFixed(2) };
}
rmSync(OUT, { recursive: true, force: true });
if (opts.out) rmSync(OUT_ROOT, { recursive: true, force: true });

if (opts.json) {
  process.stdout.write(JSON.stringify({ machine, memoryNote, startupSeconds: s(startup.ms), startupCpuSeconds: s(startup.cpuMs), rows, ...extra }, null, 2) + '\n');
} else {
  const out: string[] = [`machine: ${machine}`, memoryNote, `start-up (same merge, tiny tensors): ${s(startup.ms)} s, CPU ${s(startup.cpuMs)} s`, ''];
  for (const r of rows) {
    out.push(`${r.scenario}: parents ${r.parentsGB} GB, child ${r.childGB} GB`);
    out.push(`  floor (cat donor, cp base, sync): ${r.floorSeconds} s, CPU ${r.floorCpuSeconds} s`);
    const a = r.arithmetic;
    out.push(`  arithmetic alone: ${a.valuesG} G values mixed at ${a.valuesPerSecondM} M values/s on one core; over ${cores} cores ${a.kernelsOverCoresOverFloor} × the floor, ${a.withFloorCpuOverCoresOverFloor} × with the floor's own CPU`);
    for (const m of r.merges) {
      out.push(`  merge, ${m.workers} worker${m.workers > 1 ? 's' : ''}: ${m.seconds} s, peak RSS ${m.peakRssMB} MB, merge / floor ${m.overFloor} (${m.overFloorWithoutStartup} without start-up)`);
      out.push(`    CPU ${m.cpuSeconds} s (system ${m.systemCpuSeconds} s): over ${cores} cores, without start-up's, ${m.cpuOverCoresOverFloor} × the floor; the kernels and system alone ${m.kernelsAndSystemOverCoresOverFloor} ×`);
      out.push(`    ${m.runners}`);
    }
    out.push('');
  }
  if (extra.fused) {
    const f = extra.fused as Record<string, number>;
    out.push(`one expert mixed in every layer, ${f.workers} workers: per-expert layout ${f.perExpertSeconds} s, fused ${f.fusedSeconds} s (fused / per-expert ${f.fusedOverPerExpert})`);
  }
  if (extra.sweep) {
    const w = extra.sweep as Record<string, number>;
    out.push(`3-child λ sweep, ${w.workers} workers: ${w.sweepSeconds} s against ${w.threeMergesSeconds} s for three merges (${w.sweepOverThree}); read ${w.sweepReadGB} GB against ${w.threeMergesReadGB} GB (parents: ${w.parentsGB} GB)`);
  }
  if (extra.tensors) {
    const t = extra.tensors as { workers: number; sizes: { experts: number; tensorsPerParent: number; seconds: number; usPerTensor: number; peakRssMB: number }[]; perTensorRatio: number };
    out.push(`DeepSeek-V3's full layout at tiny shapes, α = 0.5 on every routed expert, ${t.workers} workers (time per tensor must not grow):`);
    for (const z of t.sizes) out.push(`  ${String(z.experts).padStart(3)} experts, ${z.tensorsPerParent} tensors per parent: ${z.seconds} s, ${z.usPerTensor} µs per tensor without start-up, peak RSS ${z.peakRssMB} MB`);
    out.push(`  per tensor, 256 experts / 32: ${t.perTensorRatio}`);
  }
  if (extra.memory) {
    out.push('one BF16 tensor per parent, α = 0.5 (peak RSS must not grow with tensor size):');
    for (const m of extra.memory as { tensor: string; seconds: number; peakRssMB: number; workerKernelsMB: number }[]) {
      out.push(`  ${m.tensor.padEnd(7)} ${m.seconds} s, peak RSS ${m.peakRssMB} MB, each worker's kernels ${m.workerKernelsMB} MB`);
    }
  }
  process.stdout.write(out.join('\n') + '\n');
}
