import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildStage1 } from '../../src/stage1/build.js';
import { defaultCacheDir, Stage1Error } from '../../src/stage1/debs.js';
import { defaultTemplateDirs } from '../../src/boot/service.js';

/*
 * One real boot of the stage-one image under QEMU (TCG, ~30 s), in network namespace
 * phhttp0 (10.81.0.0/24): dnsmasq answers DHCP, the lab server serves the iPXE script,
 * the VNFS files and /provision with node tokens. The kernel and initrd are fetched from
 * the VNFS URLs in the iPXE script and booted with its command line (-kernel/-initrd),
 * so the discovery path is tested end to end except for iPXE itself.
 */
const NS = 'phhttp0';
const ADDR = '10.81.0.1';
const PORT = 18160;
const MAC = '52:54:00:81:00:10';
const here = path.dirname(fileURLToPath(import.meta.url));

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
function sh(cmd: string): { ok: boolean; out: string } {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

let skip: string | false = false;
if (process.getuid?.() !== 0) skip = 'needs root (network namespace, tap device)';
else if (!have('qemu-system-x86_64')) skip = 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)';
else if (!have('dnsmasq')) skip = 'dnsmasq not installed (apt-get install dnsmasq)';
else if (process.env.PXEHERD_SKIP_QEMU) skip = 'PXEHERD_SKIP_QEMU is set';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-stage1-boot-'));
const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.pid) p.kill('SIGKILL');
  sh(`ip netns del ${NS} 2>/dev/null`);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const events: Record<string, unknown>[] = [];
let built: ReturnType<typeof buildStage1> | undefined;
let labUp = false;

/** Build the image, make the namespace, start dnsmasq and the lab server (once). */
async function lab(): Promise<string | undefined> {
  if (labUp) return undefined;
  try {
    built = buildStage1({ outDir: path.join(tmp, 'build'), cacheDir: process.env.PXEHERD_CACHE ?? defaultCacheDir(), templatesDirs: defaultTemplateDirs(tmp) });
  } catch (e) {
    if (e instanceof Stage1Error && /cannot (download|find)/.test(e.message)) return `apt could not get the packages: ${e.message}`;
    throw e;
  }
  const statedir = path.join(tmp, 'state');
  const vdir = path.join(statedir, 'vnfs', 'stage1');
  fs.mkdirSync(vdir, { recursive: true });
  fs.copyFileSync(built.kernel, path.join(vdir, 'vmlinuz'));
  fs.copyFileSync(built.initrd, path.join(vdir, 'initrd.img'));
  fs.writeFileSync(path.join(vdir, 'vnfs.json'), JSON.stringify({ name: 'stage1', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: built.cmdline }));

  sh(`ip netns del ${NS} 2>/dev/null`);
  for (const c of [
    `ip netns add ${NS}`,
    `ip -n ${NS} link set lo up`,
    `ip -n ${NS} link add br0 type bridge stp_state 0 forward_delay 0`,
    `ip -n ${NS} addr add ${ADDR}/24 dev br0`,
    `ip -n ${NS} link set br0 up`,
    `ip -n ${NS} tuntap add tap0 mode tap`,
    `ip -n ${NS} link set tap0 master br0`,
    `ip -n ${NS} link set tap0 up`,
  ]) {
    const r = sh(c);
    assert.ok(r.ok, `${c}: ${r.out}`);
  }
  // iPXE (user class "iPXE", option 175) is sent the generic boot script URL; 175.176=1 skips its ProxyDHCP wait.
  const dns = spawn('ip', ['netns', 'exec', NS, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--port=0', '--interface=br0', '--bind-interfaces',
    '--dhcp-range=10.81.0.100,10.81.0.150,255.255.255.0,1h', `--dhcp-leasefile=${path.join(tmp, 'leases')}`, '--pid-file=',
    '--dhcp-match=set:ipxe,175', `--dhcp-boot=tag:ipxe,http://${ADDR}:${PORT}/boot.ipxe`, '--dhcp-option=encap:175,176,1'], { stdio: 'ignore' });
  procs.push(dns);

  const srv = spawn('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', path.join(here, 'stage1-lab-server.ts'), ADDR, String(PORT), statedir], { cwd: path.join(here, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(srv);
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const to = setTimeout(() => reject(new Error('lab server did not start')), 30_000);
    srv.stdout!.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'LISTENING') {
          clearTimeout(to);
          resolve();
        } else if (line.startsWith('{')) events.push(JSON.parse(line));
      }
    });
    srv.once('exit', (c) => reject(new Error(`lab server exited ${c}`)));
  });
  labUp = true;
  return undefined;
}

/** Run QEMU in the namespace until it powers off (or 180 s); the serial console text. */
async function boot(args: string[]): Promise<{ code: number | null; serial: string; seconds: number }> {
  const log = path.join(tmp, `serial-${Date.now()}.log`);
  const t0 = Date.now();
  const q = spawn('ip', ['netns', 'exec', NS, 'qemu-system-x86_64', '-machine', 'pc', '-accel', 'tcg', '-m', '512', '-display', 'none', '-monitor', 'none',
    '-serial', `file:${log}`, '-no-reboot', '-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no', ...args], { stdio: 'ignore' });
  procs.push(q);
  const code = await new Promise<number | null>((resolve) => {
    const to = setTimeout(() => {
      q.kill('SIGKILL');
      resolve(null);
    }, 180_000);
    q.once('exit', (c) => {
      clearTimeout(to);
      resolve(c);
    });
  });
  return { code, serial: fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '', seconds: (Date.now() - t0) / 1000 };
}

const kinds = (mac: string) =>
  events.filter((e) => e.mac === mac).map((e) => `${e.kind}${e.detail && (e.detail as { state?: string }).state ? ':' + (e.detail as { state: string }).state : ''}`);

test('the stage-one image boots in QEMU, registers the unknown machine through provision init with its token, prints PXEHERD-RESULT rc=0 and checks in as ready', { skip, timeout: 240_000 }, async (t) => {
  const why = await lab();
  if (why) return t.skip(why);

  // What iPXE would do: get the script, then the kernel and initrd from its URLs.
  const hyp = MAC.replace(/:/g, '-');
  const script = sh(`ip netns exec ${NS} curl -sf http://${ADDR}:${PORT}/boot/${hyp}.ipxe`);
  assert.ok(script.ok, script.out);
  const kline = script.out.split('\n').find((l) => l.startsWith('kernel '))!;
  const iline = script.out.split('\n').find((l) => l.startsWith('initrd '))!;
  const [, kurl, ...args] = kline.split(' ');
  const iurl = iline.split(' ').at(-1)!;
  const k = path.join(tmp, 'k');
  const i = path.join(tmp, 'i');
  assert.ok(sh(`ip netns exec ${NS} curl -sf -o ${k} '${kurl}' && ip netns exec ${NS} curl -sf -o ${i} '${iurl}'`).ok);
  assert.ok(fs.readFileSync(i).equals(fs.readFileSync(built!.initrd)));
  const append = [...args.filter((a) => !a.startsWith('initrd=')), 'pxeherd.final=poweroff'].join(' ');
  assert.match(append, /pxeherd\.token=\S+/);

  const { code, serial, seconds } = await boot(['-device', `e1000,netdev=n0,mac=${MAC},romfile=`, '-kernel', k, '-initrd', i, '-append', append]);
  t.diagnostic(`direct kernel boot to power-off: ${seconds.toFixed(1)} s`);
  assert.notEqual(code, null, `QEMU did not power off within 180 s; serial console:\n${serial.slice(-3000)}`);
  const marker = /PXEHERD-RESULT rc=(\d+) node=(\S*)/.exec(serial);
  assert.ok(marker, `no result line on the console:\n${serial.slice(-3000)}`);
  assert.equal(marker[1], '0', serial.slice(-3000));
  assert.match(serial, /pxeherd: init nodescripts for n0000 done/);
  assert.equal(marker[2], 'n0000');
  await new Promise((r) => setTimeout(r, 300));
  const k1 = kinds(MAC);
  assert.ok(k1.includes('node.register'), k1.join(' '));
  assert.ok(k1.includes('provision.start:ready'), `the node checked in as ready: ${k1.join(' ')}`);
  assert.ok(!k1.includes('security.denied'), k1.join(' '));
});

test('a BIOS machine with an iPXE NIC ROM chains /boot.ipxe -> /boot/<mac>.ipxe, fetches kernel and initrd by HTTP and runs stage one to PXEHERD-RESULT rc=0', { skip, timeout: 240_000 }, async (t) => {
  const why = await lab();
  if (why) return t.skip(why);
  const mac = '52:54:00:81:00:11';
  const { code, serial, seconds } = await boot(['-device', `e1000,netdev=n0,mac=${mac},romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom`, '-boot', 'n']);
  t.diagnostic(`iPXE boot to power-off: ${seconds.toFixed(1)} s`);
  assert.notEqual(code, null, `QEMU did not power off within 180 s; serial console:\n${serial.slice(-3000)}`);
  const marker = /PXEHERD-RESULT rc=(\d+) node=(\S*)/.exec(serial);
  assert.ok(marker, `no result line on the console:\n${serial.slice(-3000)}`);
  assert.equal(marker[1], '0', serial.slice(-3000));
  await new Promise((r) => setTimeout(r, 300));
  const k = kinds(mac);
  for (const want of ['http.ipxe', 'http.kernel', 'http.initrd', 'node.register', 'provision.start:init', 'provision.start:ready']) assert.ok(k.includes(want), `${want} in ${k.join(' ')}`);
  const initrd = events.find((e) => e.mac === mac && e.kind === 'http.initrd')!.detail as { status: number; bytes: number };
  assert.equal(initrd.status, 200);
  assert.ok(initrd.bytes >= fs.statSync(built!.initrd).size);
});
