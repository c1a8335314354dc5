import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {defineConfig} from 'vite';

// The loaders.gl MVT worker at a fixed name (dist/workers/mvt-worker.js): the notebook
// helper (viewer/notebook.py) points pydeck's MVTLayer at it, so no tile waits on unpkg.com.
function mvtWorker() {
  return {
    name: 'cim-mvt-worker',
    generateBundle() {
      this.emitFile({type: 'asset', fileName: 'workers/mvt-worker.js',
        source: readFileSync(fileURLToPath(import.meta.resolve('@loaders.gl/mvt/mvt-worker.js')))});
    }
  };
}

// Relative asset URLs: the API serves dist/ under /viewer/ and the page itself at its root
// (viewer/serve.py adds a <base> for that), so nothing here knows the server's prefix.
export default defineConfig({
  base: './',
  plugins: [mvtWorker()],
  build: {outDir: 'dist', target: 'es2022', sourcemap: false, chunkSizeWarningLimit: 4000},
  // `npm run dev` against a `cim serve` on the default port.
  server: {proxy: {'^/(collections|tiles|styles|conformance|3dtiles|scenarios)': 'http://127.0.0.1:8000'}}
});
