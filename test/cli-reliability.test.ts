// Regression tests for what an adversarial run of the CLI found (issue 12): each reproduces a
// defect through the built CLI, the way a user meets it. Races are arranged with the merge's pause
// hook (MOE_STUDIO_TEST_PAUSE_AT / _FILE), never with sleeps.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as corrupt from '../app/fixtures/corrupt.ts';
import { writeFixtureModel } from '../app/fixtures/generate.ts';
import { main } from '../app/cli/main.ts';
import { openNodeOutputFolder } from '../app/cli/node-io.ts';
import { compareChild, expectedChild, readChild } from './support/reference-merge.ts';
import { CLI, ROOT, filesIn, presetDir, runCli, tempDir, writeRecipe } from './support/cli.ts';

let mixtral: string;
let dsv3: string;
beforeAll(async () => {
  mixtral = await presetDir('mixtral-pair');
  dsv3 = await presetDir('deepseek-v3-fp8-pair');
});

const SWAP = 'parents: {base: ./base, instruct: ./instruct}\nrules:\n  - select: {kind: routed_expert}\n    weights: {base: 0.5, instruct: 0.5}\noutput: {shard_size: 20KB}\n';
const CHIMERA = 'parents: {v3: ./v3, r1: ./r1}\nrules:\n  - select: {kind: routed_expert}\n    weights: {v3: 0.5, r1: 0.5}\noutput: {shard_size: 300KB}\n';

/** Starts a merge held at `point`; resolves once it waits there. */
async function pausedMerge(recipe: string, out: string, point: string, extra: string[] = []): Promise<{ child: ChildProcess; go: () => void; done: Promise<{ status: number | null; signal: string | null; stderr: string; stdout: string }> }> {
  const flag = path.join(tempDir('pause'), 'flag');
  const child = spawn(process.execPath, [CLI, 'merge', recipe, '-o', out, '--workers', '1', ...extra], {
    cwd: ROOT,
    env: { ...process.env, MOE_STUDIO_TEST_PAUSE_AT: point, MOE_STUDIO_TEST_PAUSE_FILE: flag },
  });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => (stdout += d));
  const done = new Promise<{ status: number | null; signal: string | null; stderr: string; stdout: string }>((resolve) =>
    child.on('exit', (status, signal) => resolve({ status, signal, stderr, stdout })),
  );
  for (let i = 0; i < 3000 && !existsSync(`${flag}.waiting`); i++) {
    if (child.exitCode !== null) throw new Error(`merge exited before pausing: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!existsSync(`${flag}.waiting`)) throw new Error(`merge never reached ${point}: ${stderr}`);
  return { child, go: () => writeFileSync(`${flag}.go`, ''), done };
}

/** What would make a folder look like a finished (or partly finished) child. */
const finalLooking = (dir: string) => filesIn(dir).filter((f) => !f.endsWith('.partial') && !f.startsWith('.moe-studio'));

async function shardNames(recipe: string): Promise<string[]> {
  const probe = path.join(tempDir('probe'), 'out');
  const r = runCli(['merge', recipe, '-o', probe, '--workers', '0']);
  expect(r.status, r.stderr).toBe(0);
  return filesIn(probe).filter((f) => f.endsWith('.safetensors'));
}

describe('two merges into one folder (12.1)', () => {
  it('the second is refused while the first holds the lock, and the first completes intact', async () => {
    const recipe = writeRecipe(mixtral, 'race.yaml', SWAP);
    const shards = await shardNames(recipe);
    expect(shards.length).toBeGreaterThan(2);
    const out = path.join(mixtral, 'out-race');
    const first = await pausedMerge(recipe, out, `shard-complete:${shards[0]}`);
    const second = runCli(['merge', recipe, '-o', out, '--overwrite', '--workers', '0']);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`another merge is writing here: \\.moe-studio\\.lock is held by pid ${first.child.pid} on host .* \\(moe-studio merge\\)`));
    expect(second.stderr.trim().split('\n').filter((l) => l.startsWith('moe-studio: error'))).toHaveLength(1);
    first.go();
    const r = await first.done;
    expect(r.status, r.stderr).toBe(0);
    const { tensors, index } = readChild(out);
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
    expect(compareChild(await expectedChild(recipe), tensors)).toEqual([]);
    expect(filesIn(out).filter((f) => f.startsWith('.moe-studio') || f.endsWith('.partial'))).toEqual([]);
  });
});

describe('signals (12.2)', () => {
  for (const [signal, code] of [['SIGTERM', 143], ['SIGHUP', 129], ['SIGINT', 130]] as const) {
    it(`${signal} mid-merge: exit ${code}, nothing under a final name, the finished shard kept for --resume`, async () => {
      const recipe = writeRecipe(dsv3, `sig-${signal}.yaml`, CHIMERA);
      const shards = await shardNames(recipe);
      const out = path.join(dsv3, `out-${signal}`);
      const m = await pausedMerge(recipe, out, `shard-complete:${shards[0]}`);
      m.child.kill(signal);
      // A second signal while it cleans up (two Ctrl-C within milliseconds) must not cut cleanup short.
      m.child.kill(signal);
      const r = await m.done;
      expect(r.status).toBe(code);
      expect(r.stderr).toContain(`${signal}: merge cancelled: nothing was left that looks complete`);
      expect(r.stderr).toMatch(/1 of \d+ shards, .* are complete and kept for resume; continue with: moe-studio merge .* --resume/);
      expect(finalLooking(out)).toEqual([]);
      expect(filesIn(out)).toEqual(['.moe-studio-journal.json', `${shards[0]}.partial`]);
    });
  }

  it('SIGKILL leaves nothing with a final name; --resume takes over the stale lock and finishes the same child', async () => {
    const recipe = writeRecipe(dsv3, 'kill.yaml', CHIMERA);
    const shards = await shardNames(recipe);
    const out = path.join(dsv3, 'out-kill');
    const m = await pausedMerge(recipe, out, `shard-complete:${shards[1]}`);
    m.child.kill('SIGKILL');
    await m.done;
    expect(finalLooking(out)).toEqual([]);
    expect(filesIn(out)).toContain('.moe-studio.lock');
    // The next merge into the folder finds the dead process's lock, takes it over and says so;
    // without --resume it then refuses to touch the interrupted merge.
    const plain = runCli(['merge', recipe, '-o', out, '--workers', '0']);
    expect(plain.status).toBe(1);
    expect(plain.stderr).toMatch(new RegExp(`note: took over a stale merge lock: \\.moe-studio\\.lock was left by pid ${m.child.pid}`));
    expect(plain.stderr).toMatch(/holds an interrupted merge \(2 of its shards complete\): resume it, or overwrite to start over/);
    expect(filesIn(out)).not.toContain('.moe-studio.lock');
    const resumed = runCli(['merge', recipe, '-o', out, '--resume', '--workers', '1']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`note: resuming: 2 of ${shards.length} shards are kept from the interrupted merge`);
    expect(resumed.stdout).toMatch(/resumed: 2 shards .* kept from the interrupted merge/);
    expect(compareChild(await expectedChild(recipe), readChild(out).tensors)).toEqual([]);
    expect(filesIn(out).filter((f) => f.startsWith('.moe-studio') || f.endsWith('.partial'))).toEqual([]);
  });

  it('a merge stopped before any shard completes removes everything, the folders it made included', async () => {
    const recipe = writeRecipe(dsv3, 'early.yaml', CHIMERA);
    const top = path.join(dsv3, 'out-early');
    const m = await pausedMerge(recipe, path.join(top, 'child'), 'started');
    m.child.kill('SIGTERM');
    const r = await m.done;
    expect(r.status).toBe(143);
    expect(r.stderr).not.toContain('--resume');
    expect(existsSync(top)).toBe(false);
  });
});

describe('hostile sizes and names (12.3, 12.4, 12.7, 12.8, 12.10)', () => {
  it('num_hidden_layers: 1000000000 is refused at once by inspect, diff and merge', async () => {
    const dir = tempDir('huge');
    const base = await corrupt.copyModel(path.join(mixtral, 'base'), path.join(dir, 'base'));
    await corrupt.editConfig(base, (c) => (c['num_hidden_layers'] = 1_000_000_000));
    const recipe = writeRecipe(dir, 'r.yaml', 'parents: {base: ./base, instruct: ' + JSON.stringify(path.join(mixtral, 'instruct')) + '}\n');
    for (const args of [['inspect', base], ['diff', base, path.join(mixtral, 'instruct')], ['merge', recipe, '-o', path.join(dir, 'out')]]) {
      const started = Date.now();
      const r = runCli(args);
      expect(r.status).toBe(1);
      expect(r.stderr.trim()).toBe(`moe-studio: error: ${base}/config.json: "num_hidden_layers" is 1000000000: more layers than any model has (at most 10000)`);
      expect(Date.now() - started).toBeLessThan(10_000);
    }
    expect(existsSync(path.join(dir, 'out'))).toBe(false);
  });

  it('a tensor named __proto__, a parent named __proto__ and a weights key __proto__ survive into the child', async () => {
    const dir = tempDir('proto');
    const base = await corrupt.copyModel(path.join(mixtral, 'base'), path.join(dir, '__proto__'));
    const donor = await corrupt.copyModel(path.join(mixtral, 'instruct'), path.join(dir, 'donor'));
    await corrupt.addTensor(base, '__proto__', 'BF16', [3], new Uint8Array([1, 2, 3, 4, 5, 6]));
    await corrupt.addTensor(donor, '__proto__', 'BF16', [3], new Uint8Array([7, 8, 9, 10, 11, 12]));
    const recipe = writeRecipe(dir, 'r.yaml', `
parents: {__proto__: ./__proto__, donor: ./donor}
rules:
  - select: {kind: routed_expert}
    weights: {__proto__: 0.25, donor: 0.75}
  - select: {name: "^__proto__$"}
    from: donor
`);
    const out = path.join(dir, 'out');
    const r = runCli(['merge', recipe, '-o', out]);
    expect(r.status, r.stderr).toBe(0);
    const { tensors, index } = readChild(out);
    expect(index.weight_map['__proto__']).toBeDefined();
    expect([...tensors.get('__proto__')!.bytes]).toEqual([7, 8, 9, 10, 11, 12]);
    expect(compareChild(await expectedChild(recipe), tensors)).toEqual([]);
    const card = readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(card).toContain('| __proto__ | ./__proto__ | base');
    expect(card).toContain('0.25·__proto__ + 0.75·donor');
  });

  it('diff of 150,000 tensors of one kind prints its summary (no call-stack overflow)', async () => {
    const dir = tempDir('many');
    const opts = { family: 'generic' as const, dtype: 'F32' as const, hidden: 2, moeIntermediate: 1, layers: 2, experts: 37_500, vocab: 4, heads: 1, headDim: 2 };
    await writeFixtureModel(path.join(dir, 'a'), { ...opts, seed: 1 });
    const r = spawnSync(process.execPath, [CLI, 'diff', path.join(dir, 'a'), path.join(dir, 'a'), '--sampled', '--workers', '1'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/routed_expert\s+150000\s+150000\s/);
  }, 180_000);

  it('a catastrophic name pattern runs in linear time; a backreference is refused with the reason', () => {
    const recipe = writeRecipe(mixtral, 'redos.yaml', `parents: {base: ./base}\nrules:\n  - select: {name: "(.+)+Z"}\n    from: base\n`);
    const started = Date.now();
    const r = runCli(['merge', recipe, '-o', path.join(mixtral, 'out-redos')]);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.stderr).toMatch(/rule 1 .*matches no tensor/);
    const backref = writeRecipe(mixtral, 'backref.yaml', `parents: {base: ./base}\nrules:\n  - select: {name: "(w)\\\\1"}\n    from: base\n`);
    const b = runCli(['merge', backref, '-o', path.join(mixtral, 'out-backref')]);
    expect(b.stderr).toMatch(/rule 1: name "\(w\)\\\\1" is not a regular expression MoE Studio can run \(.*invalid escape sequence.*RE2 syntax, without backreferences or lookaround\)/);
    const long = writeRecipe(mixtral, 'long.yaml', `parents: {base: ./base}\nrules:\n  - select: {name: "${'a'.repeat(10_000_000)}"}\n    from: base\n`);
    const l = runCli(['merge', long, '-o', path.join(mixtral, 'out-long')]);
    expect(l.stderr).toMatch(/rule 1: name pattern is 10000000 characters long; at most 1000 are accepted/);
    expect(l.stderr.length).toBeLessThan(3000);
  });

  it('names with newlines or ANSI escapes are printed escaped, on one line', async () => {
    const dir = tempDir('ansi');
    const base = await corrupt.copyModel(path.join(mixtral, 'base'), path.join(dir, 'base'));
    const shard = readdirSync(base).filter((f) => f.endsWith('.safetensors')).sort()[0]!;
    await corrupt.rewriteHeader(path.join(base, shard), (j) => {
      j['evil\nname\u001b[2J'] = 'nope';
    });
    const r = runCli(['inspect', base]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toContain('\u001b');
    expect(r.stderr).toContain('tensor evil\\nname\\u001b[2J: header entry is not an object');
  });

  it('YAML: an error is one line with its position; an alias bomb is refused naming the file', () => {
    const bad = writeRecipe(mixtral, 'bad-yaml.yaml', 'parents: {base: ./base\nrules: [\n  - x\n');
    const r = runCli(['merge', bad, '-o', path.join(mixtral, 'out-bad-yaml')]);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`${bad.replace(/\./g, '\\.')}: not valid YAML or JSON \\(line \\d+, column \\d+\\)`));
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 10; i++) levels.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    const bomb = writeRecipe(mixtral, 'bomb.yaml', `${levels.join('\n')}\nparents: {base: ./base}\n`);
    const b = runCli(['merge', bomb, '-o', path.join(mixtral, 'out-bomb')]);
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(new RegExp(`${bomb.replace(/\./g, '\\.')}: cannot be read: .*alias`, 'i'));
  });
});

describe('refused and failed merges leave nothing (12.5, 12.6, 12.9, 12.10)', () => {
  it('an output folder inside a parent is refused before any folder is created', () => {
    const recipe = writeRecipe(mixtral, 'inside.yaml', SWAP);
    const r = runCli(['merge', recipe, '-o', path.join(mixtral, 'base', 'sub', 'child')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/parent "base"/);
    expect(existsSync(path.join(mixtral, 'base', 'sub'))).toBe(false);
  });

  it('an output folder that cannot be made names the folder that refused it', () => {
    const recipe = writeRecipe(mixtral, 'ro.yaml', SWAP);
    const r = runCli(['merge', recipe, '-o', '/proc/moe-studio-test/child']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n').pop()).toMatch(/^moe-studio: error: \/proc\/moe-studio-test\/child: cannot create the output folder: \/proc does not accept a new folder \(/);
  });

  it('an expert missing one projection is an error naming the tensor', async () => {
    const dir = tempDir('incomplete');
    const base = await corrupt.copyModel(path.join(mixtral, 'base'), path.join(dir, 'base'));
    await corrupt.dropTensor(base, 'model.layers.0.block_sparse_moe.experts.1.w2.weight');
    const r = runCli(['inspect', base]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/tensor model\.layers\.0\.block_sparse_moe\.experts\.1\.w2\.weight: layer 0: expert 1 lacks/);
  });

  it('a write that hits a full disk names the file and the reason', async () => {
    // Through a link to /dev/full (every write: ENOSPC); abort removes the link, never the device.
    const dir = tempDir('full');
    symlinkSync('/dev/full', path.join(dir, 'shard.partial'));
    const out = openNodeOutputFolder(dir);
    const f = await out.create('shard.partial');
    await expect(f.write(new Uint8Array(4096))).rejects.toThrow(`${dir}/shard.partial: write failed: no space left on the device (ENOSPC)`);
    await f.abort();
    expect(existsSync('/dev/full')).toBe(true);
  });

  it('diff --json | head -c1 ends quietly (EPIPE), and failed opens leave no file descriptor behind', async () => {
    const a = path.join(mixtral, 'base');
    const b = path.join(mixtral, 'instruct');
    const pipe = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" diff "${a}" "${b}" --json --workers 0 | head -c1 >/dev/null; echo "\${PIPESTATUS[0]}"`], { encoding: 'utf8' });
    expect(pipe.stderr).toBe('');
    expect(pipe.stdout.trim()).toBe('0');

    const dir = tempDir('fds');
    const broken = await corrupt.copyModel(b, path.join(dir, 'broken'));
    const shard = readdirSync(broken).filter((f) => f.endsWith('.safetensors')).sort().pop()!;
    await corrupt.truncateShard(path.join(broken, shard));
    const fds = () => readdirSync('/proc/self/fd').length;
    const stderr = process.stderr.write.bind(process.stderr);
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await main(['diff', a, broken, '--workers', '0']).catch(() => {});
      const before = fds();
      for (let i = 0; i < 5; i++) {
        await main(['diff', a, broken, '--workers', '0']).catch(() => {});
        await main(['inspect', broken]).catch(() => {});
      }
      expect(fds()).toBe(before);
    } finally {
      process.stderr.write = stderr;
    }
  });
});
