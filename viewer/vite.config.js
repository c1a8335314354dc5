import {defineConfig} from 'vite';

// Relative asset URLs: the API serves dist/ under /viewer/ and the page itself at its root
// (viewer/serve.py adds a <base> for that), so nothing here knows the server's prefix.
export default defineConfig({
  base: './',
  build: {outDir: 'dist', target: 'es2022', sourcemap: false, chunkSizeWarningLimit: 4000},
  // `npm run dev` against a `cim serve` on the default port.
  server: {proxy: {'^/(collections|tiles|styles|conformance)': 'http://127.0.0.1:8000'}}
});
