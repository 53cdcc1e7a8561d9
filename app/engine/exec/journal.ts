// The resume journal: a small file beside the shards of a merge in progress, rewritten as each
// shard completes, so an interrupted merge of a 690 GB child continues where it stopped instead of
// starting over.
//
// It records a fingerprint of what made the child (the engine, the recipe, the parents' files and
// headers, the planned shards) and, per completed shard, its size and a checksum: the XXH3-64 of
// the concatenated XXH3-64s of the spans it was written in (the span lengths are recorded too, so a
// verifier needs nothing but the file). A resumed merge keeps a shard only when the fingerprint is
// unchanged and the shard on disk has that size, the planned header and that checksum.
import { MoeError, writeWhole, type ByteSource, type OutputFolder } from '../io.ts';
import type { KernelPool } from '../kernels/pool.ts';
import type { Model } from '../model/types.ts';
import type { MergePlan, PlannedShard } from '../plan/types.ts';
import { recipeToYaml } from '../recipe/parse.ts';

export const JOURNAL_FILE = '.moe-studio-journal.json';
/** Format 2: XXH3-64 checksums (format 1, XXH64, is refused: its checksums are not computed any more). */
export const JOURNAL_FORMAT = 'moe-studio.journal/2';
/**
 * What makes the bytes of a planned child: bumped whenever the same plan would produce other
 * bytes (arithmetic, layout), so shards from an older engine are never kept.
 */
export const ENGINE_OUTPUT_VERSION = 'moe-studio engine output 3';

export interface Fingerprint {
  engine: string;
  recipe: string;
  /** [parent name, hash of its files and headers], in the recipe's order. */
  parents: [string, string][];
  plan: string;
}

/** What a shard's tensors were made by, counted when it was written (the report and the card need it on resume). */
export interface ShardReport {
  copied: number;
  converted: number;
  mixed: number;
  muted: number;
  patched: number;
  /** Tensors assembled from regions of several sources. */
  assembled: number;
  /** Threshold decisions: [tensor, largest rms_diff (null for infinity), kept]. */
  threshold: [string, number | null, boolean][];
}

export interface ShardRecord {
  file: string;
  bytes: number;
  /** Span lengths in file order, run-length encoded: [length, how many]. */
  spans: [number, number][];
  /** XXH3-64 over the spans' XXH3-64s (little-endian), hex. */
  checksum: string;
  report: ShardReport;
}

export interface Journal {
  format: string;
  started: string;
  fingerprint: Fingerprint;
  shards: ShardRecord[];
}

export function emptyShardReport(): ShardReport {
  return { copied: 0, converted: 0, mixed: 0, muted: 0, patched: 0, assembled: 0, threshold: [] };
}

const hex = (h: bigint) => h.toString(16).padStart(16, '0');

async function hashText(pool: KernelPool, text: string): Promise<string> {
  const [h] = await pool.hashMany([new TextEncoder().encode(text)]);
  return hex(h!);
}

/** The checksum of a shard from its spans' hashes. */
export async function rootChecksum(pool: KernelPool, spanHashes: bigint[]): Promise<string> {
  const buf = new Uint8Array(spanHashes.length * 8);
  const dv = new DataView(buf.buffer);
  spanHashes.forEach((h, i) => dv.setBigUint64(i * 8, h, true));
  const [h] = await pool.hashMany([buf]);
  return hex(h!);
}

function parentText(model: Model): string {
  const lines: string[] = [];
  for (const f of model.shards) {
    const src = model.sources.get(f)!;
    lines.push(`shard\t${f}\t${src.size}\t${src.identity ?? ''}`);
  }
  for (const w of model.weights) {
    for (const r of [w.data, ...w.companions.map((c) => c.record)]) lines.push(`${r.name}\t${r.dtype}\t${r.shape.join(',')}\t${r.file}\t${r.offset}\t${r.length}`);
  }
  return lines.join('\n');
}

/**
 * A parent's identity for caches: the XXH3-64 of its shard files (names, sizes, identities) and every
 * tensor's header entry. Any change to a shard or a header changes it.
 */
export async function parentFingerprint(model: Model, pool: KernelPool): Promise<string> {
  return hashText(pool, parentText(model));
}

export async function planFingerprint(plan: MergePlan, pool: KernelPool): Promise<Fingerprint> {
  // Parent paths are left out: moving the parents does not change the child.
  const recipe = recipeToYaml({ ...plan.recipe, parents: Object.fromEntries(plan.parentOrder.map((p) => [p, p])) });
  const parents: [string, string][] = [];
  for (const name of plan.parentOrder) parents.push([name, await hashText(pool, parentText(plan.parents.get(name)!))]);
  const headers = plan.shards.map((s) => s.header);
  const total = headers.reduce((n, h) => n + h.length, 0);
  const all = new Uint8Array(total);
  let o = 0;
  for (const h of headers) {
    all.set(h, o);
    o += h.length;
  }
  const files = plan.files.filter((f) => f.what === 'shard').map((f) => `${f.name}\t${f.bytes}`).join('\n');
  const [hh] = await pool.hashMany([all]);
  return { engine: ENGINE_OUTPUT_VERSION, recipe: await hashText(pool, recipe), parents, plan: `${hex(hh!)}:${await hashText(pool, files)}` };
}

/** Why two fingerprints differ, in words; undefined when they are the same. */
export function fingerprintChange(was: Fingerprint, now: Fingerprint): string | undefined {
  if (was.engine !== now.engine) return `it was written by another version of MoE Studio ("${was.engine}", this one makes "${now.engine}")`;
  if (was.recipe !== now.recipe) return 'the recipe changed (its rules, edits, threshold, output or parent names differ)';
  const before = new Map(was.parents);
  for (const [name, h] of now.parents) {
    const b = before.get(name);
    if (b === undefined) return `parent "${name}" was not a parent of the interrupted merge`;
    if (b !== h) return `parent "${name}" changed since (its shard files, sizes, modification times or tensor headers differ)`;
  }
  if (was.plan !== now.plan) return 'the planned shards differ';
  return undefined;
}

export function parseJournal(text: string, file: string): Journal {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new MoeError(`is not a readable resume journal (${e instanceof Error ? e.message : String(e)})`, file);
  }
  const o = j as Partial<Journal> | null;
  if (!o || o.format !== JOURNAL_FORMAT || !o.fingerprint || !Array.isArray(o.shards)) {
    throw new MoeError(`is not a resume journal of this version (format ${JSON.stringify(o?.format)}, expected ${JOURNAL_FORMAT})`, file);
  }
  return o as Journal;
}

export async function readJournal(out: OutputFolder, files: readonly string[]): Promise<Journal | undefined> {
  if (!files.includes(JOURNAL_FILE)) return undefined;
  const src = await out.open(JOURNAL_FILE);
  try {
    const bytes = await src.read(0, src.size);
    return parseJournal(new TextDecoder().decode(bytes), `${out.name}/${JOURNAL_FILE}`);
  } finally {
    await src.close?.();
  }
}

/** Writes the journal so that a crash leaves either the old one or the new one, never half of one. */
export async function writeJournal(out: OutputFolder, journal: Journal): Promise<void> {
  const tmp = out.canRename ? `${JOURNAL_FILE}.tmp` : JOURNAL_FILE;
  await writeWhole(out, tmp, new TextEncoder().encode(JSON.stringify(journal) + '\n'));
  if (out.canRename) await out.rename(tmp, JOURNAL_FILE);
}

export function encodeSpans(lengths: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const l of lengths) {
    const last = out[out.length - 1];
    if (last && last[0] === l) last[1]++;
    else out.push([l, 1]);
  }
  return out;
}

/** Bytes read at once while verifying; spans are cut from these reads. */
const VERIFY_READ = 16 * 1024 * 1024;
/** Bytes of spans hashed per kernel call. */
const HASH_BATCH = 8 * 1024 * 1024;

/** The checksum of a file read back, span by span as the record says. */
async function checksumOf(src: ByteSource, spans: [number, number][], pool: KernelPool): Promise<string> {
  const lengths: number[] = [];
  for (const [len, count] of spans) for (let i = 0; i < count; i++) lengths.push(len);
  const hashes: Promise<bigint[]>[] = [];
  let batch: Uint8Array[] = [];
  let batchBytes = 0;
  let buf: Uint8Array = new Uint8Array(0);
  let bufStart = 0;
  let pos = 0;
  for (const len of lengths) {
    if (pos + len > bufStart + buf.length) {
      // Refill from `pos`: at least this span, else a large read.
      const want = Math.min(src.size - pos, Math.max(len, VERIFY_READ));
      buf = await src.read(pos, want);
      bufStart = pos;
    }
    batch.push(buf.slice(pos - bufStart, pos - bufStart + len));
    batchBytes += len;
    pos += len;
    if (batchBytes >= HASH_BATCH) {
      hashes.push(pool.hashMany(batch));
      batch = [];
      batchBytes = 0;
    }
  }
  if (batch.length > 0) hashes.push(pool.hashMany(batch));
  return rootChecksum(pool, (await Promise.all(hashes)).flat());
}

/**
 * Whether a journaled shard is on disk as it was completed: its temporary or final name, the
 * planned size and header, and the recorded checksum. Returns the name it has, or why not.
 */
export async function verifyShard(
  out: OutputFolder,
  files: readonly string[],
  rec: ShardRecord,
  planned: PlannedShard,
  tmpName: string,
  pool: KernelPool,
): Promise<{ ok: true; name: string } | { ok: false; why: string }> {
  const name = files.includes(tmpName) ? tmpName : files.includes(planned.file) ? planned.file : undefined;
  if (!name) return { ok: false, why: 'its file is gone' };
  if (rec.bytes !== planned.bytes) return { ok: false, why: `the journal says ${rec.bytes} bytes, the plan ${planned.bytes}` };
  const src = await out.open(name);
  try {
    if (src.size !== planned.bytes) return { ok: false, why: `it has ${src.size} bytes, ${planned.bytes} were planned` };
    const head = await src.read(0, planned.header.length);
    if (head.length !== planned.header.length || head.some((b, i) => b !== planned.header[i])) return { ok: false, why: 'its header is not the planned one' };
    const sum = await checksumOf(src, rec.spans, pool).catch((e: unknown) => `unreadable: ${e instanceof Error ? e.message : String(e)}`);
    if (sum !== rec.checksum) return { ok: false, why: 'its checksum differs from the journal (the file changed after it was written)' };
    return { ok: true, name };
  } finally {
    await src.close?.();
  }
}
