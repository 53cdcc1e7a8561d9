// Running the built CLI the way a user does, and fixture folders for the tests.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAMILY_PRESETS, writeFamilyPreset } from '../../app/fixtures/families.ts';
import { writePreset } from '../../app/fixtures/generate.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = path.join(ROOT, 'bin/moe-studio.mjs');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], cwd = ROOT, env: NodeJS.ProcessEnv = process.env): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** As runCli, without blocking this process (a server in the test must answer the CLI meanwhile). */
export function runCliAsync(args: string[], env: NodeJS.ProcessEnv = process.env, cwd = ROOT): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status: status ?? -1, stdout, stderr });
    });
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `moe-${prefix}-`));
}

/** Writes a preset's parents into a fresh folder; returns that folder. */
export async function presetDir(preset: string): Promise<string> {
  const dir = tempDir(preset);
  if (FAMILY_PRESETS[preset]) await writeFamilyPreset(dir, preset);
  else await writePreset(dir, preset);
  return dir;
}

export function writeRecipe(dir: string, name: string, yaml: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

/** Every file in a folder (empty when it does not exist). */
export function filesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}
