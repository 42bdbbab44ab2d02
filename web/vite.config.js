import { defineConfig } from 'vite';

// The Python server serves dist/ at "/" next to /scene.glb, /api/* and /ws, so the
// build uses relative URLs. `npm run dev` proxies those paths to a running twin
// (TWIN_URL, default the `twin demo` address).
const twin = process.env.TWIN_URL ?? 'http://127.0.0.1:8000';

export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // three.js alone is ~700 kB minified; one chunk is fine for a single-page viewer.
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      '/api': twin,
      '/scene.glb': twin,
      '/ws': { target: twin.replace(/^http/, 'ws'), ws: true },
    },
  },
});
