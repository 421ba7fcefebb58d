/**
 * The boot loader chains (attribute boot_loader) and CPU architectures of issue 20, without
 * sockets: which file each firmware is offered, which configuration each loader reads, and
 * that a node never gets a kernel of another CPU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decideBoot, type BootContext } from '../../src/dhcp/boot.js';
import { bootLoaderOf, ClientArchs, cpuOfClientArch, discoveryVnfsFor, nodeArch, parseCpuArch, vnfsArch, BOOT_LOADERS } from '../../src/boot/loader.js';
import { BootService, BootError, repoTemplatesDir, type BootBackend } from '../../src/boot/service.js';
import { TemplateStore } from '../../src/boot/templates.js';
import { httpGrubEmbeddedConfig, buildHttpGrub } from '../../src/boot/grub-image.js';
import { installChainLoaders, DEBIAN_CHAIN_LOADERS } from '../../src/tftp/loaders.js';
import { parseGeneratedName } from '../../src/tftp/generated.js';
import type { Node, Vnfs, BootMode } from '../../src/nodes/types.js';

const ctx: BootContext = {
  mac: '52:54:00:12:34:56',
  serverAddress: '10.0.0.1',
  httpPort: 8080,
  bootFiles: { bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' },
};
const pxe = (arch: number) => ({ arch, vendorClass: `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:003016`, ipxe: false });
const httpClient = (arch: number) => ({ arch, vendorClass: `HTTPClient:Arch:${String(arch).padStart(5, '0')}:UNDI:003001`, ipxe: false });

test('boot_loader: default ipxe, the four chains accepted, anything else named in the error', () => {
  assert.deepEqual(bootLoaderOf({}), { loader: 'ipxe' });
  for (const l of BOOT_LOADERS) assert.equal(bootLoaderOf({ boot_loader: l }).loader, l);
  const bad = bootLoaderOf({ boot_loader: 'lilo' });
  assert.equal(bad.loader, 'ipxe');
  assert.match(bad.error!, /boot_loader="lilo" is not a boot loader: use one of ipxe, pxelinux, grub, shim-grub/);
});

test('each chain and firmware gets its loader file: pxelinux on BIOS, GRUB on UEFI, shim for Secure Boot', () => {
  const f = (loader: (typeof BOOT_LOADERS)[number], c: ReturnType<typeof pxe>) => decideBoot(c, { ...ctx, loader }).bootFile;
  assert.equal(f('ipxe', pxe(0)), 'undionly.kpxe');
  assert.equal(f('ipxe', pxe(7)), 'ipxe.efi');
  assert.equal(f('pxelinux', pxe(0)), 'lpxelinux.0');
  assert.equal(f('pxelinux', pxe(7)), 'grubx64.efi', 'pxelinux has no UEFI network loader: GRUB reads the same node');
  assert.equal(f('grub', pxe(7)), 'grubx64.efi');
  assert.equal(f('grub', pxe(9)), 'grubx64.efi');
  assert.equal(f('grub', pxe(0)), 'lpxelinux.0', 'BIOS of a grub node gets pxelinux');
  assert.equal(f('grub', pxe(11)), 'grubaa64.efi');
  assert.equal(f('shim-grub', pxe(7)), 'shimx64.efi');
  assert.equal(f('shim-grub', pxe(11)), 'shimaa64.efi');
  assert.equal(f('ipxe', pxe(11)), 'grubaa64.efi', 'no arm64 iPXE configured: arm64 gets GRUB');
  assert.equal(decideBoot(pxe(11), { ...ctx, bootFiles: { ...ctx.bootFiles, uefi_arm64: 'arm64/ipxe.efi' } }).bootFile, 'arm64/ipxe.efi');
});

test('unsigned iPXE is never offered to a shim-grub node, whatever the firmware says', () => {
  for (const c of [pxe(7), pxe(9), pxe(11), pxe(0), httpClient(16), httpClient(19), { ...pxe(7), ipxe: true }]) {
    const d = decideBoot(c, { ...ctx, loader: 'shim-grub' });
    assert.ok(!/ipxe|kpxe/i.test(d.bootFile ?? ''), `arch ${c.arch}${c.ipxe ? ' (iPXE ROM)' : ''}: ${d.bootFile}`);
  }
  const h = decideBoot(httpClient(16), { ...ctx, loader: 'shim-grub' });
  assert.equal(h.kind, 'none');
  assert.match(h.reasons.join(' '), /signed GRUB has no HTTP client.*must PXE boot/);
});

test('UEFI HTTP boot: iPXE EFI for ipxe nodes, the HTTP GRUB for grub and pxelinux nodes, with option 60 HTTPClient', () => {
  const i = decideBoot(httpClient(16), ctx);
  assert.deepEqual([i.kind, i.bootFile, i.replyVendorClass], ['uefi-http', 'http://10.0.0.1:8080/tftp/ipxe.efi', 'HTTPClient']);
  const g = decideBoot(httpClient(16), { ...ctx, loader: 'grub' });
  assert.equal(g.bootFile, 'http://10.0.0.1:8080/tftp/grubx64-http.efi');
  assert.equal(decideBoot(httpClient(16), { ...ctx, loader: 'pxelinux' }).bootFile, 'http://10.0.0.1:8080/tftp/grubx64-http.efi');
  assert.equal(decideBoot(httpClient(19), { ...ctx, loader: 'grub' }).bootFile, 'http://10.0.0.1:8080/tftp/grubaa64-http.efi');
});

test('an iPXE NIC ROM in front of a pxelinux or GRUB node chainloads that loader; an ipxe node still gets its script', () => {
  const rom = { arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001', ipxe: true };
  const d = decideBoot(rom, { ...ctx, loader: 'pxelinux' });
  assert.deepEqual([d.kind, d.bootFile], ['bios', 'lpxelinux.0']);
  assert.match(d.reasons[0]!, /iPXE chainloads that loader/);
  assert.equal(decideBoot({ ...rom, arch: 7 }, { ...ctx, loader: 'grub' }).bootFile, 'grubx64.efi');
  assert.equal(decideBoot(rom, ctx).kind, 'ipxe-script');
});

test('CPU architectures: from option 93, from attributes in their usual spellings, per-CPU discovery images', () => {
  assert.equal(cpuOfClientArch(11), 'arm64');
  assert.equal(cpuOfClientArch(19), 'arm64');
  assert.equal(cpuOfClientArch(7), 'x86_64');
  assert.equal(cpuOfClientArch(0), 'x86_64');
  assert.equal(cpuOfClientArch(2), undefined);
  assert.equal(parseCpuArch('aarch64'), 'arm64');
  assert.equal(parseCpuArch('amd64'), 'x86_64');
  assert.equal(parseCpuArch('mips'), undefined);
  assert.deepEqual(nodeArch({ arch: 'arm64' }, 'x86_64'), { arch: 'arm64', source: 'attribute' });
  assert.deepEqual(nodeArch({}, 'arm64'), { arch: 'arm64', source: 'dhcp' });
  assert.deepEqual(nodeArch({}, undefined), { arch: 'x86_64', source: 'default' });
  assert.equal(vnfsArch({ attrs: {} }), 'x86_64');
  assert.equal(vnfsArch({ attrs: { arch: 'arm64' } }), 'arm64');
  assert.equal(discoveryVnfsFor('stage1', 'x86_64'), 'stage1');
  assert.equal(discoveryVnfsFor('stage1', 'arm64'), 'stage1-arm64');
  const seen = new ClientArchs();
  seen.note('52:54:00:00:00:01', 11);
  seen.note('52:54:00:00:00:02', 99);
  assert.equal(seen.get('52:54:00:00:00:01'), 'arm64');
  assert.equal(seen.get('52:54:00:00:00:02'), undefined);
});

function node(over: Partial<Node> = {}): Node {
  return { mac: '52:54:00:00:00:01', name: 'n1', group: 'g', vnfs: '', enabled: true, debug: false, state: '', ip: '', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0, ...over };
}
const vnfs = (name: string, arch?: string): Vnfs => ({ name, kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '', attrs: arch ? { arch } : {}, createdAt: 0 });

function service(nodes: Node[], images: Vnfs[], archs = new ClientArchs()): BootService {
  const backend: BootBackend = {
    nodeByMac: (m) => nodes.find((n) => n.mac === m),
    attrsFor: (n) => n.attrs,
    vnfs: (name) => images.find((v) => v.name === name),
    setBootMode: (mac: string, mode: BootMode) => {
      const n = nodes.find((x) => x.mac === mac);
      if (n) n.boot = mode;
    },
    clientArch: (m) => archs.get(m),
  };
  return new BootService({ backend, templates: new TemplateStore([repoTemplatesDir()]), server: { address: '10.0.0.1', httpPort: 8080 }, autoRegister: true, defaultVnfs: '' });
}

test('a node is never given a kernel of another CPU: the error says which CPU, from where, and what to do', () => {
  const archs = new ClientArchs();
  archs.note('52:54:00:00:00:01', 11);
  const s = service([node({ vnfs: 'rocky' })], [vnfs('rocky')], archs);
  assert.throws(
    () => s.render('grub', '52:54:00:00:00:01'),
    (e: Error) => e instanceof BootError && /node n1 \(52:54:00:00:00:01\) is arm64 \(its firmware said so in DHCP option 93\) but VNFS "rocky" holds a x86_64 kernel/.test(e.message) && /pxeherd node set vnfs NAME n1/.test(e.message),
  );
  // The same refusal from the attribute, and for the iPXE script of an arm64 iPXE.
  const t = service([node({ vnfs: 'rocky', attrs: { arch: 'arm64' } })], [vnfs('rocky')]);
  assert.throws(() => t.render('ipxe', '52:54:00:00:00:01'), /is arm64 \(its attribute arch\)/);
  // An arm64 VNFS for an x86_64 machine is refused the same way.
  const u = service([node({ vnfs: 'ubuntu-arm' })], [vnfs('ubuntu-arm', 'arm64')]);
  assert.throws(() => u.render('pxelinux', '52:54:00:00:00:01'), /is x86_64 \(the default\) but VNFS "ubuntu-arm" holds a arm64 kernel/);
});

test('an unknown arm64 machine boots the arm64 discovery image; without one the error says how to build it', () => {
  const archs = new ClientArchs();
  archs.note('52:54:00:00:00:09', 11);
  const s = service([], [vnfs('stage1', 'x86_64'), vnfs('stage1-arm64', 'arm64')], archs);
  const r = s.render('grub', '52:54:00:00:00:09');
  assert.equal(r.vnfs, 'stage1-arm64');
  assert.match(r.text, /\/vnfs\/stage1-arm64\/vmlinuz/);
  assert.equal(s.render('grub', '52:54:00:00:00:08').vnfs, 'stage1', 'an x86_64 one gets stage1');
  const t = service([], [vnfs('stage1')], archs);
  assert.throws(() => t.render('grub', '52:54:00:00:00:09'), /VNFS "stage1-arm64", which does not exist: build it with "pxeherd stage1 build --arch arm64"/);
});

test('generated GRUB and pxelinux configs for every boot mode: provision and once load over HTTP (TFTP under lockdown), local leaves, disabled says why, discovery boots stage one', () => {
  const nodes = [
    node({ mac: '52:54:00:00:00:01', name: 'prov', vnfs: 'stage1' }),
    node({ mac: '52:54:00:00:00:02', name: 'onc', vnfs: 'stage1', boot: 'once' }),
    node({ mac: '52:54:00:00:00:03', name: 'loc', boot: 'local' }),
    node({ mac: '52:54:00:00:00:04', name: 'dis', boot: 'disabled' }),
  ];
  const s = service(nodes, [vnfs('stage1')]);
  const grub = (mac: string) => s.render('grub', mac).text;
  const pxl = (mac: string) => s.render('pxelinux', mac).text;
  for (const mac of ['52:54:00:00:00:01', '52:54:00:00:00:02']) {
    assert.match(grub(mac), /if \[ "\$lockdown" != "y" \]; then\n\s+if insmod http; then set pxeherd_http=y; fi/);
    assert.match(grub(mac), /set pxeherd_kernel="\(http,10\.0\.0\.1:8080\)\/vnfs\/stage1\/vmlinuz\?mac=52-54-00-00-00-0\d"/);
    assert.match(grub(mac), /set pxeherd_kernel="\(tftp,10\.0\.0\.1\)\/vnfs\/stage1\/vmlinuz"/);
    assert.match(grub(mac), /linux "\$\{pxeherd_kernel\}" console=ttyS0|linux "\$\{pxeherd_kernel\}" .*pxeherd\.mac=52-54-00-00-00-0\d/);
    assert.match(pxl(mac), /KERNEL http:\/\/10\.0\.0\.1:8080\/vnfs\/stage1\/vmlinuz\?mac=/);
    assert.match(pxl(mac), /APPEND initrd=http:\/\/10\.0\.0\.1:8080\/vnfs\/stage1\/initrd\.img\?mac=\S+ .*pxeherd\.url=/);
    assert.match(pxl(mac), /^SERIAL 0 115200$/m);
  }
  assert.equal(s.render('grub', '52:54:00:00:00:02').mode, 'once');
  assert.match(grub('52:54:00:00:00:03'), /menuentry "local disk" \{\n[^}]*chainloader \(\$pxeherd_esp\)\$pxeherd_efi[^}]*\n  exit\n\}/);
  assert.match(pxl('52:54:00:00:00:03'), /LOCALBOOT 0/);
  assert.match(grub('52:54:00:00:00:04'), /^echo 'pxeherd: node dis \(52:54:00:00:00:04\) does not boot: boot mode is "disabled" [^']*'$/m, 'single quotes: GRUB would eat the reason\'s double quotes');
  assert.doesNotMatch(grub('52:54:00:00:00:04'), /linux /);
  assert.match(pxl('52:54:00:00:00:04'), /SAY pxeherd: node dis .*does not boot/);
  assert.doesNotMatch(pxl('52:54:00:00:00:04'), /KERNEL/);
  const disc = s.render('grub', '52:54:00:00:00:77');
  assert.equal(disc.mode, 'discovery');
  assert.match(disc.text, /\/vnfs\/stage1\/vmlinuz\?mac=52-54-00-00-00-77/);
  // once flips to local when served, also through GRUB's TFTP config
  s.served(s.render('grub', '52:54:00:00:00:02'));
  assert.equal(nodes[1]!.boot, 'local');
});

test("GRUB's names: Debian's /grub/grub.cfg (no MAC), grub.cfg-01-<mac> and GRUB's own colon spelling are generated", () => {
  assert.deepEqual(parseGeneratedName('grub/grub.cfg'), { kind: 'grub' });
  assert.deepEqual(parseGeneratedName('grub/grub.cfg-52:54:00:f0:00:07'), { kind: 'grub', mac: '52:54:00:f0:00:07' });
  assert.deepEqual(parseGeneratedName('grub.cfg-01-52-54-00-f0-00-07'), { kind: 'grub', mac: '52:54:00:f0:00:07' });
  assert.equal(parseGeneratedName('grub/x86_64-efi/http.mod'), undefined);
});

test('the HTTP boot GRUB: its embedded configuration asks DHCP, then reads its per-MAC config over HTTP; no comments or quotes (rescue parser)', () => {
  const cfg = httpGrubEmbeddedConfig({ address: '10.0.0.1', httpPort: 8080 });
  assert.match(cfg, /^net_bootp$/m);
  assert.match(cfg, /^configfile \/tftp\/grub\/grub\.cfg-\$\{net_default_mac\}$/m);
  assert.match(cfg, /^set root=\(http,10\.0\.0\.1:8080\)$/m);
  assert.doesNotMatch(cfg, /#|"/);
});

test('the HTTP boot GRUB is built with grub-mkimage from Debian\'s modules once per server address, never over an admin\'s file', { skip: !fs.existsSync('/usr/lib/grub/x86_64-efi/http.mod') && 'needs grub-efi-amd64-bin' }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'phgrub-'));
  try {
    const a = buildHttpGrub(root, { address: '10.0.0.1', httpPort: 8080 });
    assert.ok(a.ok && a.built);
    const img = fs.readFileSync(path.join(root, 'grubx64-http.efi'));
    assert.equal(img.subarray(0, 2).toString(), 'MZ', 'a PE/COFF EFI image');
    const b = buildHttpGrub(root, { address: '10.0.0.1', httpPort: 8080 });
    assert.ok(b.ok && !b.built, 'same address: kept');
    const c = buildHttpGrub(root, { address: '10.0.0.2', httpPort: 8080 });
    assert.ok(c.ok && c.built, 'another address: rebuilt');
    fs.rmSync(path.join(root, 'grubx64-http.efi.pxeherd.cfg'));
    fs.writeFileSync(path.join(root, 'grubx64-http.efi'), 'admin');
    const d = buildHttpGrub(root, { address: '10.0.0.3', httpPort: 8080 });
    assert.ok(d.ok && !d.built);
    assert.equal(fs.readFileSync(path.join(root, 'grubx64-http.efi'), 'utf8'), 'admin');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("chain loaders are copied from Debian's package paths (into subdirectories too), the missing ones named with their package", async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'phchain-'));
  try {
    fs.writeFileSync(path.join(base, 'lpx'), 'lpxelinux');
    fs.writeFileSync(path.join(base, 'http'), 'httpmod');
    const lines: string[] = [];
    const log = { info: (_o: object, m?: string) => lines.push(m ?? ''), warn: (_o: object, m?: string) => lines.push(`WARN ${m}`) };
    const root = path.join(base, 'root');
    const r = await installChainLoaders(root, log, [
      { name: 'lpxelinux.0', src: path.join(base, 'lpx'), pkg: 'pxelinux' },
      { name: 'grub/x86_64-efi/http.mod', src: path.join(base, 'http'), pkg: 'grub-efi-amd64-bin' },
      { name: 'shimx64.efi', src: path.join(base, 'nope'), pkg: 'shim-signed' },
    ]);
    assert.deepEqual(r, { present: ['lpxelinux.0', 'grub/x86_64-efi/http.mod'], copied: ['lpxelinux.0', 'grub/x86_64-efi/http.mod'], missing: ['shimx64.efi'] });
    assert.equal(fs.readFileSync(path.join(root, 'grub/x86_64-efi/http.mod'), 'utf8'), 'httpmod');
    assert.ok(lines.some((l) => l.startsWith('WARN') && l.includes('shimx64.efi') && l.includes('"shim-signed"')));
    assert.deepEqual(
      DEBIAN_CHAIN_LOADERS.map((l) => l.name),
      ['lpxelinux.0', 'ldlinux.c32', 'grubx64.efi', 'grub/x86_64-efi/http.mod', 'shimx64.efi', 'grubaa64.efi'],
    );
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});
