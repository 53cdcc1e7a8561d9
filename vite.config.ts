// The browser studio: one page (index.html → app/studio/client), a coordinator worker and kernel
// workers (ES module workers). Served cross-origin isolated (COOP/COEP) in dev and preview.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * Where the page may connect: itself and the Hub (HF_ENDPOINT at build time, as the Hugging Face
 * tools read it; by default huggingface.co and the hosts its downloads redirect to). Nothing else:
 * without a Hub parent the page makes no request beyond its own origin.
 */
function hubHosts(): string[] {
  const endpoint = process.env.HF_ENDPOINT;
  if (endpoint) return [new URL(endpoint).origin];
  return ['https://huggingface.co', 'https://*.huggingface.co', 'https://*.hf.co'];
}

const csp = [
  "default-src 'self'",
  // WebAssembly.compile of the kernels; no other script than the page's own.
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  `connect-src 'self' ${hubHosts().join(' ')}`,
  // React writes style attributes.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'none'",
].join('; ');

export default defineConfig({
  // Absolute base: the workers (in assets/) fetch public files such as moe_kernels.wasm from the root.
  base: '/',
  plugins: [react()],
  worker: { format: 'es' },
  // Listed so the dev server does not discover them late (in the workers) and reload the page.
  optimizeDeps: { include: ['comlink', 'yaml', 'zod', 'idb-keyval', 'd3-scale-chromatic', '@tanstack/react-virtual', 'zustand', 'react', 'react-dom/client'] },
  // The dev server injects inline scripts (React refresh), so the policy is the production build's.
  server: { headers: isolation },
  preview: { headers: { ...isolation, 'Content-Security-Policy': csp } },
  // HF_ENDPOINT reaches the studio's code (import.meta.env.HF_ENDPOINT); no other HF_ variable does.
  envPrefix: ['VITE_', 'HF_ENDPOINT'],
  build: {
    // dist/ also holds the TypeScript project outputs (dist/types): build the page beside them.
    outDir: 'dist/studio',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
});
