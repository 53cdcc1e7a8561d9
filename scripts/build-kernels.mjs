#!/usr/bin/env node
// Builds the WebAssembly SIMD kernels (wasm-kernels/, crate moe_kernels) and copies the module
// to public/moe_kernels.wasm, which is committed so that Node/npm users need no Rust.
//
//   node scripts/build-kernels.mjs           build and update public/moe_kernels.wasm
//   node scripts/build-kernels.mjs --check   build into a temporary target dir and exit 1 if the
//                                            result differs byte for byte from the committed file
//
// Toolchain: Debian's /usr/bin/cargo + /usr/bin/rustc when their wasm32 std is installed
// (/usr/lib/rustlib/wasm32-unknown-unknown, package libstd-rust-dev-wasm32), else `cargo` from
// PATH (e.g. rustup with `rustup target add wasm32-unknown-unknown`). The committed module was
// built with REFERENCE_RUSTC below; another compiler version may emit different bytes.
// Paths are remapped so the output does not depend on where the repository is checked out.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REFERENCE_RUSTC = 'rustc 1.63.0';
const TARGET = 'wasm32-unknown-unknown';
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const committed = join(root, 'public', 'moe_kernels.wasm');
const check = process.argv.includes('--check');
/** Temporary target dir of --check, removed on every exit path. */
let tmp;

function fail(msg) {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  console.error(`build-kernels: ${msg}`);
  process.exit(1);
}

function run(cmd, args, env) {
  const r = spawnSync(cmd, args, { cwd: root, env, encoding: 'utf8' });
  if (r.error) return { ok: false, out: String(r.error.message) };
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

function pickToolchain() {
  if (
    existsSync('/usr/lib/rustlib/wasm32-unknown-unknown') &&
    existsSync('/usr/bin/cargo') &&
    existsSync('/usr/bin/rustc')
  ) {
    return { name: 'Debian (/usr/bin/cargo, /usr/bin/rustc)', cargo: '/usr/bin/cargo', rustc: '/usr/bin/rustc' };
  }
  return { name: 'cargo from PATH', cargo: 'cargo', rustc: undefined };
}

const tc = pickToolchain();
const env = { ...process.env };
// Flags from the environment would change the output; ours are the only ones.
for (const k of ['RUSTFLAGS', 'CARGO_ENCODED_RUSTFLAGS', 'CARGO_BUILD_RUSTFLAGS', 'CARGO_BUILD_TARGET', 'RUSTC_WRAPPER', 'RUSTC_WORKSPACE_WRAPPER', 'CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS']) {
  delete env[k];
}
if (tc.rustc) env.RUSTC = tc.rustc;
else delete env.RUSTC;

const rustcCmd = tc.rustc ?? 'rustc';
const ver = run(rustcCmd, ['--version'], env);
if (!ver.ok) fail(`cannot run ${rustcCmd}: ${ver.out}\nInstall Rust (Debian: apt-get install rustc cargo libstd-rust-dev-wasm32; rustup: rustup target add ${TARGET}).`);
const sysroot = run(rustcCmd, ['--print', 'sysroot'], env);
const cargoHome = process.env.CARGO_HOME ?? join(homedir(), '.cargo');
console.log(`build-kernels: toolchain ${tc.name}: ${ver.out}`);

const flags = [
  '-C', 'target-feature=+simd128',
  `--remap-path-prefix=${root}=/src`,
  `--remap-path-prefix=${cargoHome}=/cargo`,
];
if (sysroot.ok && sysroot.out) flags.push(`--remap-path-prefix=${join(sysroot.out, 'lib', 'rustlib', 'src', 'rust')}=/rustc`);
env.CARGO_ENCODED_RUSTFLAGS = flags.join('\x1f');

let targetDir = join(root, 'target');
if (check) {
  tmp = mkdtempSync(join(tmpdir(), 'moe-kernels-'));
  targetDir = tmp;
}
env.CARGO_TARGET_DIR = targetDir;

const build = spawnSync(tc.cargo, ['build', '--release', '--target', TARGET, '-p', 'moe_kernels'], {
  cwd: root,
  env,
  stdio: 'inherit',
});
if (build.error || build.status !== 0) {
  fail(
    `cargo build failed (${build.error ? build.error.message : `exit ${build.status}`}).` +
      (tc.rustc ? '' : `\nWith rustup, run: rustup target add ${TARGET}`),
  );
}
const built = join(targetDir, TARGET, 'release', 'moe_kernels.wasm');
if (!existsSync(built)) fail(`cargo did not produce ${built}`);

const fresh = readFileSync(built);
try {
  const mod = new WebAssembly.Module(fresh);
  const imports = WebAssembly.Module.imports(mod);
  if (imports.length) fail(`the module imports ${imports.map((i) => `${i.module}.${i.name}`).join(', ')}; it must import nothing`);
} catch (e) {
  fail(`the built module is not valid WebAssembly here: ${e.message}`);
}

if (check) {
  rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
  if (!existsSync(committed)) fail(`${committed} is missing; run: node scripts/build-kernels.mjs`);
  const old = readFileSync(committed);
  if (Buffer.compare(old, fresh) !== 0) {
    let at = 0;
    while (at < Math.min(old.length, fresh.length) && old[at] === fresh[at]) at++;
    const hint = ver.out.startsWith(REFERENCE_RUSTC)
      ? 'Rebuild with: node scripts/build-kernels.mjs, and commit public/moe_kernels.wasm.'
      : `The committed module was built with ${REFERENCE_RUSTC} (Debian); this toolchain is "${ver.out}", which may legitimately emit other bytes.`;
    fail(
      `public/moe_kernels.wasm is stale: a fresh build differs (committed ${old.length} bytes, fresh ${fresh.length} bytes, first difference at byte ${at}).\n${hint}`,
    );
  }
  console.log(`build-kernels: OK, public/moe_kernels.wasm (${fresh.length} bytes) matches a fresh build`);
} else {
  mkdirSync(dirname(committed), { recursive: true });
  copyFileSync(built, committed);
  console.log(`build-kernels: wrote public/moe_kernels.wasm (${fresh.length} bytes)`);
}
