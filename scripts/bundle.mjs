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
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';

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

// The CLI's V8 startup snapshot (dist/bin/cli.blob; see src/cli/snapshot.ts and bin/pxeherd).
// `node dist/cli.js node list` spends most of its start running the module code of commander,
// zod (the configuration schema), yaml and pxeherd's store: a snapshot holds the heap after that
// code ran, so a command started from it begins with them loaded. `node --build-snapshot` takes
// one CommonJS script that loads only Node's built-ins, hence a second bundle (CommonJS, one
// file) in which every package and built-in that cannot be in a snapshot (native addons, open
// handles: http, net, worker_threads...) is a stand-in that loads the real module on first use,
// at run time. The snapshot covers the commands the launcher sends to it (node, group, vnfs,
// image); `serve` and the rest run from the bundle above. Minified (whitespace and syntax only,
// names kept): the blob holds the source, and every byte of it is read at each start (~10 ms).
// A failed snapshot build is not a failed build: the launcher runs dist/cli.js without one.
const snapshotSource = path.join(outdir, 'snapshot.cjs');
const blob = path.join(outdir, 'cli.blob');
const LAZY_BUILTINS = ['http', 'https', 'http2', 'tls', 'net', 'dgram', 'child_process', 'worker_threads', 'zlib', 'inspector', 'cluster', 'readline'];
const requireFromRoot = createRequire(path.join(root, 'package.json'));
const loadOnFirstUse = {
  name: 'load-on-first-use',
  setup(b) {
    const external = ['better-sqlite3', 'ssh2', 'cpu-features', 'pino', 'thread-stream', 'pino-pretty', 'postgres'];
    const filter = new RegExp(`^((${external.join('|')})(/.*)?|(node:)?(${LAZY_BUILTINS.join('|')}))$`);
    b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'pxeherd-on-first-use' }));
    b.onLoad({ filter: /.*/, namespace: 'pxeherd-on-first-use' }, (args) => {
      // The module's own property names, known now, so that a bundled `import { x } from 'm'`
      // (copied from the module's keys when it is first bound) reaches the real `x` later.
      let keys = [];
      try {
        keys = Object.getOwnPropertyNames(requireFromRoot(args.path));
      } catch {
        // An optional package that is not installed (cpu-features): it fails at run time as it would anyway.
      }
      const id = JSON.stringify(args.path);
      return {
        loader: 'js',
        contents: `let real;
const load = () => (real ??= globalThis.__pxeherdRequire ? globalThis.__pxeherdRequire(${id}) : (() => { throw new Error('pxeherd snapshot: ' + ${id} + ' cannot be loaded while the snapshot is built; load it in a function, not when the module is first run'); })());
const keys = ${JSON.stringify(keys)};
module.exports = new Proxy(function () {}, {
  get: (_, k) => (k === '__esModule' ? undefined : Reflect.get(load(), k)),
  has: (_, k) => Reflect.has(load(), k),
  apply: (_, self, a) => Reflect.apply(load(), self, a),
  construct: (_, a) => Reflect.construct(load(), a),
  ownKeys: (t) => [...new Set([...keys, ...Reflect.ownKeys(t)])],
});`,
      };
    });
  },
};
// Commands the launcher never sends to the snapshot: their modules stay out of it.
const notInSnapshot = {
  name: 'not-in-snapshot',
  setup(b) {
    b.onResolve({ filter: /^\.\/commands\/serve\.js$/ }, (args) => ({ path: args.path, namespace: 'pxeherd-not-in-snapshot' }));
    b.onLoad({ filter: /.*/, namespace: 'pxeherd-not-in-snapshot' }, (args) => ({
      loader: 'js',
      contents: `throw new Error(${JSON.stringify(`${args.path} is not in the CLI snapshot: run node dist/cli.js`)});`,
    }));
  },
};
fs.rmSync(blob, { force: true });
await build({
  entryPoints: [path.join(root, 'dist', 'cli', 'snapshot.js')],
  outfile: snapshotSource,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  keepNames: true,
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'error',
  // One file for all modules, one level below dist/ as the ESM bundle above (see there).
  define: { 'import.meta.url': '__pxeherdModuleUrl' },
  banner: { js: "var __pxeherdModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [zodWithoutLocales, loadOnFirstUse, notInSnapshot],
});
// Written aside and renamed: node crashes on a partly written blob. cli.blob.node records the
// node binary that built it (size and mtime, as bin/pxeherd compares them with `stat`).
const partial = `${blob}.partial`;
fs.rmSync(`${blob}.node`, { force: true });
const made = spawnSync(process.execPath, ['--snapshot-blob', partial, '--build-snapshot', snapshotSource], { cwd: outdir, encoding: 'utf8' });
if (made.status === 0 && fs.existsSync(partial)) {
  const node = fs.statSync(fs.realpathSync(process.execPath));
  fs.renameSync(partial, blob);
  fs.writeFileSync(`${blob}.node`, `${node.size} ${Math.floor(node.mtimeMs / 1000)}\n`);
} else {
  fs.rmSync(partial, { force: true });
  process.stderr.write(`pxeherd: the CLI snapshot was not built (the pxeherd launcher runs dist/cli.js without it):\n${made.stderr.split('\n').filter((l) => !/built-in module|may still work|issue tracker|trace-warnings/.test(l)).join('\n')}\n`);
}
