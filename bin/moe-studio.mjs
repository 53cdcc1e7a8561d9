#!/usr/bin/env node
// The `moe-studio` command: runs the bundled CLI, built by `npm run build` (npm ci runs it via `prepare`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = new URL('../dist/cli/moe-studio.mjs', import.meta.url);
if (!existsSync(fileURLToPath(bundle))) {
  process.stderr.write('moe-studio: the CLI is not built yet; run `npm run build` in ' + fileURLToPath(new URL('..', import.meta.url)) + '\n');
  process.exit(1);
}
await import(bundle.href);
