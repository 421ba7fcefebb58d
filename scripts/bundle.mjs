#!/usr/bin/env node
// Bundles the built CLI (dist/cli/run.js, tsc's output) into dist/bin/ with esbuild, split at
// dynamic imports so lazily loaded commands stay lazy. Why: see src/cli.ts.
//
// Stays external: packages with native addons or files they load by path at run time
// (better-sqlite3, ssh2 and its optional cpu-features, pino's worker transports), and postgres
// (postgres.js): src/store/pg/connect.ts recognises the library's own stray errors by the file
// they come from (node_modules/postgres/src/connection.js). Everything else, pxeherd's modules
// included, is bundled.
//
// dist/bin/ is one level below dist/, like every module that finds the project's files by a
// path relative to itself (`../../native`, `../../templates`, `../tftp/worker.js`), so those
// paths hold in the bundle as in the separate modules.
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');

// zod's namespace export carries every translation of its error messages (`z.locales`, some 60
// modules, 376 KB of the 787 KB zod chunk every command parses at start). pxeherd's messages
// are English (zod's default, which its schemas import from locales/en.js directly) and never
// reads z.locales: the namespace is bundled empty.
const zodWithoutLocales = {
  name: 'zod-without-locales',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](classic|core)[\\/]/.test(args.importer) ? { path: 'zod-locales', namespace: 'pxeherd-empty' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'pxeherd-empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};
const outdir = path.join(root, 'dist', 'bin');
fs.rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: { run: path.join(root, 'dist', 'cli', 'run.js') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3', 'ssh2', 'cpu-features', 'pino', 'thread-stream', 'pino-pretty', 'postgres'],
  // CommonJS dependencies inside an ES module bundle still call require() for Node's built-ins.
  banner: { js: "import { createRequire as __pxeherdCreateRequire } from 'node:module'; const require = __pxeherdCreateRequire(import.meta.url);" },
  // Function and class names as in the modules (messages and checks may read them).
  keepNames: true,
  sourcemap: true,
  logLevel: 'error',
  plugins: [zodWithoutLocales],
});
