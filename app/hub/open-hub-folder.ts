// A Hub repository as a parent: a read-only ModelFolder whose files are read with HTTP range
// requests. The revision is resolved to its commit once, and every file is read at that commit, so
// a branch that moves during a long merge cannot mix two versions of a model.
import { HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { MoeError, checkRead, type ByteSource, type HubOrigin, type ModelFolder } from '../engine/io.ts';
import { HubClient, type HubFileRef, type HubOptions, type HubStats } from './hub-client.ts';
import { hubRefText, type HubRef } from './hub-ref.ts';

/**
 * The first read of a shard fetches its start: the 8-byte length and, usually, the whole JSON
 * header in one request. The first shards get 64 KiB; later ones the largest header seen so far
 * and a tenth more (DeepSeek-V3's are ~80 KiB, a small model's a few KiB). A larger header costs
 * one more request.
 */
const FIRST_HEAD_BYTES = 64 * 1024;
const MAX_HEAD_BYTES = 4 * 1024 * 1024;

/** What the shards of one folder have shown about their header sizes. */
class HeadGuess {
  private largest = 0;
  get bytes(): number {
    if (this.largest === 0) return FIRST_HEAD_BYTES;
    return Math.min(MAX_HEAD_BYTES, Math.ceil((this.largest * 1.1 + 8) / 4096) * 4096);
  }
  saw(headerBytes: number): void {
    this.largest = Math.max(this.largest, headerBytes);
  }
}

/**
 * Reading this much more between two wanted ranges costs less than another request. Kept small:
 * a sampled diff's blocks lie megabytes apart inside a large tensor, and reading through them
 * would fetch the whole tensor; with 16 requests in flight the round trips overlap instead.
 */
const READ_THROUGH = 256 * 1024;

export interface HubFolder extends ModelFolder {
  readonly hub: HubOrigin;
  /** What was asked of the Hub so far (the CLI reports it after a command). */
  readonly stats: HubStats;
  /** Stops every request in flight; reads after it fail. */
  close(): Promise<void>;
}

class HubSource implements ByteSource {
  readonly readThrough = READ_THROUGH;
  /** The start of the file, kept from the first read until a read goes past it. */
  private head: Promise<Uint8Array> | undefined;
  private headDone = false;

  constructor(
    private readonly client: HubClient,
    private readonly file: HubFileRef,
    readonly identity: string,
    private readonly guess: HeadGuess,
  ) {}

  get name(): string {
    return this.file.label;
  }

  get size(): number {
    return this.file.size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(this, offset, length);
    if (length === 0) return new Uint8Array(0);
    // Only a safetensors file has a header to guess at; other files are read as asked.
    if (!this.headDone && offset === 0 && this.head === undefined && this.file.label.endsWith('.safetensors') && length < this.guess.bytes) {
      const headLength = Math.min(this.guess.bytes, this.size);
      this.head = this.client.readRange(this.file, 0, headLength).then((bytes) => {
        // A safetensors file starts with its header's length (u64, little-endian).
        if (bytes.length >= 8) this.guess.saw(Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)));
        return bytes;
      });
    }
    if (!this.headDone && this.head !== undefined) {
      const head = await this.head;
      if (offset + length <= head.length) return head.slice(offset, offset + length);
      if (offset < head.length) {
        // A header longer than the guess: the kept start, and only the rest from the Hub.
        const rest = await this.client.readRange(this.file, head.length, offset + length - head.length);
        const out = new Uint8Array(length);
        out.set(head.subarray(offset), 0);
        out.set(rest, head.length - offset);
        return out;
      }
    }
    // Tensor data is being read: the header is parsed by now, the kept start is not needed.
    this.headDone = true;
    this.head = undefined;
    return this.client.readRange(this.file, offset, length);
  }
}

/** Maps the library's errors (HubApiError) to the engine's, naming the repo and what to do. */
function apiError(client: HubClient, e: unknown, repoText: string, what: string): unknown {
  if (e instanceof HubApiError) {
    // The library appends ". URL: …. Request ID: …" to the Hub's own message.
    const msg = e.message.split('. URL:')[0] ?? '';
    if (e.statusCode === 404) {
      const revision = /\brev/i.test(msg);
      return new MoeError(revision ? `the Hub has no such revision (404: ${msg})` : `no such model repo on the Hub (404${msg ? `: ${msg}` : ''})`, repoText);
    }
    return client.statusError(e.statusCode, repoText, what, JSON.stringify({ error: msg }));
  }
  if (e instanceof MoeError) return e;
  const reason = e instanceof Error ? (e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message) : String(e);
  return new MoeError(`cannot reach the Hub at ${client.endpoint} (${reason})`, repoText);
}

/**
 * Opens `ref` read-only: one request resolves the revision to a commit, one lists the repo's top
 * folder; files are then read on demand. Parent folders of a merge are only ever read.
 */
export async function openHubFolder(ref: HubRef, opts: HubOptions = {}): Promise<HubFolder> {
  const client = new HubClient(opts);
  const asked = hubRefText(ref);
  const common = { hubUrl: client.endpoint, fetch: client.apiFetch, ...(client.accessToken ? { accessToken: client.accessToken } : {}) };
  let commit: string;
  try {
    const info = await modelInfo({ name: ref.repo, revision: ref.revision ?? 'main', additionalFields: ['sha'], ...common });
    commit = String((info as { sha?: unknown }).sha ?? '');
  } catch (e) {
    client.close();
    throw apiError(client, e, asked, asked);
  }
  if (!/^[0-9a-f]{40}$/.test(commit)) {
    client.close();
    throw new MoeError(`the Hub did not say which commit "${ref.revision ?? 'main'}" is (got "${commit}")`, asked);
  }
  const files = new Map<string, { size: number; oid: string }>();
  try {
    for await (const e of listFiles({ repo: { type: 'model', name: ref.repo }, revision: commit, ...common })) {
      if (e.type === 'file' && !e.path.includes('/')) files.set(e.path, { size: e.lfs?.size ?? e.size, oid: e.lfs?.oid ?? e.oid ?? '' });
    }
  } catch (e) {
    client.close();
    throw apiError(client, e, asked, asked);
  }
  const hub: HubOrigin = { repo: ref.repo, revision: ref.revision ?? 'main', commit };
  const name = asked;
  const guess = new HeadGuess();
  return {
    name,
    hub,
    stats: client.stats,
    async list() {
      return [...files.keys()].sort();
    },
    async open(file: string) {
      const f = files.get(file);
      if (!f) throw new MoeError(`is not in the repo at commit ${commit.slice(0, 12)}`, `${name}/${file}`);
      const path = file.split('/').map(encodeURIComponent).join('/');
      const fileRef: HubFileRef = {
        label: `${name}/${file}`,
        repoText: asked,
        url: `${client.endpoint}/${ref.repo.split('/').map(encodeURIComponent).join('/')}/resolve/${commit}/${path}`,
        size: f.size,
      };
      return new HubSource(client, fileRef, `hf:${ref.repo}@${commit}/${file}#${f.oid}`, guess);
    },
    async close() {
      client.close();
    },
  };
}
