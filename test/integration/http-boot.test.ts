import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/store/store.js';
import type { BootEvent } from '../../src/nodes/types.js';
import { createHttpApp } from '../../src/http/app.js';
import { bootRouter } from '../../src/http/boot.js';
import { BootService, storeBootBackend, defaultTemplateDirs } from '../../src/boot/service.js';
import { TemplateStore } from '../../src/boot/templates.js';
import { NodeTokens } from '../../src/security/tokens.js';
import { curl, lastOf, listen } from './http-curl.js';

const statedir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-boot-'));
const store = Store.open(statedir);
const events: BootEvent[] = [];
const sink = { record: (e: BootEvent) => void events.push(e) };
const tokens = new NodeTokens({ key: Buffer.alloc(32, 7), ttlSeconds: 3600 });
const policy = { pattern: 'n####', firstNumber: 1, defaultGroup: 'cluster', defaultVnfs: '' };

store.vnfs.put({ name: 'stage1', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: 'console=tty0 console=ttyS0,115200' });
store.vnfs.put({ name: 'centos', kernel: 'vmlinuz-c', initrd: 'initrd-c.img', cmdline: 'root=live:x rd.shell=0' });
store.vnfs.put({ name: 'rocky', kernel: 'vmlinuz-r', initrd: 'initrd-r.img', cmdline: '' });
const add = (mac: string, name: string, extra: Record<string, unknown> = {}) => store.nodes.add({ mac, name, ...extra }, policy);
add('52:54:00:00:01:01', 'plain', { vnfs: 'centos', ip: '10.81.0.21' });
add('52:54:00:00:01:02', 'bygroup', { group: 'gpu', vnfs: 'centos' });
add('52:54:00:00:01:03', 'byvnfs', { vnfs: 'rocky' });
add('52:54:00:00:01:04', 'bynode', { group: 'gpu', vnfs: 'rocky' });
add('52:54:00:00:01:05', 'loc', { boot: 'local' });
add('52:54:00:00:01:06', 'off', { boot: 'disabled' });
add('52:54:00:00:01:07', 'one', { boot: 'once', vnfs: 'centos' });
add('52:54:00:00:01:08', 'dis', { enabled: false });
add('52:54:00:00:01:09', 'novnfs', {});
add('52:54:00:00:01:0a', 'broken', { group: 'broken', vnfs: 'centos' });
add('52:54:00:00:01:0b', 'ghost', { vnfs: 'centos' });
store.nodes.set(['52:54:00:00:01:0b'], 'vnfs', 'gone');
store.nodes.set(['52:54:00:00:01:01'], 'attr.kernel_args', 'quiet ip=dhcp');

// Admin overrides in <statedir>/templates win over the repository's templates.
const over = path.join(statedir, 'templates', 'ipxe');
fs.mkdirSync(path.join(over, 'group'), { recursive: true });
fs.mkdirSync(path.join(over, 'node'), { recursive: true });
fs.mkdirSync(path.join(over, 'vnfs'), { recursive: true });
fs.writeFileSync(path.join(over, 'group', 'gpu.ipxe'), '#!ipxe\n# GROUP-TEMPLATE {{node.name}} {{node.group}}\n');
fs.writeFileSync(path.join(over, 'node', 'bynode.ipxe'), '#!ipxe\n# NODE-TEMPLATE {{node.name}}\n');
fs.writeFileSync(path.join(over, 'vnfs', 'rocky.ipxe'), '#!ipxe\n# VNFS-TEMPLATE {{vnfs.name}} {{vnfs.kernelUrl}}\n');
fs.writeFileSync(path.join(over, 'group', 'broken.ipxe'), '#!ipxe\nkernel {{vnfs.kernelUrl}}\ninitrd {{vnfs.initrdURL}}\n');

function service(autoRegister = true) {
  return new BootService({
    backend: storeBootBackend(store),
    templates: new TemplateStore(defaultTemplateDirs(statedir)),
    server: { address: '10.81.0.1', httpPort: 18110 },
    tokens,
    autoRegister,
    defaultVnfs: '',
    events: sink,
  });
}

const app = createHttpApp({ routers: [bootRouter({ boot: service(), events: sink })] });
const srv = await listen(app, 18110);
const strict = await listen(createHttpApp({ routers: [bootRouter({ boot: service(false), events: sink })] }), 18111);
after(async () => {
  await srv.close();
  await strict.close();
  store.close();
  fs.rmSync(statedir, { recursive: true, force: true });
});

const get = async (p: string, base = srv.base) => {
  const r = await curl(base + p);
  return { status: r.status, text: r.body.toString('utf8'), type: r.headers['content-type'] ?? '' };
};

test('a provisioning node gets an iPXE script with kernel, initrd=<name>, initrd by HTTP URL and boot, using the server address', async () => {
  const r = await get('/boot/52-54-00-00-01-01.ipxe');
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/plain/);
  const lines = r.text.split('\n');
  assert.equal(lines[0], '#!ipxe');
  const kernel = lines.find((l) => l.startsWith('kernel '))!;
  assert.ok(kernel.startsWith('kernel http://10.81.0.1:18110/vnfs/centos/vmlinuz-c?mac=52-54-00-00-01-01 initrd=initrd-c.img root=live:x rd.shell=0 quiet ip=dhcp '), kernel);
  assert.match(kernel, / pxeherd\.url=http:\/\/10\.81\.0\.1:18110\/provision\/init /);
  assert.match(kernel, / pxeherd\.mac=52-54-00-00-01-01 /);
  assert.ok(!kernel.includes('&#x3D;') && !kernel.includes('&amp;'), 'no HTML escaping in the command line');
  assert.ok(lines.includes('initrd --name initrd-c.img http://10.81.0.1:18110/vnfs/centos/initrd-c.img?mac=52-54-00-00-01-01'));
  assert.equal(lines.filter((l) => l.trim() !== '').at(-1), 'boot');
  // The token in the command line is valid for this MAC only.
  const token = /pxeherd\.token=(\S+)/.exec(kernel)![1]!;
  assert.equal(tokens.verifyToken('52:54:00:00:01:01', token).ok, true);
  assert.equal(tokens.verifyToken('52:54:00:00:01:02', token).ok, false);
  const ev = lastOf(events, (e) => e.kind === 'http.ipxe' && e.mac === '52:54:00:00:01:01')!;
  assert.equal(ev.node, 'plain');
  assert.equal(ev.detail?.mode, 'provision');
  assert.equal(ev.detail?.template, 'ipxe/default.ipxe');
});

test('template precedence is node > group > vnfs > default, admin directory first', async () => {
  assert.match((await get('/boot/52:54:00:00:01:04.ipxe')).text, /NODE-TEMPLATE bynode/);
  assert.match((await get('/boot/52:54:00:00:01:02.ipxe')).text, /GROUP-TEMPLATE bygroup gpu/);
  assert.match((await get('/boot/525400000103.ipxe')).text, /VNFS-TEMPLATE rocky http:\/\/10\.81\.0\.1:18110\/vnfs\/rocky\/vmlinuz-r\?mac=52-54-00-00-01-03/);
  assert.match((await get('/boot/52-54-00-00-01-01.ipxe')).text, /^#!ipxe\n# pxeherd: plain/);
  // An admin copy of default.ipxe replaces the repository's for everyone without a more specific one.
  fs.writeFileSync(path.join(over, 'default.ipxe'), '#!ipxe\n# ADMIN-DEFAULT {{node.name}}\n');
  try {
    assert.match((await get('/boot/52-54-00-00-01-01.ipxe')).text, /ADMIN-DEFAULT plain/);
    assert.match((await get('/boot/52:54:00:00:01:04.ipxe')).text, /NODE-TEMPLATE bynode/);
  } finally {
    fs.rmSync(path.join(over, 'default.ipxe'));
  }
  assert.match((await get('/boot/52-54-00-00-01-01.ipxe')).text, /# pxeherd: plain/);
});

test('boot mode local exits to the next boot device with a sanboot fallback', async () => {
  const r = await get('/boot/52:54:00:00:01:05.ipxe');
  assert.equal(r.status, 200);
  assert.match(r.text, /^#!ipxe\n/);
  assert.match(r.text, /^iseq \${platform} efi && exit 1 \|\|$/m, "UEFI: an error exit, so the firmware tries its next entry");
  assert.match(r.text, /sanboot --no-describe --drive 0x80/);
  assert.doesNotMatch(r.text, /^kernel /m);
  assert.equal(lastOf(events, (e) => e.kind === 'http.ipxe' && e.node === 'loc')?.detail?.mode, 'local');
});

test('boot mode disabled and a disabled node get a script that says why and does not boot', async () => {
  const off = await get('/boot/52:54:00:00:01:06.ipxe');
  assert.equal(off.status, 200);
  assert.match(off.text, /node off .* does not boot: boot mode is "disabled"/);
  assert.doesNotMatch(off.text, /^(kernel|boot|sanboot|exit)/m);
  const dis = await get('/boot/52:54:00:00:01:08.ipxe');
  assert.match(dis.text, /does not boot: node is disabled \(pxeherd node enable dis\)/);
  assert.doesNotMatch(dis.text, /^(kernel|boot|sanboot|exit)/m);
});

test('boot mode once provisions on the first script and switches the node to local', async () => {
  const first = await get('/boot/52:54:00:00:01:07.ipxe');
  assert.match(first.text, /^kernel http:\/\/10\.81\.0\.1:18110\/vnfs\/centos\/vmlinuz-c/m);
  assert.equal(store.nodes.byMac('52:54:00:00:01:07')!.boot, 'local');
  assert.equal(lastOf(events, (e) => e.kind === 'http.ipxe' && e.node === 'one')?.detail?.switchedTo, 'local');
  const second = await get('/boot/52:54:00:00:01:07.ipxe');
  assert.match(second.text, /sanboot --no-describe/);
  assert.doesNotMatch(second.text, /^kernel /m);
});

test('a node without a VNFS boots the stage-one image', async () => {
  const r = await get('/boot/52:54:00:00:01:09.ipxe');
  assert.match(r.text, /^kernel http:\/\/10\.81\.0\.1:18110\/vnfs\/stage1\/vmlinuz\?mac=52-54-00-00-01-09 initrd=initrd.img console=tty0 console=ttyS0,115200 /m);
});

test('an unknown MAC gets the discovery script (stage one with a token); with auto_register off, the unknown script', async () => {
  const r = await get('/boot/de-ad-be-ef-00-01.ipxe');
  assert.equal(r.status, 200);
  assert.match(r.text, /unknown machine de:ad:be:ef:00:01/);
  const kernel = r.text.split('\n').find((l) => l.startsWith('kernel '))!;
  assert.ok(kernel.startsWith('kernel http://10.81.0.1:18110/vnfs/stage1/vmlinuz?mac=de-ad-be-ef-00-01 initrd=initrd.img '), kernel);
  assert.equal(tokens.verifyToken('de:ad:be:ef:00:01', /pxeherd\.token=(\S+)/.exec(kernel)![1]!).ok, true);
  assert.equal(lastOf(events, (e) => e.kind === 'http.ipxe' && e.mac === 'de:ad:be:ef:00:01')?.detail?.mode, 'discovery');
  const u = await get('/boot/de-ad-be-ef-00-01.ipxe', strict.base);
  assert.equal(u.status, 200);
  assert.match(u.text, /auto_register is off/);
  assert.doesNotMatch(u.text, /^kernel /m);
});

test('a template error is a 500 naming the template, the node and the missing value, with an http.error event', async () => {
  const r = await get('/boot/52:54:00:00:01:0a.ipxe');
  assert.equal(r.status, 500);
  assert.match(r.text, /template ipxe\/group\/broken\.ipxe line 3: \{\{vnfs\.initrdURL\}\} is not defined/);
  assert.match(r.text, /node broken \(52:54:00:00:01:0a\)/);
  const ev = lastOf(events, (e) => e.kind === 'http.error' && e.node === 'broken')!;
  assert.equal(ev.detail?.status, 500);
  assert.equal(ev.detail?.template, 'ipxe/group/broken.ipxe');
});

test('a node whose VNFS does not exist gets a 500 that says which and how to add it', async () => {
  const r = await get('/boot/52:54:00:00:01:0b.ipxe');
  assert.equal(r.status, 500);
  assert.match(r.text, /node ghost .* boots VNFS "gone", which does not exist: add it with "pxeherd vnfs add gone/);
});

test('/boot.ipxe?mac= serves the same script; without mac it chains to the MAC-specific URL', async () => {
  const r = await get('/boot.ipxe?mac=52:54:00:00:01:01');
  assert.match(r.text, /^kernel http:\/\/10\.81\.0\.1:18110\/vnfs\/centos\/vmlinuz-c/m);
  const c = await get('/boot.ipxe');
  assert.equal(c.text, '#!ipxe\nchain /boot/${net0/mac:hexhyp}.ipxe\n');
});

test('a malformed MAC is a 400 with the reason; a non-.ipxe name is a 404', async () => {
  const r = await get('/boot/not-a-mac.ipxe');
  assert.equal(r.status, 400);
  assert.match(r.text, /invalid MAC address "not-a-mac"/);
  assert.equal((await get('/boot/52-54-00-00-01-01.sh')).status, 404);
  assert.equal((await get('/boot/%zz.ipxe')).status, 400);
});

test('renderBootScript, renderPxelinux and renderGrub share the lookup; dry runs do not flip boot mode once', async () => {
  const s = service();
  const ipxe = s.renderBootScript('52:54:00:00:01:01');
  assert.equal(ipxe.template, 'ipxe/default.ipxe');
  assert.equal(ipxe.mode, 'provision');
  const px = s.renderPxelinux('52:54:00:00:01:01')!.toString();
  assert.match(px, /KERNEL http:\/\/10\.81\.0\.1:18110\/vnfs\/centos\/vmlinuz-c\?mac=52-54-00-00-01-01/);
  assert.match(px, /APPEND initrd=http:\/\/10\.81\.0\.1:18110\/vnfs\/centos\/initrd-c\.img\?mac=52-54-00-00-01-01 root=live:x/);
  const pxDefault = s.renderPxelinux(undefined)!.toString();
  assert.match(pxDefault, /KERNEL http:\/\/10\.81\.0\.1:18110\/vnfs\/stage1\/vmlinuz\n/);
  assert.doesNotMatch(pxDefault, /pxeherd\.token=/, 'no MAC, no token');
  const grub = s.renderGrub('52:54:00:00:01:01')!.toString();
  assert.match(grub, /set pxeherd_kernel="\(http,10\.81\.0\.1:18110\)\/vnfs\/centos\/vmlinuz-c\?mac=52-54-00-00-01-01"/);
  assert.match(grub, /set pxeherd_kernel="\(tftp,10\.81\.0\.1\)\/vnfs\/centos\/vmlinuz-c"/, 'by TFTP under Secure Boot');
  assert.match(grub, /linux "\$\{pxeherd_kernel\}" root=live:x/);
  assert.match(s.renderGrub('52:54:00:00:01:05')!.toString(), /exit/);
  store.nodes.set(['52:54:00:00:01:07'], 'boot', 'once');
  s.renderPxelinux('52:54:00:00:01:07', { dryRun: true });
  assert.equal(store.nodes.byMac('52:54:00:00:01:07')!.boot, 'once');
  s.renderPxelinux('52:54:00:00:01:07');
  assert.equal(store.nodes.byMac('52:54:00:00:01:07')!.boot, 'local');
  // A broken template declines (undefined) and records boot.error.
  assert.equal(s.renderGrub('52:54:00:00:01:0b'), undefined);
  assert.equal(lastOf(events, (e) => e.kind === 'boot.error')?.node, 'ghost');
});

test('bootParts builds the routers, token hooks and TFTP generator from the configuration (key file under statedir)', async () => {
  const { configSchema } = await import('../../src/config/schema.js');
  const { bootParts } = await import('../../src/boot/wiring.js');
  const config = configSchema.parse({ statedir, http: { port: 18112 }, security: { token_ttl_seconds: 300 } });
  fs.mkdirSync(path.join(statedir, 'tftproot'), { recursive: true });
  fs.writeFileSync(path.join(statedir, 'tftproot', 'ipxe.efi'), 'EFI');
  fs.mkdirSync(path.join(statedir, 'vnfs', 'centos'), { recursive: true });
  fs.writeFileSync(path.join(statedir, 'vnfs', 'centos', 'vmlinuz-c'), 'KERNEL');
  const parts = bootParts({ config, store, serverAddress: '10.81.0.1', events: sink });
  assert.equal(fs.statSync(path.join(statedir, 'node-token.key')).mode & 0o777, 0o600);
  const s = await listen(createHttpApp({ routers: parts.routers }), 18112);
  try {
    const script = (await get('/boot/52-54-00-00-01-01.ipxe', s.base)).text;
    assert.match(script, /^kernel http:\/\/10\.81\.0\.1:18112\/vnfs\/centos\/vmlinuz-c/m);
    const token = /pxeherd\.token=(\S+)/.exec(script)![1]!;
    assert.equal(parts.tokens.verifyToken('52:54:00:00:01:01', token).ok, true);
    assert.equal((await get('/tftp/ipxe.efi', s.base)).text, 'EFI');
    assert.equal((await get('/vnfs/centos/vmlinuz-c?mac=52-54-00-00-01-01', s.base)).text, 'KERNEL');
    const px = await parts.tftpGenerate({ kind: 'pxelinux', mac: '52:54:00:00:01:01' });
    assert.match(px!.toString(), /KERNEL http:\/\/10\.81\.0\.1:18112\/vnfs\/centos\/vmlinuz-c/);
    // The provision hooks refuse a known node without a token.
    const denied = parts.authorize(store.nodes.byMac('52:54:00:00:01:01')!, { query: {}, socket: { remoteAddress: '10.81.0.21' } }, { registered: false, state: 'init' });
    assert.equal(denied.ok, false);
    const ok = parts.provisiondAuthorize(store.nodes.byMac('52:54:00:00:01:01')!, { params: { token }, ip: '10.81.0.21', registered: false, state: 'init' });
    assert.deepEqual(ok, { ok: true });
  } finally {
    await s.close();
  }
});
