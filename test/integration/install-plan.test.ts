import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { parseInventory, type Inventory } from '../../src/inventory/inventory.js';
import { cli, writeExecutable } from './remote-fixture.js';
import { startAdmin } from './admin-fixture.js';

// Ports 18380-18389 belong to this file.

function inventory(disks: Array<[string, number, string]>, firmware: 'bios' | 'uefi'): Inventory {
  const r = parseInventory(
    JSON.stringify({
      version: 1,
      cpu: { model: 'QEMU Virtual CPU', count: 1 },
      memory_kb: 500000,
      disks: disks.map(([name, size, serial]) => ({ name, size_bytes: size, model: 'QEMU HARDDISK', serial, rotational: 1, removable: 0 })),
      nics: [{ name: 'eth0', mac: '52:54:00:00:00:01', driver: 'e1000' }],
      firmware,
    }),
  );
  assert.ok(r.ok, !r.ok ? r.error : '');
  return r.inventory;
}

test('node plan prints the disk plan from attributes and the hardware report, changes nothing, and refuses ambiguity and misfits clearly', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  assert.equal((await cli(['node', 'add', '52:54:00:00:00:01', 'd1', '--group', 'rack', '--set', 'install=disk'], s.config)).code, 0);
  assert.equal((await cli(['node', 'add', '52:54:00:00:00:02', 'd2'], s.config)).code, 0);
  const before = await cli(['node', 'plan', 'd1'], s.config);
  assert.equal(before.code, 1);
  assert.equal(before.stderr, 'pxeherd: node d1 has not reported its disks yet: boot it once (the stage-one image reports its hardware), then plan again\n');

  const store = Store.open(s.statedir);
  t.after(() => store.close());
  store.inventory.save('52:54:00:00:00:01', inventory([['vda', 64e9, 'PXEHERDA'], ['vdb', 200e9, 'PXEHERDB'], ['sr0', 1e9, '']], 'uefi'));
  store.inventory.save('52:54:00:00:00:02', inventory([['vda', 4 * 1024 ** 3, 'SMALL']], 'bios'));

  const amb = await cli(['node', 'plan', 'd1'], s.config);
  assert.equal(amb.code, 1);
  assert.match(amb.stderr, /node d1 has 3 disks|node d1 has 2 disks and install_disk is not set: set it to serial:\.\.\., \/dev\/NAME or a size rule \(candidates: vda \(59\.6 GiB, serial PXEHERDA, QEMU HARDDISK\); vdb \(186\.3 GiB, serial PXEHERDB, QEMU HARDDISK\)\)/);

  // Group-wide choice: the larger disk, swap, xfs.
  for (const [k, v] of [['install_disk', 'size>=100GB'], ['install_swap', '4G'], ['install_fs', 'xfs']]) assert.equal((await cli(['group', 'set', 'rack', k!, v!], s.config)).code, 0);
  const dbBefore = fs.readFileSync(path.join(s.statedir, 'pxeherd.db')).length;
  const txt = await cli(['node', 'plan', 'd1'], s.config);
  assert.equal(txt.code, 0, txt.stderr);
  assert.match(txt.stdout, /^d1: install=disk, firmware uefi\ndisk: \/dev\/vdb 186\.3 GiB, serial PXEHERDB, QEMU HARDDISK \(install_disk=size>=100GB\)\n/);
  assert.match(txt.stdout, /^1\s+\/dev\/vdb1\s+esp\s+512 MiB\s+vfat\s+\/boot\/efi$/m);
  assert.match(txt.stdout, /^2\s+\/dev\/vdb2\s+swap\s+4 GiB\s+swap\s+-$/m);
  assert.match(txt.stdout, /^3\s+\/dev\/vdb3\s+root\s+181\.8 GiB \(rest\)\s+xfs\s+\/$/m);
  assert.match(txt.stdout, /^sfdisk \/dev\/vdb <<EOF\nlabel: gpt\n\nsize=512MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"\n/m);
  assert.match(txt.stdout, /^mkfs\.xfs -f -L root \/dev\/vdb3$/m);
  assert.match(txt.stdout, /nothing was changed \(this is a plan\)\n$/);
  assert.equal(fs.readFileSync(path.join(s.statedir, 'pxeherd.db')).length, dbBefore);

  const js = JSON.parse((await cli(['node', 'plan', 'd1', '--json'], s.config)).stdout);
  assert.deepEqual(Object.keys(js), ['node', 'install', 'firmware', 'disk', 'label', 'partitions', 'sfdisk', 'installed']);
  assert.equal(js.installed, null, 'nothing installed by pxeherd yet');
  assert.match(txt.stdout, /^on the disk now: nothing pxeherd installed$/m);
  assert.deepEqual(js.partitions.map((p: { name: string; device: string }) => [p.name, p.device]), [['esp', '/dev/vdb1'], ['swap', '/dev/vdb2'], ['root', '/dev/vdb3']]);

  const none = await cli(['node', 'set', 'attr.install_disk=serial:NOPE', 'd1'], s.config);
  assert.equal(none.code, 0);
  const nm = await cli(['node', 'plan', 'd1'], s.config);
  assert.equal(nm.code, 1);
  assert.match(nm.stderr, /no disk matches install_disk=serial:NOPE \(candidates: vda .*; vdb .*\)/);

  await cli(['node', 'set', 'attr.install_swap=4G', 'd2'], s.config);
  const fit = await cli(['node', 'plan', 'd2'], s.config);
  assert.equal(fit.code, 1);
  assert.match(fit.stderr, /node d2: the plan does not fit vda: it needs 6\.0 GiB \(bios_boot 1 MiB, swap 4 GiB, root at least 2 GiB\) and the disk has 4 GiB: make install_swap smaller/);
  const stateless = await cli(['node', 'plan', 'd2', '--json'], s.config);
  assert.equal(stateless.code, 1);
  await cli(['node', 'set', 'attr.install_swap=', 'd2'], s.config);
  const st = await cli(['node', 'plan', 'd2'], s.config);
  assert.match(st.stdout, /^d2: install=stateless \(this plan is used once install=disk: pxeherd node set attr\.install=disk d2\), firmware bios/);

  // The API answers the same plan, and the same refusal (422 naming the attribute).
  const admin = await startAdmin([18380, 18389]);
  t.after(() => admin.close());
  admin.service.add({ mac: '52:54:00:00:00:01', name: 'd1', attrs: { install: 'disk', install_disk: 'serial:PXEHERDA' } });
  admin.store.inventory.save('52:54:00:00:00:01', inventory([['vda', 64e9, 'PXEHERDA'], ['vdb', 200e9, 'PXEHERDB']], 'bios'));
  const get = (p: string) => fetch(`${admin.base}/api/v1${p}`, { headers: { Authorization: `Bearer ${admin.tokens.readonly}` } });
  const ok = await get('/nodes/d1/plan');
  assert.equal(ok.status, 200);
  const body = (await ok.json()) as { disk: { path: string }; partitions: { name: string }[] };
  assert.equal(body.disk.path, '/dev/vda');
  assert.deepEqual(body.partitions.map((p) => p.name), ['bios_boot', 'root']);
  admin.store.nodes.set(['52:54:00:00:00:01'], 'attr.install_disk', 'largest,size<1GB');
  const bad = await get('/nodes/d1/plan');
  assert.equal(bad.status, 422);
  assert.deepEqual(await bad.json(), { error: 'node d1: no disk matches install_disk=largest,size<1GB (candidates: vda (59.6 GiB, serial PXEHERDA, QEMU HARDDISK); vdb (186.3 GiB, serial PXEHERDB, QEMU HARDDISK))', field: 'attrs.install_disk' });
});

test('install attributes are validated when set on a node or a group; nothing is written on a bad value', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  assert.equal((await cli(['node', 'add', '52:54:00:00:01:01', 'v1'], s.config)).code, 0);
  const bad = await cli(['node', 'set', 'attr.install=diskless', 'v1'], s.config);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'pxeherd: install must be stateless or disk, not "diskless"\n');
  assert.equal((await cli(['node', 'set', 'attr.install=disk', 'v1'], s.config)).code, 0);
  const g = await cli(['group', 'set', 'compute', 'install_fs', 'btrfs'], s.config);
  assert.equal(g.code, 2);
  assert.match(g.stderr, /install_fs must be ext4 or xfs, not "btrfs"/);
  const add = await cli(['node', 'add', '52:54:00:00:01:02', 'v2', '--set', 'install_swap=lots'], s.config);
  assert.equal(add.code, 2);
  assert.match(add.stderr, /install_swap must be a size of at least 1M \(e\.g\. 4G\) or none, not "lots"/);
  const shown = JSON.parse((await cli(['node', 'show', 'v*', '--json'], s.config)).stdout);
  assert.deepEqual(shown.nodes.map((n: { name: string; attrs: Record<string, string> }) => [n.name, n.attrs]), [['v1', { install: 'disk' }]]);
});

test('node release marks nodes to provision on next boot (and wipe), powers them off, and still marks a node whose power off fails', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const log = path.join(s.dir, 'pdu.log');
  const pdu = writeExecutable(path.join(s.dir, 'pdu.sh'), `#!/bin/sh\necho "$*" >> ${log}\n`);
  await cli(['node', 'add', '52:54:00:00:02:01', 'r1', '--boot', 'local', '--set', 'power=command', '--set', `power_off_cmd=${pdu} off {{node}}`], s.config);
  await cli(['node', 'add', '52:54:00:00:02:02', 'r2', '--boot', 'local'], s.config);
  const r = await cli(['node', 'release', 'r1', 'r2', '--wipe', '--json'], s.config);
  assert.equal(r.code, 1);
  assert.deepEqual(JSON.parse(r.stdout).results, [
    { node: 'r1', boot: 'once', wipe: true, wipeMode: 'quick', power: 'off', error: null },
    { node: 'r2', boot: 'once', wipe: true, wipeMode: 'quick', power: 'failed', error: 'no power driver: set attr power=ssh|ipmi|command|redfish on the node or its group' },
  ]);
  assert.match(r.stderr, /release: 1 of 2 node\(s\) were marked but did not power off: r2/);
  assert.equal(fs.readFileSync(log, 'utf8'), 'off r1\n');
  const shown = JSON.parse((await cli(['node', 'show', 'r*', '--json'], s.config)).stdout);
  assert.deepEqual(shown.nodes.map((n: { boot: string; attrs: Record<string, string> }) => [n.boot, n.attrs.wipe_on_boot]), [['once', 'yes'], ['once', 'yes']]);
  const store = Store.open(s.statedir);
  t.after(() => store.close());
  assert.deepEqual(store.events.query({ kind: 'release', order: 'asc' }).map((e) => [e.node, e.kind]).sort(), [['r1', 'release.done'], ['r2', 'release.fail']]);
  const txt = await cli(['node', 'release', 'r1'], s.config);
  assert.equal(txt.code, 0, txt.stderr);
  assert.match(txt.stdout, /^r1\s+provision \(once\)\s+no\s+off$/m);
  const full = await cli(['node', 'release', 'r1', '--wipe-full', '--json'], s.config);
  assert.equal(full.code, 0, full.stderr);
  assert.equal(JSON.parse(full.stdout).results[0].wipeMode, 'full');
  assert.equal(JSON.parse((await cli(['node', 'show', 'r1', '--json'], s.config)).stdout).nodes[0].attrs.wipe_on_boot, 'full', '07-disk-wipe overwrites every byte');
});
