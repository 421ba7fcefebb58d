import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { buildStage1, type BuildResult } from '../../src/stage1/build.js';
import { defaultCacheDir, Stage1Error } from '../../src/stage1/debs.js';
import { readCpio } from '../../src/stage1/cpio.js';
import { readModinfo, modDepends } from '../../src/stage1/elf.js';
import { defaultTemplateDirs } from '../../src/boot/service.js';
import { extraCommands, main } from '../../src/cli/main.js';
import { stage1Command } from '../../src/cli/commands/stage1.js';
import { Store } from '../../src/store/store.js';

// The real builder: apt-get download of the Debian kernel and busybox-static (cached in
// ~/.cache/pxeherd, so only the first run on a machine downloads).
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-stage1-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const cacheDir = process.env.PXEHERD_CACHE ?? defaultCacheDir();
const templatesDirs = defaultTemplateDirs(path.join(tmp, 'no-state'));

let first: BuildResult | undefined;
let skip: string | undefined;
try {
  first = buildStage1({ outDir: path.join(tmp, 'out1'), cacheDir, templatesDirs });
} catch (e) {
  if (!(e instanceof Stage1Error) || !/cannot (download|find)/.test(e.message)) throw e;
  skip = `stage-one build needs Debian packages and apt could not get them: ${e.message}`;
}

test('the stage-one build makes a kernel and a gzip\'d newc initramfs with /init, busybox, the console node and the NIC modules in dependency order', { skip }, () => {
  const r = first!;
  assert.ok(fs.statSync(r.kernel).size > 4 << 20, 'kernel of several MB');
  assert.equal(r.cmdline, 'console=tty0 console=ttyS0,115200');
  const gz = fs.readFileSync(r.initrd);
  assert.ok(gz.length < 4 << 20 && gz.length > 500_000, `initrd ${gz.length} bytes`);
  const members = readCpio(zlib.gunzipSync(gz));
  const byName = new Map(members.map((m) => [m.name, m]));
  const init = byName.get('init')!;
  assert.ok(init, '/init present');
  assert.equal(init.mode & 0o777, 0o755);
  assert.match(init.data.toString(), /PXEHERD-RESULT rc=/);
  const bb = byName.get('bin/busybox')!;
  assert.ok(bb.data.length > 1 << 20, 'busybox binary');
  assert.equal(bb.data.readUInt32BE(0), 0x7f454c46);
  assert.equal(byName.get('bin/sh')!.data.toString(), 'busybox');
  const con = byName.get('dev/console')!;
  assert.equal(con.mode & 0o170000, 0o020000);
  assert.deepEqual([con.rdevMajor, con.rdevMinor], [5, 1]);
  const order = byName.get('lib/modules/load.order')!.data.toString().trim().split('\n');
  for (const m of ['e1000.ko', 'e1000e.ko', 'virtio_net.ko', 'virtio_pci.ko']) assert.ok(order.includes(m), `${m} in load order`);
  // Every module's depends= is loaded before it.
  for (const [i, f] of order.entries()) {
    const info = readModinfo(byName.get(`lib/modules/${f}`)!.data);
    assert.ok(info.ok, f);
    for (const d of modDepends((info as { ok: true; info: Map<string, string[]> }).info)) {
      assert.ok(order.slice(0, i).includes(`${d}.ko`), `${f} needs ${d} earlier`);
    }
  }
  // /init and the DHCP hook are valid shell.
  for (const n of ['init', 'etc/udhcpc.script']) {
    const f = path.join(tmp, n.replace('/', '_'));
    fs.writeFileSync(f, byName.get(n)!.data);
    const sh = spawnSync('sh', ['-n', f], { encoding: 'utf8' });
    assert.equal(sh.status, 0, `sh -n ${n}: ${sh.stderr}`);
  }
});

test('a rebuild reuses the cached packages and unpacked kernel', { skip }, () => {
  const t0 = Date.now();
  const r = buildStage1({ outDir: path.join(tmp, 'out2'), cacheDir, templatesDirs });
  const ms = Date.now() - t0;
  assert.equal(r.cached, true);
  assert.equal(r.kernelVersion, first!.kernelVersion);
  assert.ok(ms < 15_000, `rebuild took ${ms} ms`);
});

test('pxeherd stage1 build registers the image as VNFS stage1 with the serial console command line', { skip }, async () => {
  const statedir = path.join(tmp, 'state');
  const cfg = path.join(tmp, 'pxeherd.yaml');
  fs.writeFileSync(cfg, `statedir: ${statedir}\n`);
  if (!extraCommands.includes(stage1Command)) extraCommands.push(stage1Command);
  let out = '';
  let err = '';
  const code = await main(['stage1', 'build', '--config', cfg, '--cache', cacheDir, '--json'], { out: (s) => void (out += s), err: (s) => void (err += s) });
  assert.equal(code, 0, err);
  const j = JSON.parse(out);
  assert.equal(j.vnfs, 'stage1');
  assert.ok(j.modules.includes('e1000'));
  const store = Store.open(statedir);
  try {
    const v = store.vnfs.get('stage1')!;
    assert.equal(v.cmdline, 'console=tty0 console=ttyS0,115200');
    assert.ok(fs.statSync(path.join(statedir, 'vnfs', 'stage1', v.kernel)).size > 4 << 20);
    assert.ok(fs.existsSync(path.join(statedir, 'vnfs', 'stage1', v.initrd)));
  } finally {
    store.close();
  }
});
