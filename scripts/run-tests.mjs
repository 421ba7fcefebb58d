#!/usr/bin/env node
// Runs every test file under test/unit, test/integration and test/e2e (in that order) with
// node's test runner. Node 20 does not expand globs itself, and an empty folder must not
// turn into a "file not found" failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const only = process.argv.slice(2);
const dirs = only.length ? only : ['test/unit', 'test/integration', 'test/e2e'];
const files = [];
for (const d of dirs) {
  const abs = path.join(root, d);
  if (fs.existsSync(abs) && fs.statSync(abs).isFile()) {
    files.push(d);
    continue;
  }
  if (!fs.existsSync(abs)) continue;
  for (const f of fs.readdirSync(abs).sort()) if (f.endsWith('.test.ts')) files.push(path.join(d, f));
}
if (files.length === 0) {
  console.error('no test files found in ' + dirs.join(', '));
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
