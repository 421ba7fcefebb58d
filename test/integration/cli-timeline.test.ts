import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CLI, makeStateDir, pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';

const MAC = '52:54:00:7e:00:01';

/** Two boots of n1: the first fails in a nodescript (with stderr), the second reaches ready. */
function seed(statedir: string): void {
  const s = Store.open(statedir);
  try {
    const t = Date.parse('2026-12-06T10:00:00Z');
    const evs = [
      { time: t, kind: 'dhcp.discover', detail: {} },
      { time: t + 120, kind: 'dhcp.ack', detail: { ip: '10.0.0.5', boot: 'undionly.kpxe' } },
      { time: t + 900, kind: 'http.kernel', detail: { vnfs: 'deb12', file: 'r2/vmlinuz', status: 200, bytes: 8 << 20, ms: 300 } },
      { time: t + 4000, kind: 'nodescript.fail', detail: { script: '52-os-network', reason: 'exit 1', stderr: 'no NIC with MAC 52:54:00:7e:00:01\nsecond line' } },
      { time: t + 60_000, kind: 'dhcp.discover', detail: {} },
      { time: t + 60_100, kind: 'dhcp.ack', detail: { ip: '10.0.0.5' } },
      { time: t + 75_000, kind: 'provision.end', detail: { state: 'ready', ok: true } },
    ];
    for (const e of evs) s.events.record({ mac: MAC, node: 'n1', ...e });
  } finally {
    s.close();
  }
}

test('node timeline shows the newest boot, --boots N more, failures marked and a failing nodescript\'s stderr in full; --json is the web UI\'s timeline', (t) => {
  const sd = makeStateDir();
  t.after(() => sd.cleanup());
  assert.equal(pxeherd(['node', 'add', MAC, 'n1'], { config: sd.config }).code, 0);
  const empty = pxeherd(['node', 'timeline', 'n1'], { config: sd.config });
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout, 'n1: no events recorded yet\n');
  seed(sd.statedir);

  const latest = pxeherd(['node', 'timeline', 'n1'], { config: sd.config });
  assert.equal(latest.code, 0, latest.stderr);
  assert.match(latest.stdout, /^n1: boot at 2026-12-06T10:01:00\.000Z, 15\.000 s\n/);
  assert.match(latest.stdout, /\+15\.000 s {4}provision\.end +state ready · ok/);
  assert.ok(!latest.stdout.includes('nodescript.fail'), 'only the newest boot by default');

  const two = pxeherd(['node', 'timeline', MAC, '--boots', '2'], { config: sd.config });
  assert.equal(two.code, 0, two.stderr);
  assert.match(two.stdout, /n1: boot at 2026-12-06T10:00:00\.000Z, 4\.000 s, FAILED/);
  assert.match(two.stdout, /\+4\.000 s {2}! nodescript\.fail +52-os-network · exit 1\n {6}\| no NIC with MAC 52:54:00:7e:00:01\n {6}\| second line\n/);
  assert.match(two.stdout, /\+0\.900 s {4}http\.kernel +deb12\/r2\/vmlinuz · status 200 · 8\.0 MiB · 300 ms/);

  const j = pxeherd(['node', 'timeline', 'n1', '--boots', '5', '--json'], { config: sd.config });
  assert.equal(j.code, 0, j.stderr);
  const doc = JSON.parse(j.stdout) as { node: string; mac: string; boots: { failed: boolean; rows: { kind: string; failed: boolean; stderr?: string }[] }[] };
  assert.equal(doc.node, 'n1');
  assert.equal(doc.mac, MAC);
  assert.deepEqual(doc.boots.map((b) => b.failed), [false, true], 'two boots, newest first');
  assert.deepEqual(doc.boots[1]!.rows.map((r) => r.kind), ['dhcp.discover', 'dhcp.ack', 'http.kernel', 'nodescript.fail']);
  assert.equal(doc.boots[1]!.rows[3]!.stderr, 'no NIC with MAC 52:54:00:7e:00:01\nsecond line');
});

test('node timeline refuses an unknown node (exit 2), a bad --boots (exit 2) and --follow with --json (exit 2)', (t) => {
  const sd = makeStateDir();
  t.after(() => sd.cleanup());
  const r = pxeherd(['node', 'timeline', 'nope'], { config: sd.config });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /nope/);
  assert.equal(pxeherd(['node', 'add', MAC, 'n1'], { config: sd.config }).code, 0);
  const b = pxeherd(['node', 'timeline', 'n1', '--boots', '0'], { config: sd.config });
  assert.equal(b.code, 2);
  assert.match(b.stderr, /--boots must be a whole number >= 1, not "0"/);
  assert.equal(pxeherd(['node', 'timeline', 'n1', '--follow', '--json'], { config: sd.config }).code, 2);
});

test('node timeline --follow prints each new event of the node as another process records it, and stops on SIGINT with exit 0', async (t) => {
  const sd = makeStateDir();
  t.after(() => sd.cleanup());
  assert.equal(pxeherd(['node', 'add', MAC, 'n1'], { config: sd.config }).code, 0);
  assert.equal(pxeherd(['node', 'add', '52:54:00:7e:00:02', 'n2'], { config: sd.config }).code, 0);
  seed(sd.statedir);
  const child = spawn(process.execPath, [CLI, 'node', 'timeline', 'n1', '--follow', '--config', sd.config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const until = async (what: string, pred: () => boolean) => {
    for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(pred(), `${what}: stdout ${out} stderr ${err}`);
  };
  await until('the boot is printed and following starts', () => /following n1/.test(err));
  const s = Store.open(sd.statedir);
  try {
    s.events.record({ mac: MAC, node: 'n1', kind: 'power.cycle', detail: { action: 'cycle', driver: 'ipmi' } });
    s.events.record({ mac: '52:54:00:7e:00:02', node: 'n2', kind: 'dhcp.discover', detail: {} });
    s.events.record({ mac: MAC, node: 'n1', kind: 'install.fail', detail: { stage: 'plan', error: 'no disk matches install_disk=serial:X' } });
  } finally {
    s.close();
  }
  await until('both new events of n1', () => /install\.fail/.test(out));
  assert.match(out, /\d\d:\d\d:\d\d\.\d{3} {2}n1 {4}power\.cycle +cycle · driver ipmi\n/);
  assert.match(out, /n1  ! install\.fail +stage plan · no disk matches install_disk=serial:X\n/);
  assert.ok(!/ n2 /.test(out), "another node's events are not followed");
  const code = await new Promise<number | null>((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGINT');
  });
  assert.equal(code, 0, err);
});
