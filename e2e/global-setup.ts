// Writes the fixture parent folders the tests open (small real checkpoints from app/fixtures),
// once: .cache/e2e-fixtures/<preset>/<parent>/.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { FIXTURE_DIR, PRESETS } from './fixtures.ts';

export default function globalSetup(): void {
  const missing = PRESETS.filter((p) => !existsSync(`${FIXTURE_DIR}/${p}/fixture-manifest.json`));
  if (missing.length === 0) return;
  execFileSync(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'app/fixtures/cli.ts', FIXTURE_DIR, ...missing], { stdio: 'inherit' });
}
