// The copy-only floor: read every byte of both parents and write a file the size of the child,
// with the same Node I/O and the same in-flight window as a merge, and no arithmetic: what a
// merge cannot beat on this machine.
//   node --import tsx bench/copy-floor.ts BASE_DIR DONOR_DIR OUT_FILE CHILD_BYTES WINDOW
import path from 'node:path';
import { openNodeModelFolder, openNodeOutputFolder } from '../app/cli/node-io.ts';
import { COPY_BLOCK } from '../app/engine/exec/merge.ts';
import { OrderedPipeline } from '../app/engine/exec/ordered.ts';
import type { ByteSource } from '../app/engine/io.ts';

const [baseDir, donorDir, outFile, childBytesArg, windowArg] = process.argv.slice(2);
const childBytes = Number(childBytesArg);
const started = performance.now();

const parents = await Promise.all([openNodeModelFolder(baseDir!), openNodeModelFolder(donorDir!)]);
const out = await openNodeOutputFolder(path.dirname(outFile!));
const file = await out.create(path.basename(outFile!));
const sources = await Promise.all(
  parents.map(async (folder) => {
    const files = (await folder.list()).filter((f) => f.endsWith('.safetensors')).sort();
    return Promise.all(files.map((f) => folder.open(f)));
  }),
);
const blocks = (list: ByteSource[]) =>
  list.flatMap((s) => Array.from({ length: Math.ceil(s.size / COPY_BLOCK) }, (_, i) => () => s.read(i * COPY_BLOCK, Math.min(COPY_BLOCK, s.size - i * COPY_BLOCK))));
const [a, b] = sources.map(blocks) as [(() => Promise<Uint8Array>)[], (() => Promise<Uint8Array>)[]];

let written = 0;
let read = 0;
const pipeline = new OrderedPipeline<Uint8Array[]>(Number(windowArg ?? 6), async ([x, y]) => {
  read += (x?.length ?? 0) + (y?.length ?? 0);
  const part = (x ?? y)!.subarray(0, Math.max(0, Math.min((x ?? y)!.length, childBytes - written)));
  await file.write(part);
  written += part.length;
});
for (let i = 0; i < Math.max(a.length, b.length); i++) {
  await pipeline.add(async () => (await Promise.all([a[i]?.() ?? Promise.resolve(undefined), b[i]?.() ?? Promise.resolve(undefined)])) as Uint8Array[]);
}
await pipeline.drain();
while (written < childBytes) {
  const part = new Uint8Array(Math.min(COPY_BLOCK, childBytes - written));
  await file.write(part);
  written += part.length;
}
await file.close();
await Promise.all(parents.map((p) => p.close()));
process.stdout.write(JSON.stringify({ read, written, ms: performance.now() - started }) + '\n');
