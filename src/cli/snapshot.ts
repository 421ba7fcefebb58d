/**
 * Entry of the CLI's V8 startup snapshot (dist/bin/cli.blob, built by scripts/bundle.mjs from
 * a CommonJS bundle of this file). The `pxeherd` launcher (bin/pxeherd) starts the node, group,
 * vnfs and image commands from it when it is there and current: `node --snapshot-blob
 * dist/bin/cli.blob pxeherd ARGS...`. Why: a command started from dist/cli.js spends most of its
 * start running the module code of commander, zod (the configuration schema), yaml and the
 * store; in the snapshot that code has already run (see src/cli.ts for the bundle).
 *
 * `node --build-snapshot` runs this file once, at build time, where only Node's built-ins can be
 * loaded: the bundle reaches packages with native addons (better-sqlite3...) and built-ins that
 * hold handles (http, net...) through stand-ins that load them on first use, at run time.
 * Run directly (`node dist/bin/snapshot.cjs ARGS...`), the bundle runs those commands too.
 */
import v8 from 'node:v8';
import { createRequire } from 'node:module';
import { main, loadCommands } from './main.js';

/** Run `pxeherd ARGS...`; `__pxeherdRequire` is what the bundle's stand-ins load the real modules with. */
function start(argv: string[]): void {
  (globalThis as { __pxeherdRequire?: NodeJS.Require }).__pxeherdRequire = createRequire(import.meta.url);
  main(argv).then(
    (code) => {
      process.exitCode = code;
      // Done: leave now rather than when the event loop drains, unless output is still queued
      // (a pipe or terminal is written synchronously on Linux; anything else waits). The
      // collector's last incremental marking would otherwise run after the output, ~15 ms of
      // a `node list` of 10 000 nodes (BENCHMARKS.md). Commands that keep working after main
      // resolves do not start from the snapshot (serve runs dist/cli.js).
      if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit(code);
    },
    (e) => {
      process.stderr.write(`pxeherd: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}

if (v8.startupSnapshot.isBuildingSnapshot()) {
  // Run the module code of `node list` (and the other subcommands node.js defines) now, into the
  // snapshot. group.js is not run here: its modules create child_process helpers when first run.
  loadCommands(['node', 'list']).catch((e: unknown) => {
    process.stderr.write(`pxeherd snapshot: loading the node command failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
  // process.argv is [node, 'pxeherd', ...ARGS]: the launcher puts a word before the command
  // line so that node never reads the command's options (--help, --version) as its own.
  v8.startupSnapshot.setDeserializeMainFunction(() => start(process.argv.slice(2)));
} else {
  start(process.argv.slice(2));
}
