// Every request to the Hub goes through here: a bounded number in flight, retries with backoff on
// 429, 5xx and dropped connections, a range that breaks off mid-body resumed from the byte it
// reached, the token sent to the Hub's own origin only, and counters for the README's figures.
import { MoeError } from '../engine/io.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubOptions {
  /** The Hub's address (HF_ENDPOINT); default https://huggingface.co. */
  endpoint?: string;
  /** A user access token ("hf_…"), for gated and private repos. */
  token?: string;
  /** What the user does to give a token, for 401/403 messages ("set HF_TOKEN"). */
  tokenHint?: string;
  /** Requests in flight at once, for all files of the client. Default 16. */
  concurrency?: number;
  /** Tries of one request that make no progress before it fails. Default 8. */
  tries?: number;
  /** First backoff; doubled per failed try, at most 30 s, with jitter. Default 500 ms. */
  backoffMs?: number;
  /** A response that sends no byte for this long is dropped and tried again. Default 60 s. */
  idleTimeoutMs?: number;
  /** For tests and the studio: the fetch to use. */
  fetch?: typeof fetch;
}

/** What the client asked the Hub for, for the README's figures and the tests. */
export interface HubStats {
  /** HTTP requests sent (a redirect followed by fetch counts once). */
  requests: number;
  /** Body bytes received. */
  bytes: number;
  /** Requests tried again after a 429, 5xx, timeout or dropped connection. */
  retries: number;
}

/** A status the Hub may answer differently a moment later. */
function transient(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

class Transient extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

function retryAfter(res: Response): number | undefined {
  const v = res.headers.get('Retry-After');
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.min(s * 1000, 120_000);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, Math.min(t - Date.now(), 120_000)) : undefined;
}

export class HubClient {
  readonly endpoint: string;
  readonly stats: HubStats = { requests: 0, bytes: 0, retries: 0 };
  private readonly origin: string;
  private readonly token: string | undefined;
  private readonly tokenHint: string;
  private readonly concurrency: number;
  private readonly tries: number;
  private readonly backoffMs: number;
  private readonly idleTimeoutMs: number;
  private readonly baseFetch: typeof fetch;
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  /** Closing the client aborts every request in flight. */
  private readonly closed = new AbortController();

  constructor(opts: HubOptions = {}) {
    this.endpoint = (opts.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
    let url: URL;
    try {
      url = new URL(this.endpoint);
    } catch {
      throw new MoeError(`"${this.endpoint}" is not a URL`, 'HF_ENDPOINT');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new MoeError(`"${this.endpoint}" is not an http(s) address`, 'HF_ENDPOINT');
    this.origin = url.origin;
    if (opts.token !== undefined && opts.token !== '' && !/^hf_[A-Za-z0-9_-]+$/.test(opts.token)) {
      throw new MoeError('the access token is not a Hugging Face token (they start with "hf_")');
    }
    this.token = opts.token || undefined;
    this.tokenHint = opts.tokenHint ?? 'give a token with read access';
    this.concurrency = opts.concurrency ?? 16;
    this.tries = opts.tries ?? 8;
    this.backoffMs = opts.backoffMs ?? 500;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.baseFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  get hasToken(): boolean {
    return this.token !== undefined;
  }

  /** The token, for @huggingface/hub calls (which only ever talk to the endpoint). */
  get accessToken(): string | undefined {
    return this.token;
  }

  close(): void {
    this.closed.abort();
  }

  private async slot(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  private async backoff(attempt: number, hint: number | undefined): Promise<void> {
    const base = Math.min(30_000, this.backoffMs * 2 ** attempt);
    const ms = hint ?? base / 2 + Math.random() * (base / 2);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, ms);
      this.closed.signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new MoeError('the Hub connection was closed'));
      }, { once: true });
    });
  }

  /** Headers for a request to `url`: the token only when it goes to the Hub's own origin. */
  private headers(url: string, extra: Record<string, string>): Record<string, string> {
    const h = { ...extra };
    if (this.token && new URL(url, this.endpoint).origin === this.origin) h['Authorization'] = `Bearer ${this.token}`;
    return h;
  }

  /**
   * The fetch given to @huggingface/hub: bounded, counted, and tried again on transient answers and
   * network errors (its calls are small JSON requests; their whole body is read before returning).
   */
  readonly apiFetch: typeof fetch = async (input, init) => {
    for (let attempt = 0; ; attempt++) {
      await this.slot();
      let failure: Transient;
      try {
        this.stats.requests++;
        const res = await this.baseFetch(input, { ...init, signal: this.closed.signal });
        if (!transient(res.status) || attempt + 1 >= this.tries) {
          // Read the body here, inside the retry loop, so a connection cut in it is retried too.
          const body = await res.arrayBuffer();
          this.stats.bytes += body.byteLength;
          const out = new Response(res.status === 204 || res.status === 304 ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
          Object.defineProperty(out, 'url', { value: res.url });
          return out;
        }
        failure = new Transient(`HTTP ${res.status}`, retryAfter(res));
      } catch (e) {
        if (this.closed.signal.aborted) throw new MoeError('the Hub connection was closed');
        if (attempt + 1 >= this.tries) throw e;
        failure = new Transient(e instanceof Error ? e.message : String(e));
      } finally {
        this.release();
      }
      this.stats.retries++;
      await this.backoff(attempt, failure.retryAfterMs);
    }
  };

  /**
   * Bytes [offset, offset + length) of a file, by Range requests to `url` (a resolve URL); `size`
   * is the file's size from the listing, checked against every answer. A response cut off or
   * stalled part-way is resumed from the first byte not yet received.
   */
  async readRange(file: HubFileRef, offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let got = 0;
    let failures = 0;
    while (got < length) {
      const before = got;
      let failure: Transient | undefined;
      await this.slot();
      const attempt = new AbortController();
      const onClose = () => attempt.abort();
      this.closed.signal.addEventListener('abort', onClose, { once: true });
      let idle: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        if (idle !== undefined) clearTimeout(idle);
        idle = setTimeout(() => attempt.abort(new Transient(`no data for ${this.idleTimeoutMs / 1000} s`)), this.idleTimeoutMs);
      };
      const target = file.cdnUrl ?? file.url;
      // What arrives is kept even when the body breaks off: the next try asks for the rest.
      const progress = { at: got };
      try {
        this.stats.requests++;
        arm();
        const res = await this.baseFetch(target, {
          headers: this.headers(target, { Range: `bytes=${offset + got}-${offset + length - 1}` }),
          signal: attempt.signal,
        });
        if (res.status === 206) {
          const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('Content-Range') ?? '');
          if (!range || Number(range[1]) !== offset + got) {
            throw new MoeError(`the Hub answered a range request with the wrong bytes (Content-Range "${res.headers.get('Content-Range')}", asked for ${offset + got}-)`, file.label);
          }
          if (range[3] !== '*' && Number(range[3]) !== file.size) {
            throw new MoeError(`is ${range[3]} bytes on the Hub now, not ${file.size} as listed: the file changed while it was read`, file.label);
          }
          // Later reads go straight to where the Hub redirected (its CDN), not through the redirect.
          if (res.url && res.url !== target && file.cdnUrl === undefined) file.cdnUrl = res.url;
          await this.pump(res, out, progress, arm);
        } else if (res.status === 200 && offset + got === 0 && length === file.size) {
          await this.pump(res, out, progress, arm);
        } else if (res.status === 200) {
          throw new MoeError('the server ignored the Range header (HTTP 200 for a part of the file): it cannot serve parts of files', file.label);
        } else if (file.cdnUrl !== undefined && (res.status === 401 || res.status === 403 || res.status === 404 || res.status === 410)) {
          // A signed CDN address expires: go back through the Hub for a fresh one.
          file.cdnUrl = undefined;
          failure = new Transient(`HTTP ${res.status} from the CDN`, 0);
        } else if (transient(res.status)) {
          failure = new Transient(`HTTP ${res.status}`, retryAfter(res));
        } else {
          throw this.statusError(res.status, file.repoText, file.label, await res.text().catch(() => ''));
        }
      } catch (e) {
        if (e instanceof MoeError) throw e;
        if (this.closed.signal.aborted) throw new MoeError('the Hub connection was closed', file.label);
        const reason = attempt.signal.reason instanceof Transient ? attempt.signal.reason.message : e instanceof Error ? (e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message) : String(e);
        failure = new Transient(reason);
      } finally {
        got = progress.at;
        if (idle !== undefined) clearTimeout(idle);
        this.closed.signal.removeEventListener('abort', onClose);
        this.release();
      }
      if (got >= length) break;
      failures = got > before ? 0 : failures + 1;
      if (failures >= this.tries) {
        throw new MoeError(`reading bytes ${offset + got}-${offset + length - 1} from the Hub failed ${failures} times in a row (last: ${failure?.message ?? 'the response ended early'})`, file.label);
      }
      this.stats.retries++;
      await this.backoff(failures, failure?.retryAfterMs);
    }
    return out;
  }

  /** Copies a response body into `out` from `progress.at`, advancing it as bytes arrive. */
  private async pump(res: Response, out: Uint8Array, progress: { at: number }, arm: () => void): Promise<void> {
    if (!res.body) return;
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        arm();
        const take = Math.min(value.byteLength, out.length - progress.at);
        out.set(value.subarray(0, take), progress.at);
        progress.at += take;
        this.stats.bytes += value.byteLength;
        if (progress.at >= out.length) {
          await reader.cancel().catch(() => {});
          return;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** A clear error for an answer that trying again will not change. */
  statusError(status: number, repoText: string, what: string, body = ''): MoeError {
    const said = serverMessage(body);
    if (status === 401) {
      return new MoeError(
        this.token
          ? `the Hub did not accept the token (401${said}): check that it is valid and can read ${repoText}`
          : `the Hub refused access (401${said}): ${repoText} is gated or private, or does not exist; ${this.tokenHint}`,
        what,
      );
    }
    if (status === 403) {
      return new MoeError(
        this.token
          ? `access denied (403${said}): the token's account cannot read ${repoText}; a gated repo needs its conditions accepted on ${this.endpoint}/${repoText.replace(/^hf:\/\//, '').replace(/@.*$/, '')}, and a fine-grained token needs read access to it`
          : `access denied (403${said}): ${repoText} is gated; accept its conditions on the Hub and ${this.tokenHint}`,
        what,
      );
    }
    if (status === 404) return new MoeError(`not found on the Hub (404${said})`, what);
    return new MoeError(`the Hub answered HTTP ${status}${said}`, what);
  }
}

function serverMessage(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: unknown };
    if (typeof j.error === 'string' && j.error) return `: ${j.error.slice(0, 200)}`;
  } catch {
    /* not JSON */
  }
  return '';
}

/** One file of a Hub repo as the client reads it. */
export interface HubFileRef {
  /** hf://ORG/NAME@REV/FILE, for messages. */
  readonly label: string;
  /** hf://ORG/NAME@REV, for messages. */
  readonly repoText: string;
  /** The resolve URL, pinned to the commit. */
  readonly url: string;
  readonly size: number;
  /** Where the Hub redirected the last read (its CDN), reused until it stops working. */
  cdnUrl?: string | undefined;
}
