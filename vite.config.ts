// The browser studio: one page (index.html → app/studio/client), a coordinator worker and kernel
// workers (ES module workers). Served cross-origin isolated (COOP/COEP) in dev and preview.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  // Absolute base: the workers (in assets/) fetch public files such as moe_kernels.wasm from the root.
  base: '/',
  plugins: [react()],
  worker: { format: 'es' },
  // Listed so the dev server does not discover them late (in the workers) and reload the page.
  optimizeDeps: { include: ['comlink', 'yaml', 'zod', 'idb-keyval', 'd3-scale-chromatic', '@tanstack/react-virtual', 'zustand', 'react', 'react-dom/client'] },
  server: { headers: isolation },
  preview: { headers: isolation },
  build: {
    // dist/ also holds the TypeScript project outputs (dist/types): build the page beside them.
    outDir: 'dist/studio',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
});
