// bin/pxeherd, the installed `pxeherd` command: node/group/vnfs/image start from the CLI's V8
// startup snapshot (dist/bin/cli.blob), the rest and every doubtful case from dist/cli.js.
// Which way a command went is read from the launcher's own trace (`sh -x`): the exec line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, CLI, LAUNCHER, makeStateDir } from '../helpers/cli.js';

const BLOB = path.join(ROOT, 'dist', 'bin', 'cli.blob');

/** Run the launcher at `launcher` under `sh -x`: the result, and the node command line it exec'd. */
function traced(launcher: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('sh', ['-x', launcher, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  const exec = r.stderr.split('\n').filter((l) => /^\+ exec /.test(l)).pop() ?? '';
  const stderr = r.stderr.split('\n').filter((l) => !/^\++ /.test(l)).join('\n');
  return { code: r.status, stdout: r.stdout, stderr, exec, snapshot: exec.includes('--snapshot-blob') };
}
const direct = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

test('npm run build made the snapshot, and node/group/vnfs commands run from it with the same output as dist/cli.js', (t) => {
  assert.ok(fs.existsSync(BLOB), `${BLOB} is missing: scripts/bundle.mjs did not build the snapshot (see npm run build's output)`);
  const s = makeStateDir();
  t.after(() => s.cleanup());
  const c = ['--config', s.config];
  const steps: string[][] = [
    ['node', 'add', '52:54:00:19:00:01', '--group', 'compute', ...c],
    ['node', 'add', '52:54:00:19:00:02', 'gpu01', ...c],
    ['node', 'set', 'attr.rack=r42', 'gpu01', ...c],
    ['group', 'set', 'compute', 'checkin_interval=600', ...c],
    ['vnfs', 'list', ...c],
  ];
  for (const argv of steps) {
    const r = traced(LAUNCHER, argv);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    assert.ok(r.snapshot, `${argv.join(' ')} did not start from the snapshot: ${r.exec}`);
  }
  for (const argv of [['node', 'list', ...c], ['node', 'list', '--json', ...c], ['node', 'list', 'attr:rack,r42', '--json', ...c], ['node', 'show', 'gpu01', '--json', ...c], ['group', 'list', '--json', ...c], ['node', 'list', '--help'], ['node', 'lisst', ...c], ['node', 'show', 'nosuch', ...c]]) {
    const viaSnapshot = traced(LAUNCHER, argv);
    const viaDist = direct(argv);
    assert.ok(viaSnapshot.snapshot, `${argv.join(' ')} did not start from the snapshot: ${viaSnapshot.exec}`);
    assert.deepEqual({ code: viaSnapshot.code, stdout: viaSnapshot.stdout, stderr: viaSnapshot.stderr }, { code: viaDist.status, stdout: viaDist.stdout, stderr: viaDist.stderr }, argv.join(' '));
  }
  // Node's own options after the command word are the command's: --version, --help.
  const v = traced(LAUNCHER, ['node', '--version']);
  assert.equal(v.code, direct(['node', '--version']).status);
});

test('other commands, PXEHERD_NO_SNAPSHOT, a missing snapshot and one built by another node binary run dist/cli.js', (t) => {
  const s = makeStateDir();
  // A copy of the launcher in a tree of its own, whose dist/ links to the real one's files.
  const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-launcher-'));
  t.after(() => {
    s.cleanup();
    fs.rmSync(tree, { recursive: true, force: true });
  });
  fs.mkdirSync(path.join(tree, 'bin'));
  fs.mkdirSync(path.join(tree, 'dist', 'bin'), { recursive: true });
  fs.copyFileSync(LAUNCHER, path.join(tree, 'bin', 'pxeherd'));
  fs.symlinkSync(CLI, path.join(tree, 'dist', 'cli.js'));
  fs.symlinkSync(path.join(ROOT, 'dist', 'cli'), path.join(tree, 'dist', 'cli'));
  const launcher = path.join(tree, 'bin', 'pxeherd');
  const list = ['node', 'list', '--json', '--config', s.config];
  const expected = direct(list);
  assert.equal(expected.status, 0, expected.stderr);
  const viaDist = (what: string, r: ReturnType<typeof traced>) => {
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
    assert.ok(!r.snapshot && r.exec.includes(' node ') && r.exec.includes('dist/cli.js'), `${what}: ${r.exec}`);
    assert.equal(r.stdout, expected.stdout, what);
  };
  viaDist('no snapshot in the tree', traced(launcher, list));
  fs.symlinkSync(BLOB, path.join(tree, 'dist', 'bin', 'cli.blob'));
  viaDist('a snapshot without its record of the node binary', traced(launcher, list));
  fs.writeFileSync(path.join(tree, 'dist', 'bin', 'cli.blob.node'), '1 1\n');
  viaDist('a snapshot built by another node binary', traced(launcher, list));
  fs.copyFileSync(`${BLOB}.node`, path.join(tree, 'dist', 'bin', 'cli.blob.node'));
  assert.ok(traced(launcher, list).snapshot, 'the copied tree with the real record should start from the snapshot');
  viaDist('PXEHERD_NO_SNAPSHOT=1', traced(launcher, list, { PXEHERD_NO_SNAPSHOT: '1' }));
  const help = traced(launcher, ['--help']);
  assert.equal(help.code, 0);
  assert.ok(!help.snapshot && /Usage: pxeherd/.test(help.stdout), help.exec);
});
