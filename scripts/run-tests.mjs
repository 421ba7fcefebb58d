#!/usr/bin/env node
// Runs every test file under test/unit, test/integration and test/e2e with node's test runner,
// one runner per folder, in that order: the fast suites report first, and each folder has its
// own time limit per file. Node 20 does not expand globs itself, and an empty folder must not
// turn into a "file not found" failure.
//
// Why a limit per file: a test that waits for something that never comes (a socket that was
// reset, a machine that never boots) would otherwise hang the whole run until CI kills it with
// no word of which test it was. With a limit, the runner reports that file as timed out (its
// finished tests are listed) and goes on with the next. node 20's --test-timeout applies to
// each test file as a whole when given with --test.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
/** Seconds one file may take, by folder: e2e files boot several QEMU machines under TCG. */
const FILE_LIMIT_S = { 'test/unit': 300, 'test/integration': 600, 'test/e2e': 2400 };
const DEFAULT_LIMIT_S = 2400;

const only = process.argv.slice(2);
const dirs = only.length ? only : ['test/unit', 'test/integration', 'test/e2e'];

/** Groups of files, one runner each: a folder's files, or the files named on the command line. */
const groups = [];
const loose = [];
for (const d of dirs) {
  const abs = path.join(root, d);
  if (!fs.existsSync(abs)) continue;
  if (fs.statSync(abs).isFile()) {
    loose.push(d);
    continue;
  }
  const files = fs.readdirSync(abs).sort().filter((f) => f.endsWith('.test.ts')).map((f) => path.join(d, f));
  if (files.length) groups.push({ name: d, files, limit: FILE_LIMIT_S[d] ?? DEFAULT_LIMIT_S });
}
if (loose.length) groups.push({ name: loose.length === 1 ? loose[0] : `${loose.length} files`, files: loose, limit: Math.max(...loose.map((f) => FILE_LIMIT_S[path.dirname(f)] ?? DEFAULT_LIMIT_S)) });
if (groups.length === 0) {
  console.error('no test files found in ' + dirs.join(', '));
  process.exit(1);
}

const t0 = Date.now();
const since = () => `${Math.round((Date.now() - t0) / 1000)} s`;
const failed = [];
for (const g of groups) {
  if (groups.length > 1) console.error(`# run-tests: ${g.name}: ${g.files.length} files, at most ${g.limit} s each (started at +${since()})`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', `--test-timeout=${g.limit * 1000}`, ...g.files], { cwd: root, stdio: 'inherit' });
  const code = r.status ?? 1;
  if (groups.length > 1) console.error(`# run-tests: ${g.name}: ${code === 0 ? 'passed' : `FAILED (exit ${r.status ?? r.signal})`} at +${since()}`);
  if (code !== 0) failed.push(g.name);
}
if (groups.length > 1) console.error(`# run-tests: ${failed.length ? `FAILED: ${failed.join(', ')}` : 'all passed'} in ${since()}`);
process.exit(failed.length ? 1 : 0);
