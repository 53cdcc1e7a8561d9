// A Node worker thread running units (reads, WASM kernels, writes) behind Comlink.
import { parentPort, workerData } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { serveUnits } from '../engine/kernels/bridge.ts';
import { instantiateKernelsFromBytes } from '../engine/kernels/wasm-kernels.ts';
import { NodeWorkerFiles } from './worker-files.ts';

const module = await instantiateKernelsFromBytes(new Uint8Array(workerData.wasm as ArrayBuffer));
Comlink.expose(serveUnits(module, new NodeWorkerFiles(), Comlink.transfer), nodeEndpoint(parentPort!));
