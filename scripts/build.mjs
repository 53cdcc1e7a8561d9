// Builds what users run: the CLI bundle (dist/cli) and, unless --cli, the studio (dist/studio).
// The kernels' .wasm is not rebuilt here: public/moe_kernels.wasm is committed (see README),
// and `npm run kernels:check` proves it equals a fresh build from wasm-kernels/.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cliOnly = process.argv.includes('--cli');

mkdirSync(`${root}/dist/cli`, { recursive: true });
// app/ imports zod as `import * as z from 'zod'`: esbuild can then leave out what is never used,
// where `import { z }` keeps zod's whole namespace object, its ~45 locales included (the bundle
// was 1.7 MB against 1.14 MB, and started about 20 ms slower).
await build({
  entryPoints: { 'moe-studio': `${root}/app/cli/moe-studio.ts`, 'kernel-worker': `${root}/app/cli/kernel-worker.ts` },
  outdir: `${root}/dist/cli`,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  // Bundled CommonJS dependencies may call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __moeCreateRequire } from 'node:module'; const require = __moeCreateRequire(import.meta.url);" },
});
copyFileSync(`${root}/public/moe_kernels.wasm`, `${root}/dist/cli/moe_kernels.wasm`);

if (!cliOnly) {
  const r = spawnSync(process.execPath, [`${root}/node_modules/vite/bin/vite.js`, 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
