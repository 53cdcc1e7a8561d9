// Tests run the CLI as users do, from its bundle: build it once (about a second).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const r = spawnSync(process.execPath, [`${root}/scripts/build.mjs`, '--cli'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('building the CLI for the tests failed');
}
