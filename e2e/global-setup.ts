// Writes the fixture parent folders the tests open (small real checkpoints from app/fixtures),
// once: .cache/e2e-fixtures/<preset>/<parent>/. A change to the generator writes them again.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { FIXTURE_DIR, PRESETS } from './fixtures.ts';

const GENERATOR = ['app/fixtures/generate.ts', 'app/fixtures/cli.ts'];

export default function globalSetup(): void {
  const h = createHash('sha256');
  for (const f of GENERATOR) h.update(readFileSync(f));
  const stamp = `${FIXTURE_DIR}/.generator`;
  const digest = h.digest('hex');
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== digest) {
    rmSync(FIXTURE_DIR, { recursive: true, force: true });
    mkdirSync(FIXTURE_DIR, { recursive: true });
  }
  const missing = PRESETS.filter((p) => !existsSync(`${FIXTURE_DIR}/${p}/fixture-manifest.json`));
  if (missing.length > 0) {
    execFileSync(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'app/fixtures/cli.ts', FIXTURE_DIR, ...missing], { stdio: 'inherit' });
  }
  writeFileSync(stamp, digest);
}
