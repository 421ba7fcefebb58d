#!/usr/bin/env node
// Runs every test file under test/unit, test/integration and test/e2e with node's test runner,
// in that order, one `node --test` process per file, and says on stderr how each file ended and
// how long it took. Node 20 does not expand globs itself, and an empty folder must not turn into
// a "file not found" failure.
//
// Why one process per file and a line per file: CI keeps only the tail of a run's output. When a
// run is killed for taking too long, the tail must say where the time went; node's own runner
// prints a file only when it ends, and nothing about how long each took.
//
// Why a limit per file: a test that waits for something that never comes (a socket that was
// reset, a machine that never boots) would otherwise hang the whole run until CI kills it with
// no word of which test it was. node's --test-timeout reports the file as timed out, with its
// finished tests listed; a file still alive shortly after that is killed with its process group
// (QEMU, daemons it started), and the run goes on with the next file.
//
// `node scripts/run-tests.mjs [FOLDER|FILE]...` runs only those.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const root = path.resolve(import.meta.dirname, '..');
/** Seconds one file may take, by folder: e2e files boot several QEMU machines under TCG. */
const FILE_LIMIT_S = { 'test/unit': 300, 'test/integration': 600, 'test/e2e': 2400 };
const DEFAULT_LIMIT_S = 2400;
/** How long after node's own limit a file that is still running is killed. */
const KILL_GRACE_S = 60;
const SUMMARY_KEYS = ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'];

const t0 = Date.now();
const elapsed = (from = t0) => Math.round((Date.now() - from) / 1000);
const secs = (ms) => (ms < 10_000 ? (ms / 1000).toFixed(1) : String(Math.round(ms / 1000)));
const say = (line) => process.stderr.write(`# run-tests: ${line}\n`);

/** The files to run, in order, each with its limit; folders are read sorted. */
function plan(args) {
  const targets = args.length ? args : ['test/unit', 'test/integration', 'test/e2e'];
  const files = [];
  for (const t of targets) {
    const abs = path.resolve(root, t);
    if (!fs.existsSync(abs)) {
      if (args.length) throw new Error(`${t}: no such file or folder`);
      continue;
    }
    if (fs.statSync(abs).isFile()) {
      files.push({ file: t, limit: FILE_LIMIT_S[path.dirname(t)] ?? DEFAULT_LIMIT_S });
      continue;
    }
    for (const f of fs.readdirSync(abs).sort()) {
      if (f.endsWith('.test.ts')) files.push({ file: path.join(t, f), limit: FILE_LIMIT_S[t] ?? DEFAULT_LIMIT_S });
    }
  }
  return files;
}

/** What has run so far: one entry per finished file. */
const done = [];
const totals = Object.fromEntries(SUMMARY_KEYS.map((k) => [k, 0]));
let current = null;
/** Each finished file's look for processes it left (runFile), awaited before the run ends. */
const leftoverChecks = [];

/** Runs one file; resolves with how it ended. Its TAP output goes to our stdout as it comes. */
function runFile({ file, limit }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', `--test-timeout=${limit * 1000}`, file], {
      cwd: root,
      // Suites share what is built once per run (test/lab/image.ts) by the run's pid.
      env: { ...process.env, PXEHERD_TEST_RUN_PID: String(process.pid) },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    current = { file, started, child };
    const counts = {};
    // Only the top level's summary lines count: a file's subtests are indented.
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      process.stdout.write(line + '\n');
      const m = /^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line);
      if (m) counts[m[1]] = Number(m[2]);
    });
    let killedForTime = false;
    const killTimer = setTimeout(() => {
      killedForTime = true;
      say(`${file}: still running ${limit + KILL_GRACE_S} s after it started: killing it and what it started`);
      killGroup(child, 'SIGTERM');
      setTimeout(() => killGroup(child, 'SIGKILL'), 10_000).unref();
    }, (limit + KILL_GRACE_S) * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(killTimer);
      current = null;
      // Whatever the file started and left running (a daemon, a QEMU) would slow every later
      // file. Looked at a second later: a helper that exits on its own as its parent goes
      // (esbuild's service under tsx) is not one.
      leftoverChecks.push(
        new Promise((checked) =>
          setTimeout(() => {
            if (killGroup(child, 'SIGKILL')) say(`${file}: left processes running a second after it ended: killed them`);
            checked();
          }, 1000),
        ),
      );
      for (const k of SUMMARY_KEYS) totals[k] += counts[k] ?? 0;
      const ok = code === 0 && !killedForTime;
      const why = killedForTime ? `killed after ${limit + KILL_GRACE_S} s` : code === 0 ? 'ok' : `FAILED (exit ${code ?? signal})`;
      resolve({ file, ok, why, ms: Date.now() - started, counts });
    });
  });
}

/** Signals the file's whole process group; false when nothing of it is left. */
function killGroup(child, signal) {
  try {
    return process.kill(-child.pid, signal);
  } catch {
    return false;
  }
}

function countsText(c) {
  return SUMMARY_KEYS.filter((k) => k === 'tests' || c[k]).map((k) => `${c[k] ?? 0} ${k === 'tests' ? 'tests' : k}`).join(', ');
}

/** The lines that must be in the tail of any run: totals, failures, where the time went. */
function summary(headline) {
  const failed = done.filter((d) => !d.ok);
  say(`${headline}: ${done.length} files in ${elapsed()} s; ${countsText(totals)}`);
  const byFolder = new Map();
  for (const d of done) byFolder.set(path.dirname(d.file), (byFolder.get(path.dirname(d.file)) ?? 0) + d.ms);
  if (byFolder.size) say(`time by folder: ${[...byFolder].map(([f, ms]) => `${f} ${secs(ms)} s`).join(', ')}`);
  const slowest = [...done].sort((a, b) => b.ms - a.ms).slice(0, 8);
  if (slowest.length) say(`slowest files: ${slowest.map((d) => `${path.basename(d.file)} ${secs(d.ms)} s`).join(', ')}`);
  if (failed.length) say(`FAILED files: ${failed.map((d) => `${d.file} (${d.why})`).join(', ')}`);
}

async function main() {
  let files;
  try {
    files = plan(process.argv.slice(2));
  } catch (e) {
    console.error(`run-tests: ${e.message}`);
    process.exit(2);
  }
  if (files.length === 0) {
    console.error('run-tests: no test files found');
    process.exit(2);
  }
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(sig, () => {
      if (current) say(`interrupted by ${sig} while ${current.file} had run ${elapsed(current.started)} s`);
      summary(`interrupted by ${sig}`);
      if (current) killGroup(current.child, 'SIGKILL');
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15));
    });
  }
  say(`${files.length} files (limits: unit ${FILE_LIMIT_S['test/unit']} s, integration ${FILE_LIMIT_S['test/integration']} s, e2e ${FILE_LIMIT_S['test/e2e']} s per file)`);
  let folder = null;
  for (const [i, f] of files.entries()) {
    const dir = path.dirname(f.file);
    if (dir !== folder) {
      folder = dir;
      say(`${dir}: started at +${elapsed()} s`);
    }
    const r = await runFile(f);
    done.push(r);
    say(`[${i + 1}/${files.length}] ${r.file}: ${r.why} in ${secs(r.ms)} s (${countsText(r.counts)}) at +${elapsed()} s`);
  }
  await Promise.all(leftoverChecks);
  const failed = done.filter((d) => !d.ok);
  summary(failed.length ? 'FAILED' : 'all passed');
  process.exit(failed.length ? 1 : 0);
}

await main();
