// The UI's one bridge to the coordinator worker. Everything the UI asks of the engine goes
// through `studio` (a Comlink remote of StudioApi); callbacks are wrapped with `listener`.
import * as Comlink from 'comlink';
import type { StudioApi } from '../shared/studio-api.ts';

const worker = new Worker(new URL('../worker/studio-worker.ts', import.meta.url), { type: 'module', name: 'moe-studio' });

export const studio: Comlink.Remote<StudioApi> = Comlink.wrap<StudioApi>(worker);

/** A callback the worker may call back (streamed diff figures, merge progress). */
export function listener<T extends (...args: never[]) => unknown>(fn: T): T & Comlink.ProxyMarked {
  return Comlink.proxy(fn);
}

let jobCounter = 0;
export function newJobId(prefix: string): string {
  jobCounter++;
  return `${prefix}-${Date.now().toString(36)}-${jobCounter}`;
}
