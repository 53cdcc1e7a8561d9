// Parents on the Hugging Face Hub (hf://ORG/NAME[@REV]), through the built CLI's real HTTP path,
// against a local server that answers as the Hub does (app/fixtures/hub-server.ts), pointed at by
// HF_ENDPOINT. What a Hub parent gives must equal what the same files give from a local folder.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoFromFolder, startHubServer, virtualRepo, type HubServer } from '../app/fixtures/hub-server.ts';
import { describeVirtualModel } from '../app/fixtures/generate.ts';
import { parseHubRef } from '../app/hub/index.ts';
import { ROOT, filesIn, presetDir, runCliAsync, tempDir, writeRecipe } from './support/cli.ts';
import { createKernelPool } from '../app/engine/kernels/pool.ts';
import { localEndpoint } from '../app/engine/kernels/bridge.ts';
import { instantiateKernelsFromBytes } from '../app/engine/kernels/wasm-kernels.ts';
import { openModel } from '../app/engine/model/open-model.ts';
import { diffModels, REMOTE_SAMPLE_BLOCKS } from '../app/engine/exec/diff.ts';
import { openNodeModelFolder } from '../app/cli/node-io.ts';

let dsv3: string;
let hub: HubServer;
let cdn: HubServer;
const V3 = 'deepseek-ai/DeepSeek-V3';
const R1 = 'deepseek-ai/DeepSeek-R1';
const GOOD = 'hf_goodtoken';

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, HF_ENDPOINT: hub.url, ...extra };
  if (!('HF_TOKEN' in extra)) delete e['HF_TOKEN'];
  return e;
}

beforeAll(async () => {
  dsv3 = await presetDir('deepseek-v3-fp8-pair');
  // A dense model (Llama): a config and one small shard without experts.
  const dense = path.join(dsv3, 'dense');
  mkdirSync(dense);
  const header = Buffer.from(JSON.stringify({ 'model.embed_tokens.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } }).padEnd(96, ' '));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(path.join(dense, 'model.safetensors'), Buffer.concat([len, header, Buffer.alloc(16)]));
  writeFileSync(path.join(dense, 'config.json'), JSON.stringify({ model_type: 'llama', architectures: ['LlamaForCausalLM'], num_hidden_layers: 1 }));
  const repos = [
    await repoFromFolder(V3, path.join(dsv3, 'v3')),
    await repoFromFolder(R1, path.join(dsv3, 'r1'), { access: 'gated', tokens: [GOOD] }),
    await repoFromFolder('someone/private-moe', path.join(dsv3, 'r1'), { access: 'private', tokens: [GOOD] }),
    await repoFromFolder('meta-llama/dense', dense),
  ];
  // File reads are redirected to a second server, another origin, as the Hub's CDN is.
  cdn = await startHubServer(repos);
  hub = await startHubServer(repos, {}, { cdn: cdn.url });
});

afterAll(async () => {
  await hub?.close();
  await cdn?.close();
});

const CHIMERA = (v3: string, r1: string) =>
  `parents: {v3: ${v3}, r1: ${r1}}\nrules:\n  - select: {kind: routed_expert}\n    weights: {v3: 0.5, r1: 0.5}\noutput: {shard_size: 300KB}\n`;

/** Every file of two children equal byte for byte, except those named. */
function expectSameChild(a: string, b: string, except: string[]): void {
  expect(filesIn(b)).toEqual(filesIn(a));
  for (const f of filesIn(a)) {
    if (except.includes(f)) continue;
    expect(readFileSync(path.join(b, f)).equals(readFileSync(path.join(a, f))), f).toBe(true);
  }
}

describe('hf:// names', () => {
  it('parses ids and revisions, and refuses what the Hub would not accept', () => {
    expect(parseHubRef('hf://deepseek-ai/DeepSeek-V3')).toEqual({ repo: 'deepseek-ai/DeepSeek-V3' });
    expect(parseHubRef('hf://gpt2@refs/pr/1')).toEqual({ repo: 'gpt2', revision: 'refs/pr/1' });
    expect(() => parseHubRef('hf://a/b/c')).toThrow(/not a Hub model id/);
    expect(() => parseHubRef('hf://a--b/c')).toThrow(/not a Hub model id/);
    expect(() => parseHubRef('hf://a/b@')).toThrow(/not a revision/);
  });
});

describe('Hub parents through the CLI', () => {
  it('inspect reads the config, the index and the shard headers in a few requests', async () => {
    const local = await runCliAsync(['inspect', path.join(dsv3, 'v3'), '--json'], env());
    hub.resetStats();
    cdn.resetStats();
    const remote = await runCliAsync(['inspect', `hf://${V3}`, '--json'], env());
    expect(remote.status, remote.stderr).toBe(0);
    const strip = (t: string) => ({ ...JSON.parse(t), name: undefined });
    expect(strip(remote.stdout)).toEqual(strip(local.stdout));
    // info + tree + config + index + 3 shards (each header in its first request), each through a redirect.
    const shards = filesIn(path.join(dsv3, 'v3')).filter((f) => f.endsWith('.safetensors')).length;
    expect(hub.stats.byKind).toEqual({ revision: 1, tree: 1, resolve: 2 + shards });
    expect(cdn.stats.byKind).toEqual({ data: 2 + shards });
  });

  it('a header longer than the first read costs one more request for the rest only', async () => {
    // DeepSeek-V3's layout, 6 layers, in 2 shards: headers of ~200 KB, past the 64 KiB first read.
    const model = describeVirtualModel({
      family: 'deepseek_v3', dtype: 'FP8', hidden: 7168, moeIntermediate: 2048, intermediate: 18432, layers: 6, denseLayers: 3,
      experts: 256, expertsPerToken: 8, sharedExperts: 1, vocab: 129280, heads: 128, qLoraRank: 1536, mtp: true, seed: 1, shards: 2,
    });
    const big = await startHubServer([virtualRepo('deepseek-ai/six-layers', model, 1)]);
    try {
      const r = await runCliAsync(['inspect', 'hf://deepseek-ai/six-layers', '--json'], { ...env(), HF_ENDPOINT: big.url });
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).experts).toBe(256);
      const headers = model.shards.reduce((a, s) => a + s.header.length, 0);
      expect(headers).toBeGreaterThan(2 * 64 * 1024);
      const json = Buffer.byteLength(JSON.stringify(model.config, null, 2)) + Buffer.byteLength(JSON.stringify(model.index, null, 2)) + 2;
      // Each header byte once, and per shard at most the first read's overshoot.
      expect(big.stats.bytes).toBeLessThanOrEqual(json + headers + 2 * 64 * 1024);
      expect(big.stats.byKind['data']).toBe(2 + 2 * 2);
    } finally {
      await big.close();
    }
  });

  it('an exact diff of two Hub models equals that of the local folders; a sampled one reads fewer blocks, the same figures for them', async () => {
    const local = await runCliAsync(['diff', path.join(dsv3, 'v3'), path.join(dsv3, 'r1'), '--json', '--workers', '1'], env());
    const remote = await runCliAsync(['diff', `hf://${V3}`, `hf://${R1}`, '--json', '--workers', '1'], env({ HF_TOKEN: GOOD }));
    expect(remote.status, remote.stderr).toBe(0);
    const body = (t: string) => ({ ...JSON.parse(t), a: undefined, b: undefined });
    expect(body(remote.stdout)).toEqual(body(local.stdout));
    // Sampled: two row blocks per tensor over the network (each is a request), as the engine
    // computes them from the local folders with that many blocks.
    const sampled = await runCliAsync(['diff', `hf://${V3}`, `hf://${R1}`, '--json', '--sampled', '--workers', '1'], env({ HF_TOKEN: GOOD }));
    expect(sampled.status, sampled.stderr).toBe(0);
    const wasm = new Uint8Array(readFileSync(path.join(ROOT, 'public/moe_kernels.wasm')));
    const pool = createKernelPool([localEndpoint(await instantiateKernelsFromBytes(wasm))], { inProcess: true });
    const [a, b] = await Promise.all(['v3', 'r1'].map(async (p) => openModel(await openNodeModelFolder(path.join(dsv3, p)))));
    const want = (await diffModels(a!, b!, pool, { mode: 'sampled', sampleBlocks: REMOTE_SAMPLE_BLOCKS })).tensors;
    const got = JSON.parse(sampled.stdout).tensors as { name: string; rms_diff: number; cosine: number; fraction: number }[];
    expect(got.map((t) => t.name)).toEqual(want.map((t) => t.name));
    got.forEach((t, i) => expect([t.rms_diff, t.cosine, t.fraction]).toEqual([want[i]!.rmsDiff, want[i]!.cosine, want[i]!.fraction]));
    expect(got.some((t) => t.fraction < 1)).toBe(true);
  });

  it('a merge from Hub parents is byte-identical to the same merge from local folders; the card names repos and commits', async () => {
    const local = path.join(tempDir('hub-local'), 'child');
    const remote = path.join(tempDir('hub-remote'), 'child');
    const l = await runCliAsync(['merge', writeRecipe(dsv3, 'local.yaml', CHIMERA('./v3', './r1')), '-o', local, '--workers', '1'], env());
    expect(l.status, l.stderr).toBe(0);
    cdn.resetStats();
    hub.resetStats();
    const r = await runCliAsync(['merge', writeRecipe(dsv3, 'hub.yaml', CHIMERA(`hf://${V3}`, `hf://${R1}@main`)), '-o', remote, '--workers', '1'], env({ HF_TOKEN: GOOD }));
    expect(r.status, r.stderr).toBe(0);
    expectSameChild(local, remote, ['README.md', 'moe-studio-recipe.yaml']);
    const card = readFileSync(path.join(remote, 'README.md'), 'utf8');
    expect(card).toContain(`base_model:\n- ${V3}\n- ${R1}\n`);
    expect(card).toContain(`at \`main\` = commit \`${hub.commit(R1)}\``);
    // The token went to the Hub and never to the CDN it redirects to.
    expect(hub.stats.authorized).toBeGreaterThan(0);
    expect(cdn.stats.authorized).toBe(0);
    // Every parent byte the child needs, once: no more than both parents' tensor data.
    const parentBytes = ['v3', 'r1'].flatMap((p) => filesIn(path.join(dsv3, p)).map((f) => readFileSync(path.join(dsv3, p, f)).length)).reduce((a, b) => a + b, 0);
    expect(cdn.stats.bytes).toBeLessThanOrEqual(parentBytes);
  });

  it('a merge survives 503s, 429s, bodies cut off mid-way and a stalled answer, and equals the clean one', async () => {
    const clean = path.join(tempDir('hub-clean'), 'child');
    const faulty = path.join(tempDir('hub-faulty'), 'child');
    const recipe = writeRecipe(dsv3, 'hub2.yaml', CHIMERA(`hf://${V3}`, `hf://${R1}`));
    const c = await runCliAsync(['merge', recipe, '-o', clean, '--workers', '1'], env({ HF_TOKEN: GOOD }));
    expect(c.status, c.stderr).toBe(0);
    Object.assign(cdn.faults, { unavailable: 3, cuts: 4, cutAfterBytes: 5000, stalls: 1 });
    Object.assign(hub.faults, { rateLimited: 2 });
    const f = await runCliAsync(['merge', recipe, '-o', faulty, '--workers', '1'], env({ HF_TOKEN: GOOD, HF_HUB_DOWNLOAD_TIMEOUT: '1' }));
    expect(f.status, f.stderr).toBe(0);
    expect(cdn.faults).toMatchObject({ unavailable: 0, cuts: 0, stalls: 0 });
    expect(hub.faults.rateLimited).toBe(0);
    expectSameChild(clean, faulty, []);
  }, 60_000);

  it('a Hub that keeps failing stops the merge with the file and the reason, and leaves no child', async () => {
    const out = path.join(tempDir('hub-down'), 'child');
    Object.assign(cdn.faults, { unavailable: 1000 });
    try {
      const r = await runCliAsync(['merge', writeRecipe(dsv3, 'hub3.yaml', CHIMERA(`hf://${V3}`, `hf://${R1}`)), '-o', out, '--workers', '1'], env({ HF_TOKEN: GOOD }));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/hf:\/\/deepseek-ai\/DeepSeek-(V3|R1)\/[^:]+: reading bytes \d+-\d+ from the Hub failed 8 times in a row \(last: HTTP 503\)/);
      expect(filesIn(path.dirname(out))).toEqual([]);
    } finally {
      cdn.faults.unavailable = 0;
    }
  }, 120_000);

  it('says which repo needs a token, which is missing, and which is not an MoE model', async () => {
    const gated = await runCliAsync(['inspect', `hf://${R1}`], env());
    expect(gated.status).toBe(1);
    expect(gated.stderr).toContain(`hf://${R1}/config.json: the Hub refused access (401: Access to model ${R1} is restricted`);
    expect(gated.stderr).toContain('set HF_TOKEN to a token that can read it');
    const denied = await runCliAsync(['inspect', `hf://${R1}`], env({ HF_TOKEN: 'hf_someoneelse' }));
    expect(denied.stderr).toContain(`access denied (403`);
    expect(denied.stderr).toContain(`a gated repo needs its conditions accepted on ${hub.url}/${R1}`);
    const priv = await runCliAsync(['inspect', 'hf://someone/private-moe'], env());
    expect(priv.stderr).toContain('moe-studio: error: hf://someone/private-moe: the Hub refused access (401: Repository not found): hf://someone/private-moe is gated or private, or does not exist');
    const privOk = await runCliAsync(['inspect', 'hf://someone/private-moe'], env({ HF_TOKEN: GOOD }));
    expect(privOk.status, privOk.stderr).toBe(0);
    const missing = await runCliAsync(['inspect', 'hf://deepseek-ai/DeepSeek-V9'], env({ HF_TOKEN: GOOD }));
    expect(missing.stderr).toContain('moe-studio: error: hf://deepseek-ai/DeepSeek-V9: no such model repo on the Hub (404: Repository not found)');
    const rev = await runCliAsync(['inspect', `hf://${V3}@v9`], env());
    expect(rev.stderr).toContain(`hf://${V3}@v9: the Hub has no such revision (404: Invalid rev id: v9)`);
    const dense = await runCliAsync(['inspect', 'hf://meta-llama/dense'], env());
    expect(dense.status).toBe(1);
    expect(dense.stderr).toContain('moe-studio: error: hf://meta-llama/dense/config.json: model_type "llama" is not a known MoE family');
    expect(dense.stderr).toContain('so it does not look like a Mixture-of-Experts checkpoint');
    const badToken = await runCliAsync(['inspect', `hf://${V3}`], env({ HF_TOKEN: 'secret' }));
    expect(badToken.stderr).toContain('the access token is not a Hugging Face token');
  }, 60_000);
});
