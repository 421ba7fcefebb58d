import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { ensureKey } from '../../src/remote/keys.js';
import { cli, FakeSshd, writeExecutable } from './remote-fixture.js';

// Ports 18300-18309 belong to this file.
const SECRET = 'Pw-7f3a9c-not-for-eyes';
const BAD_SECRET = 'Wrong-51b2e0-password';

function allText(statedir: string, outputs: { stdout: string; stderr: string }[]): string {
  const store = Store.open(statedir);
  try {
    return outputs.map((o) => o.stdout + o.stderr).join('\n') + JSON.stringify(store.events.query({ limit: 100000 }));
  } finally {
    store.close();
  }
}

test('command driver runs the local template per node, reports a line per node, exits 1 when one fails, and never shows the password', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const log = path.join(s.dir, 'power.log');
  // The script echoes the password on purpose: pxeherd must scrub it from what it prints.
  const script = writeExecutable(
    path.join(s.dir, 'pdu.sh'),
    `#!/bin/sh\necho "$* pw=$PXEHERD_BMC_PASSWORD node=$PXEHERD_NODE" >> ${log}\ncase "$1" in\n  status) echo "outlet is on (password $PXEHERD_BMC_PASSWORD)";;\n  off) [ "$2" = n0002 ] && { echo "outlet $2 stuck" >&2; exit 4; };;\nesac\nexit 0\n`,
  );
  fs.mkdirSync(path.join(s.statedir, 'secrets'), { recursive: true });
  fs.writeFileSync(path.join(s.statedir, 'secrets', 'pdu'), SECRET + '\n', { mode: 0o600 });
  for (const [k, v] of Object.entries({ power: 'command', bmc_password_file: 'pdu', power_status_cmd: `${script} status {{node}}`, power_off_cmd: `${script} off {{node}} {{mac}}`, power_on_cmd: `${script} on {{node}} "{{rack}} x"` })) {
    assert.equal((await cli(['group', 'set', 'rack1', k, v], s.config)).code, 0);
  }
  assert.equal((await cli(['node', 'add', 'aa:bb:cc:00:00:01', 'n0001', '--group', 'rack1', '--set', 'rack=r1;reboot'], s.config)).code, 0);
  assert.equal((await cli(['node', 'add', 'aa:bb:cc:00:00:02', 'n0002', '--group', 'rack1', '--set', 'rack=r2'], s.config)).code, 0);

  const status = await cli(['power', 'status', 'n000[1-2]'], s.config);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^n0001: on$/m);
  assert.match(status.stdout, /^n0002: on$/m);

  const on = await cli(['power', 'on', 'n0001'], s.config);
  assert.equal(on.code, 0, on.stderr);
  assert.equal(on.stdout, 'n0001: on ok\n');

  const off = await cli(['power', 'off', 'n0001', 'n0002', '--json'], s.config);
  assert.equal(off.code, 1);
  const res = JSON.parse(off.stdout).results;
  assert.deepEqual(res.map((r: { node: string; ok: boolean }) => [r.node, r.ok]), [['n0001', true], ['n0002', false]]);
  assert.match(res[1].error, /pdu\.sh: exit code 4: outlet n0002 stuck/);
  assert.match(off.stderr, /power off: 1 of 2 node\(s\) failed: n0002/);

  const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
  assert.ok(lines.includes(`status n0001 pw=${SECRET} node=n0001`), 'the script got the password in its environment');
  // The attribute value "r1;reboot" stayed one argument: no shell ever saw it.
  assert.ok(lines.includes(`on n0001 r1;reboot x pw=${SECRET} node=n0001`), lines.join('\n'));
  assert.ok(lines.includes(`off n0001 aa:bb:cc:00:00:01 pw=${SECRET} node=n0001`));

  const everything = allText(s.statedir, [status, on, off]);
  assert.ok(!everything.includes(SECRET), 'the password appears in no output and no event');
  const sj = await cli(['power', 'status', 'n0001', '--json'], s.config);
  assert.equal(JSON.parse(sj.stdout).results[0].output, 'outlet is on (password ********)', 'what the script printed, scrubbed');
  assert.ok(!sj.stdout.includes(SECRET));
});

// The ipmi driver is exercised against a real BMC (OpenIPMI's ipmi_sim driving a QEMU machine)
// in test/e2e/bmc-ipmi.test.ts; its argument building is unit-tested in test/unit/power-drivers.test.ts.

test('ipmi driver refuses a password file outside <statedir>/secrets/ before running anything', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  assert.equal((await cli(['node', 'add', 'aa:bb:cc:00:00:04', 'n0004', '--set', 'power=ipmi', '--set', 'bmc_host=10.0.0.51', '--set', 'bmc_password_file=../pxeherd.db'], s.config)).code, 0);
  const esc = await cli(['power', 'status', 'n0004'], s.config);
  assert.equal(esc.code, 1);
  assert.match(esc.stdout, /n0004: FAILED: bmc_password_file "..\/pxeherd.db" must name a file inside .*\/secrets\//);
  const store = Store.open(s.statedir);
  t.after(() => store.close());
  assert.deepEqual(store.events.query({ kind: 'power' }).map((e) => [e.kind, e.detail?.action]), [['power.fail', 'status']]);
});

test('ssh driver logs in to the BMC with the password file or the pxeherd key; a wrong password is a clear auth error', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const key = ensureKey(s.statedir);
  const bmc = await new FakeSshd({
    passwords: { admin: SECRET },
    authorizedKeys: [key.publicKey],
    onExec: (c) => (c.command === 'power status' ? { stdout: 'Power: ON\n' } : c.command.startsWith('power cycle') ? { stdout: 'cycling\n' } : { exit: 2, stderr: 'unknown command\n' }),
  }).listen(18300);
  t.after(() => bmc.close());
  fs.mkdirSync(path.join(s.statedir, 'secrets'), { recursive: true });
  fs.writeFileSync(path.join(s.statedir, 'secrets', 'pdu-ok'), SECRET + '\n');
  fs.writeFileSync(path.join(s.statedir, 'secrets', 'pdu-bad'), BAD_SECRET + '\n');
  const base = ['--set', 'power=ssh', '--set', 'bmc_host=127.0.0.1', '--set', 'bmc_port=18300'];
  await cli(['node', 'add', 'aa:bb:cc:00:00:05', 'n0005', ...base, '--set', 'bmc_user=admin', '--set', 'bmc_password_file=pdu-ok', '--set', 'power_cycle_cmd=power cycle outlet-{{node}}'], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:00:06', 'n0006', ...base, '--set', 'bmc_user=admin', '--set', 'bmc_password_file=pdu-bad'], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:00:07', 'n0007', ...base], s.config);

  const cyc = await cli(['power', 'cycle', 'n0005'], s.config);
  assert.equal(cyc.code, 0, cyc.stderr);
  assert.deepEqual(bmc.calls.at(-1), { user: 'admin', kind: 'exec', command: 'power cycle outlet-n0005', stdin: '', auth: 'password' });

  const st = await cli(['power', 'status', 'n0007', '--json'], s.config);
  assert.equal(st.code, 0, st.stderr);
  assert.equal(JSON.parse(st.stdout).results[0].power, 'on');
  assert.deepEqual(bmc.calls.at(-1), { user: 'root', kind: 'exec', command: 'power status', stdin: '', auth: 'publickey' });

  const before = bmc.calls.length;
  const bad = await cli(['power', 'cycle', 'n0006'], s.config);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^n0006: FAILED: authentication failed for admin@127\.0\.0\.1:18300 \(tried password from bmc_password_file pdu-bad\)/m);
  assert.equal(bmc.calls.length, before, 'nothing ran with the wrong password');
  assert.ok(bmc.authFailures.some((f) => f.method === 'password'));

  const off = await cli(['power', 'off', 'n0005'], s.config);
  assert.equal(off.code, 1);
  assert.match(off.stdout, /n0005: FAILED: "power off" on 127\.0\.0\.1 exit code 2: unknown command/);

  const text = allText(s.statedir, [cyc, st, bad, off]);
  for (const secret of [SECRET, BAD_SECRET, key.privateKey.split('\n')[1]!]) assert.ok(!text.includes(secret), 'no secret in output or events');
  const store = Store.open(s.statedir);
  t.after(() => store.close());
  const evs = store.events.query({ kind: 'power', order: 'asc' });
  assert.deepEqual(evs.map((e) => [e.node, e.kind, e.detail?.action, e.detail?.ok]), [['n0005', 'power.cycle', 'cycle', true], ['n0007', 'power.status', 'status', true], ['n0006', 'power.fail', 'cycle', false], ['n0005', 'power.fail', 'off', false]]);

  // The ssh driver has no boot device of its own: pxe without power_pxe_cmd does nothing and says so.
  const px = await cli(['power', 'pxe', 'n0007'], s.config);
  assert.equal(px.code, 0, px.stderr);
  assert.match(px.stdout, /^n0007: pxe skipped: power=ssh has no power_pxe_cmd: the next boot device is left to the firmware's boot order$/m);
});
