// `npm run bench:hub`: what opening Hub parents costs, against a local stand-in Hub
// (app/fixtures/hub-server.ts) serving a DeepSeek-V3-sized pair — the real release's tensors,
// shapes, FP8 block scales and 163 / 160 shards, 680 GB each, tensor bytes made up on request.
//
//   npm run bench:hub [-- --json] [-- --latency MS] [-- --layers N]
//
// Through the built CLI, as a user runs it: `inspect` of one parent (requests and bytes to open
// it), and `diff --sampled` of the pair (the studio's first heatmap: both opened, then a spread of
// row blocks of every tensor). Bytes are reported against the parents' size, measured in the same
// run. --latency adds a delay to every answer (the real Hub's round trip); default 0.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describeVirtualModel, type FixtureOptions } from '../app/fixtures/generate.ts';
import { startHubServer, virtualRepo, type HubServer } from '../app/fixtures/hub-server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'dist/cli/moe-studio.mjs');
const { values: opts } = parseArgs({ options: { json: { type: 'boolean', default: false }, latency: { type: 'string', default: '0' }, layers: { type: 'string', default: '61' } } });

// DeepSeek-V3's config: 61 layers (3 dense), 256 routed experts of 7168 × 2048, 1 shared, MTP layer.
const DSV3: FixtureOptions = {
  family: 'deepseek_v3', dtype: 'FP8', hidden: 7168, moeIntermediate: 2048, intermediate: 18432, denseLayers: 3,
  experts: 256, expertsPerToken: 8, sharedExperts: 1, vocab: 129280, heads: 128, qLoraRank: 1536, mtp: true, seed: 1,
  layers: Number(opts.layers),
};

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; stdout: string; stderr: string; status: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ ms: performance.now() - t0, stdout, stderr, status: status ?? -1 }));
  });
}

function measure(hub: HubServer) {
  return { requests: hub.stats.requests, bytes: hub.stats.bytes, byKind: { ...hub.stats.byKind } };
}

const t = performance.now();
const v3 = describeVirtualModel({ ...DSV3, shards: 163 });
const r1 = describeVirtualModel({ ...DSV3, shards: 160, seed: 2 });
const tensors = Object.keys(v3.index.weight_map).length;
const parentBytes = v3.shards.reduce((a, s) => a + s.size, 0);
const hub = await startHubServer([virtualRepo('deepseek-ai/DeepSeek-V3', v3, 1), virtualRepo('deepseek-ai/DeepSeek-R1', r1, 2)], { delayMs: Number(opts.latency) });
process.stderr.write(`stand-in Hub at ${hub.url}: ${tensors} tensors, ${v3.shards.length} shards, ${(parentBytes / 1e9).toFixed(0)} GB per parent (${((performance.now() - t) / 1000).toFixed(1)} s to describe)\n`);
const env: Record<string, string | undefined> = { ...process.env, HF_ENDPOINT: hub.url };
delete env['HF_TOKEN'];

try {
  hub.resetStats();
  const open = await run(['inspect', 'hf://deepseek-ai/DeepSeek-V3', '--json'], env);
  if (open.status !== 0) throw new Error(open.stderr);
  const opened = measure(hub);
  const headerBytes = v3.shards.reduce((a, s) => a + s.header.length, 0);

  hub.resetStats();
  const heat = await run(['diff', 'hf://deepseek-ai/DeepSeek-V3', 'hf://deepseek-ai/DeepSeek-R1', '--sampled', '--json'], env);
  if (heat.status !== 0) throw new Error(heat.stderr);
  const heated = measure(hub);
  const compared = (JSON.parse(heat.stdout) as { tensors: unknown[] }).tensors.length;

  const result = {
    parent: { tensors, shards: v3.shards.length, bytes: parentBytes, header_bytes: headerBytes },
    latency_ms: Number(opts.latency),
    open: { seconds: open.ms / 1000, requests: opened.requests, bytes: opened.bytes, bytes_per_parent_byte: opened.bytes / parentBytes, by_kind: opened.byKind },
    sampled_heatmap: { seconds: heat.ms / 1000, requests: heated.requests, bytes: heated.bytes, bytes_per_parent_byte: heated.bytes / (2 * parentBytes), tensors_compared: compared, by_kind: heated.byKind },
  };
  if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else {
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    process.stdout.write(
      [
        `DeepSeek-V3-sized parents on a stand-in Hub (${tensors} tensors, ${v3.shards.length} / ${r1.shards.length} shards, ${(parentBytes / 1e9).toFixed(0)} GB each; ${opts.latency} ms added per answer)`,
        `open one parent (inspect):        ${result.open.seconds.toFixed(2)} s, ${opened.requests} requests, ${mb(opened.bytes)} (headers are ${mb(headerBytes)}; ${(result.open.bytes_per_parent_byte * 1e6).toFixed(1)} bytes per MB of the parent)`,
        `first heatmap (diff --sampled):   ${result.sampled_heatmap.seconds.toFixed(2)} s, ${heated.requests} requests, ${mb(heated.bytes)} for both parents (${(result.sampled_heatmap.bytes_per_parent_byte * 100).toFixed(3)}% of their bytes), ${compared} tensors compared`,
      ].join('\n') + '\n',
    );
  }
} finally {
  await hub.close();
}
