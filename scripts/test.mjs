// `npm test`: type-check, build, unit and CLI tests (vitest), then the studio in Chromium (Playwright).
// Installs Debian's chromium first when it is missing and we are root (a fresh machine).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = process.execPath;
const bin = (pkg, file) => `${root}/node_modules/${pkg}/${file}`;

function step(title, cmd, args, env = {}) {
  process.stdout.write(`\n== ${title}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

function findChromium() {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  return candidates.find((c) => c && existsSync(c));
}

let chromium = findChromium();
if (!chromium && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
  step('installing Debian chromium for the browser tests', '/bin/sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get update -q && apt-get install -y -q chromium']);
  chromium = findChromium();
}
if (!chromium) {
  console.error('npm test: no Chromium found. Install it (Debian: apt-get install chromium) or set CHROMIUM_PATH.');
  process.exit(1);
}

// The routing collector's tests need a Python with PyTorch (Debian: python3-torch); they are skipped,
// with a warning, where there is none and it cannot be installed.
const hasTorch = (py) => spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
if (!process.env.PYTHON && !hasTorch('/usr/bin/python3') && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
  step('installing Debian python3-torch for the routing collector tests', '/bin/sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get update -q && apt-get install -y -q python3-torch']);
}

// Not in test-results/: Playwright empties that folder when it starts.
const reports = `${root}/.cache/test-reports`;
mkdirSync(reports, { recursive: true });
const unitJson = `${reports}/vitest.json`;
const e2eJson = `${reports}/playwright.json`;
// Stale reports from an earlier run must not be counted.
for (const f of [unitJson, e2eJson]) rmSync(f, { force: true });
const failures = [];
if (step('type-check (tsc -b)', node, [bin('typescript', 'bin/tsc'), '-b']) !== 0) failures.push('type-check');
if (step('build (CLI bundle + studio)', node, [`${root}/scripts/build.mjs`]) !== 0) {
  console.error('npm test: the build failed; not running the tests');
  process.exit(1);
}
const unitStatus = step('unit and CLI tests (vitest)', node, [bin('vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${unitJson}`]);
if (unitStatus !== 0) failures.push('vitest');
const e2eStatus = step('studio in Chromium (playwright)', node, [bin('@playwright/test', 'cli.js'), 'test', '--reporter=list,json'], {
  CHROMIUM_PATH: chromium,
  PLAYWRIGHT_JSON_OUTPUT_NAME: e2eJson,
});
if (e2eStatus !== 0) failures.push('playwright');

let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const v = JSON.parse(readFileSync(unitJson, 'utf8'));
  passed += v.numPassedTests;
  failed += v.numFailedTests;
  skipped += v.numPendingTests + (v.numTodoTests ?? 0);
} catch {}
try {
  const p = JSON.parse(readFileSync(e2eJson, 'utf8'));
  passed += p.stats.expected;
  failed += p.stats.unexpected;
  skipped += p.stats.skipped;
} catch {}
if (failures.length > 0 && failed === 0) failed = failures.length;
console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failures.length > 0 ? 1 : 0);
