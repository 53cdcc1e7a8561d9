// Entry point of the bundled CLI (dist/cli/moe-studio.mjs).
import { run } from './main.ts';

await run(process.argv.slice(2));
