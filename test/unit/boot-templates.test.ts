import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { templateCandidates, TemplateStore, TemplateError, describeHandlebarsError } from '../../src/boot/templates.js';
import { decideBoot, buildContext } from '../../src/boot/decide.js';
import { BootService, BootError, repoTemplatesDir, type BootBackend } from '../../src/boot/service.js';
import type { Node, Vnfs, BootMode } from '../../src/nodes/types.js';

function node(over: Partial<Node> = {}): Node {
  return { mac: '52:54:00:00:00:01', name: 'n0001', group: 'compute', vnfs: 'centos', enabled: true, debug: false, state: '', ip: '', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0, ...over };
}
const policy = { autoRegister: true, defaultVnfs: '', discoveryVnfs: 'stage1' };

test('template candidates run node > group > vnfs > default for provisioning, node > group > mode template otherwise', () => {
  assert.deepEqual(templateCandidates('ipxe', { use: 'provision', node: 'n1', group: 'g', vnfs: 'v' }), ['ipxe/node/n1.ipxe', 'ipxe/group/g.ipxe', 'ipxe/vnfs/v.ipxe', 'ipxe/default.ipxe']);
  assert.deepEqual(templateCandidates('pxelinux', { use: 'local', node: 'n1', group: 'g' }), ['pxelinux/node/n1.local.cfg', 'pxelinux/group/g.local.cfg', 'pxelinux/local.cfg']);
  assert.deepEqual(templateCandidates('grub', { use: 'discovery' }), ['grub/discovery.cfg']);
  assert.deepEqual(templateCandidates('ipxe', { use: 'provision', node: 'n1', group: '', vnfs: 'v' }), ['ipxe/node/n1.ipxe', 'ipxe/vnfs/v.ipxe', 'ipxe/default.ipxe']);
});

test('decideBoot: boot modes, disabled nodes, VNFS fallbacks, unknown machines', () => {
  assert.equal(decideBoot(node(), policy).mode, 'provision');
  assert.equal(decideBoot(node({ boot: 'once' }), policy).mode, 'once');
  assert.equal(decideBoot(node({ boot: 'local' }), policy).vnfs, '');
  assert.match(decideBoot(node({ boot: 'disabled' }), policy).reason, /boot mode is "disabled"/);
  const dis = decideBoot(node({ enabled: false, boot: 'local' }), policy);
  assert.equal(dis.mode, 'disabled', 'a disabled node never boots, whatever its boot mode');
  assert.equal(decideBoot(node({ vnfs: '' }), { ...policy, defaultVnfs: 'rocky' }).vnfs, 'rocky');
  assert.equal(decideBoot(node({ vnfs: '' }), policy).vnfs, 'stage1');
  assert.deepEqual(decideBoot(undefined, policy), { mode: 'discovery', reason: '', select: { use: 'discovery' }, vnfs: 'stage1' });
  assert.equal(decideBoot(undefined, { ...policy, autoRegister: false }).mode, 'unknown');
});

test('buildContext: URLs carry the MAC (hyphenated), the command line carries the pxeherd.* arguments; no MAC means no mac= and no token', () => {
  const v: Vnfs = { name: 'centos', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: 'ro quiet', attrs: {}, createdAt: 0 };
  const c = buildContext({ decision: decideBoot(node(), policy), mac: '52:54:00:00:00:01', node: node(), attrs: { kernel_args: 'ip=dhcp' }, vnfs: v, server: { address: '10.0.0.1', httpPort: 8080 }, token: 'T' });
  assert.equal(c.vnfs.kernelUrl, 'http://10.0.0.1:8080/vnfs/centos/vmlinuz?mac=52-54-00-00-00-01');
  assert.equal(c.cmdline, 'ro quiet ip=dhcp pxeherd.url=http://10.0.0.1:8080/provision/init pxeherd.mac=52-54-00-00-00-01 pxeherd.token=T pxeherd.node=n0001 pxeherd.master=http://10.0.0.1:8080');
  assert.equal(c.provision.initUrl, 'http://10.0.0.1:8080/provision/init?mac=52-54-00-00-00-01&token=T');
  assert.equal(c.bootUrl, 'http://10.0.0.1:8080/boot/52-54-00-00-00-01.ipxe');
  const anon = buildContext({ decision: decideBoot(undefined, policy), mac: '', attrs: {}, vnfs: v, server: { address: '10.0.0.1', httpPort: 80 }, token: '' });
  assert.equal(anon.vnfs.initrdUrl, 'http://10.0.0.1/vnfs/centos/initrd.img');
  assert.equal(anon.cmdline, 'ro quiet pxeherd.url=http://10.0.0.1/provision/init pxeherd.master=http://10.0.0.1');
  assert.equal(anon.provision.initUrl, 'http://10.0.0.1/provision/init');
});

test('a handlebars strict-mode error becomes "template X line N: {{path}} is not defined"', () => {
  const msg = describeHandlebarsError(new Error('"initrdUrl" not defined in [object Object] - 3:9'), 'a\nb\ninitrd {{vnfs.initrdUrl}}\n', 'ipxe/default.ipxe');
  assert.equal(msg, 'template ipxe/default.ipxe line 3: {{vnfs.initrdUrl}} is not defined (missing value "initrdUrl")');
});

test('TemplateStore renders without HTML escaping, fails on unknown values and syntax errors, and picks up edits', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-tpl-'));
  try {
    const f = path.join(dir, 't.ipxe');
    fs.writeFileSync(f, 'kernel x {{args}}\n');
    const ts = new TemplateStore([dir]);
    const t = ts.find(['missing.ipxe', 't.ipxe'])!;
    assert.equal(t.name, 't.ipxe');
    assert.equal(ts.render(t, { args: 'a=b c="d" <e>&' }), 'kernel x a=b c="d" <e>&\n');
    assert.throws(() => ts.render(t, {}), (e: Error) => e instanceof TemplateError && /template t\.ipxe line 1: \{\{args\}\} is not defined/.test(e.message));
    fs.writeFileSync(f, 'changed {{args}} and more\n');
    assert.equal(ts.render(t, { args: 1 }), 'changed 1 and more\n');
    fs.writeFileSync(f, 'broken {{#if x}\n');
    assert.throws(() => ts.render(t, { x: 1 }), /template t\.ipxe: Parse error on line 1/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function fakeBackend(nodes: Node[], vnfs: Vnfs[]): BootBackend & { modes: [string, BootMode][] } {
  const modes: [string, BootMode][] = [];
  return {
    modes,
    nodeByMac: (m) => nodes.find((n) => n.mac === m),
    attrsFor: (n) => n.attrs,
    vnfs: (name) => vnfs.find((v) => v.name === name),
    setBootMode: (mac, mode) => void modes.push([mac, mode]),
  };
}

test('BootService with a fake backend: the repository templates render every mode; served() flips once to local only', () => {
  const stage1: Vnfs = { name: 'stage1', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: 'console=ttyS0', attrs: {}, createdAt: 0 };
  const b = fakeBackend(
    [node({ vnfs: 'stage1' }), node({ mac: '52:54:00:00:00:02', name: 'n2', boot: 'once', vnfs: 'stage1' }), node({ mac: '52:54:00:00:00:03', name: 'n3', boot: 'local' }), node({ mac: '52:54:00:00:00:04', name: 'n4', boot: 'disabled' })],
    [stage1],
  );
  const s = new BootService({ backend: b, templates: new TemplateStore([repoTemplatesDir()]), server: { address: '10.0.0.1', httpPort: 8080 }, autoRegister: true, defaultVnfs: '' });
  for (const kind of ['ipxe', 'pxelinux', 'grub'] as const) {
    for (const mac of ['52:54:00:00:00:01', '52:54:00:00:00:02', '52:54:00:00:00:03', '52:54:00:00:00:04', '52:54:00:00:00:99']) {
      const r = s.render(kind, mac);
      assert.ok(r.text.length > 0, `${kind} ${mac}`);
      assert.doesNotMatch(r.text, /pxeherd\.token=/, 'tokens off: none in the script');
    }
  }
  assert.deepEqual(s.served(s.render('ipxe', '52:54:00:00:00:01')), {});
  assert.deepEqual(s.served(s.render('ipxe', '52:54:00:00:00:02')), { switchedTo: 'local' });
  assert.deepEqual(b.modes, [['52:54:00:00:00:02', 'local']]);
  assert.throws(() => s.render('ipxe', 'zz'), BootError);
});

test('boot mode once over TFTP: a second request for the same config within the grace window gets the same provisioning answer, later ones local', () => {
  const stage1: Vnfs = { name: 'stage1', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '', attrs: {}, createdAt: 0 };
  const n = node({ boot: 'once', vnfs: 'stage1' });
  const b = fakeBackend([n], [stage1]);
  const flip = b.setBootMode;
  b.setBootMode = (mac, mode) => {
    flip(mac, mode);
    n.boot = mode;
  };
  let now = 1_000_000;
  const s = new BootService({ backend: b, templates: new TemplateStore([repoTemplatesDir()]), server: { address: '10.0.0.1', httpPort: 8080 }, autoRegister: true, defaultVnfs: '', onceGraceMs: 60_000, now: () => now });
  const first = s.renderPxelinux(n.mac)!.toString();
  assert.match(first, /KERNEL http/);
  assert.equal(n.boot, 'local');
  now += 5_000;
  assert.equal(s.renderPxelinux(n.mac)!.toString(), first, 'the tsize probe and the transfer get the same file');
  assert.equal(b.modes.length, 1);
  now += 60_000;
  assert.match(s.renderPxelinux(n.mac)!.toString(), /LOCALBOOT 0/);
  // iPXE has no such window: the next script is local at once.
  n.boot = 'once';
  s.served(s.render('ipxe', n.mac));
  assert.match(s.render('ipxe', n.mac).text, /sanboot/);
});
