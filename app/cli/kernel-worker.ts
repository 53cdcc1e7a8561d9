// A Node worker thread running the WASM kernels, reached through Comlink.
import { parentPort, workerData } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { serveKernels } from '../engine/kernels/bridge.ts';
import { createWasmKernelsFromBytes } from '../engine/kernels/wasm-kernels.ts';

const kernels = await createWasmKernelsFromBytes(new Uint8Array(workerData.wasm as ArrayBuffer));
Comlink.expose(serveKernels(kernels, Comlink.transfer), nodeEndpoint(parentPort!));
