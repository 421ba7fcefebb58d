// Whole-machine boots, pxeherd vs the classic glue (dnsmasq for DHCP + nginx serving the same
// iPXE script, kernel, initrd and nodescript output as static files), in one run, in a network
// namespace on this machine. Seconds from QEMU start to the console marker.
//
//   npm run build && node --import tsx bench/boot.ts [--runs 1] [--firmware bios,uefi,uefi-http]
//   npm run build && node --import tsx bench/boot.ts --image [--runs 1] [--vnfs-mode overlay|tmpfs]
//     image boots into the Debian image to SSH against a Warewulf-style chain: bench/boot-image.ts
//
// uefi-http: OVMF's own UEFI HTTP boot (virtio-net without ROM, PXE switched off by fw_cfg):
// DHCP with vendor class HTTPClient -> ipxe.efi over HTTP -> iPXE -> the same script.
//
// Needs root, qemu-system-x86, ipxe-qemu, ovmf, dnsmasq, nginx-light (as .ci/run installs).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createLab, labUnavailable, tmpDir, waitFor, type Lab } from '../test/lab/lab.js';
import { startVm, labAccel } from '../test/lab/qemu.js';
import { CLI } from '../test/helpers/cli.js';
import { imageBootBench } from './boot-image.js';

const args = process.argv.slice(2);
const opt = (n: string, d: string) => (args.includes(n) ? args[args.indexOf(n) + 1]! : d);
const RUNS = Number(opt('--runs', '1'));
type Firmware = 'bios' | 'uefi' | 'uefi-http';
const FIRMWARES = opt('--firmware', 'bios,uefi').split(',') as Firmware[];
/** OVMF without PXE boot options: the NIC's first network option is UEFI HTTP boot. */
const OVMF_HTTP_ONLY = ['-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n', '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=n'];
if (args.includes('--image')) {
  const mode = opt('--vnfs-mode', 'overlay');
  if (mode !== 'overlay' && mode !== 'tmpfs') {
    console.error(`bench/boot: --vnfs-mode must be overlay or tmpfs, not ${mode}`);
    process.exit(2);
  }
  await imageBootBench({ runs: RUNS, vnfsMode: mode });
  process.exit(process.exitCode ?? 0);
}
const why = labUnavailable(['qemu-system-x86_64', 'dnsmasq', 'nginx']);
if (why) {
  console.error(`bench/boot: ${why}`);
  process.exit(2);
}

const dir = tmpDir('pxeherd-bench-boot-');
const statedir = path.join(dir, 'var');
const config = path.join(dir, 'pxeherd.yaml');
const lab: Lab = createLab({ name: 'phbboot', subnet: '10.86.0' });
const S = lab.serverIp;
const MARK = /PXEHERD-BENCH-MARKER/;

function cli(a: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...a, '--config', config], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pxeherd ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function bootOnce(name: string, mac: string, firmware: Firmware): Promise<number> {
  const vm =
    firmware === 'uefi-http'
      ? startVm({ lab, name, mac, firmware: 'uefi', nic: 'virtio-firmware-pxe', extraArgs: OVMF_HTTP_ONLY, dir })
      : startVm({ lab, name, mac, firmware, dir });
  try {
    await vm.waitForConsole(MARK, 240_000);
    return (Date.now() - vm.started) / 1000;
  } finally {
    vm.kill();
  }
}

async function main() {
  fs.writeFileSync(
    config,
    `statedir: ${statedir}\ninterface: br0\naddress: ${S}\ndhcp: { mode: full, range: [10.86.0.100, 10.86.0.200], router: ${S} }\ntftp: { port: 69 }\nhttp: { port: 8080 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nsecurity: { node_tokens: false }\n`,
  );
  cli(['stage1', 'build']);
  const marker = path.join(statedir, 'nodescripts', 'init', 'all', '90-bench-marker');
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, '#!/bin/sh\necho "echo PXEHERD-BENCH-MARKER node=$NODENAME"\n', { mode: 0o755 });
  const results: { server: string; firmware: string; seconds: number }[] = [];

  // --- pxeherd ---
  const log = path.join(dir, 'pxeherd.log');
  const server = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log });
  await waitFor('pxeherd', 20_000, () => /dhcp listening/.test(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''));
  let n = 0;
  for (let r = 0; r < RUNS; r++)
    for (const fw of FIRMWARES) {
      const mac = `52:54:00:be:00:${(++n).toString(16).padStart(2, '0')}`;
      results.push({ server: 'pxeherd', firmware: fw, seconds: await bootOnce(`px-${fw}-${r}`, mac, fw) });
      console.log(`pxeherd ${fw}: ${results.at(-1)!.seconds.toFixed(1)} s`);
    }
  // The reference serves exactly what pxeherd served: the rendered iPXE script and nodescripts.
  const web = path.join(dir, 'www');
  fs.chmodSync(dir, 0o755); // nginx workers run as an unprivileged user
  fs.mkdirSync(path.join(web, 'provision'), { recursive: true });
  // One static script per machine, as a static set-up does it: boot.ipxe chains by MAC.
  fs.mkdirSync(path.join(web, 'boot'), { recursive: true });
  fs.writeFileSync(path.join(web, 'boot.ipxe'), `#!ipxe\nchain http://${S}:8090/boot/\${net0/mac:hexhyp}.ipxe\n`);
  const nodes = JSON.parse(cli(['node', 'list', '--json'])).nodes as { name: string; mac: string }[];
  for (const node of nodes) {
    const text = JSON.parse(cli(['explain', node.mac, '--ipxe', '--json'])).ipxe_script.text as string;
    const ipxe = text
      .replaceAll(`http://${S}:8080/vnfs/stage1/`, `http://${S}:8090/`)
      .replaceAll(`http://${S}:8080/provision/`, `http://${S}:8090/provision/`)
      .replaceAll(`pxeherd.master=http://${S}:8080`, `pxeherd.master=http://${S}:8090`);
    fs.writeFileSync(path.join(web, 'boot', `${node.mac.replaceAll(':', '-')}.ipxe`), ipxe);
  }
  const nodeName = nodes[0]!.name;
  fs.copyFileSync(path.join(statedir, 'vnfs', 'stage1', 'vmlinuz'), path.join(web, 'vmlinuz'));
  fs.copyFileSync(path.join(statedir, 'vnfs', 'stage1', 'initrd.img'), path.join(web, 'initrd.img'));
  fs.copyFileSync(path.join(statedir, 'tftproot', 'ipxe.efi'), path.join(web, 'ipxe.efi')); // UEFI HTTP boot's loader
  fs.writeFileSync(path.join(web, 'provision', 'init'), cli(['script', 'render', nodeName]));
  fs.writeFileSync(path.join(web, 'provision', 'ready'), '# NODESCRIPT START\n# NODESCRIPT END\n');
  server.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1500));

  // --- dnsmasq + nginx ---
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; daemon off;\nevents { worker_connections 256; }\nhttp { access_log off; sendfile on; default_type text/plain;\n server { listen ${S}:8090; root ${web}; location / { try_files $uri $uri/ =404; } } }\n`,
  );
  lab.spawnInNs('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { log: path.join(dir, 'nginx.log') });
  lab.spawnInNs(
    'dnsmasq',
    [
      '--no-daemon', '--port=0', '--interface=br0', '--bind-interfaces', '--dhcp-range=10.86.0.100,10.86.0.200,255.255.255.0,1h',
      `--dhcp-leasefile=${dir}/dnsmasq.leases`, '--no-resolv', '--no-hosts',
      '--dhcp-userclass=set:ipxe,iPXE', `--dhcp-boot=tag:ipxe,http://${S}:8090/boot.ipxe`,
      // UEFI HTTP boot: the URL of ipxe.efi, and option 60 HTTPClient back (the firmware requires it).
      '--dhcp-vendorclass=set:httpboot,HTTPClient', `--dhcp-boot=tag:httpboot,tag:!ipxe,http://${S}:8090/ipxe.efi`, '--dhcp-option-force=tag:httpboot,tag:!ipxe,60,HTTPClient',
    ],
    { log: path.join(dir, 'dnsmasq.log') },
  );
  await new Promise((r) => setTimeout(r, 1500));
  n = 0; // the same machines (MACs) boot again, now from the static set-up
  for (let r = 0; r < RUNS; r++)
    for (const fw of FIRMWARES) {
      const mac = `52:54:00:be:00:${(++n).toString(16).padStart(2, '0')}`;
      results.push({ server: 'dnsmasq+nginx', firmware: fw, seconds: await bootOnce(`ref-${fw}-${r}`, mac, fw) });
      console.log(`dnsmasq+nginx ${fw}: ${results.at(-1)!.seconds.toFixed(1)} s`);
    }

  const med = (s: string, fw: string) => {
    const xs = results.filter((r) => r.server === s && r.firmware === fw).map((r) => r.seconds).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  console.log(`\nQEMU accel ${labAccel()}, runs ${RUNS}, seconds from QEMU start to the marker (median)`);
  console.log('firmware  pxeherd  dnsmasq+nginx  ratio (pxeherd/reference, goal <= 1.0)');
  for (const fw of FIRMWARES) {
    const a = med('pxeherd', fw);
    const b = med('dnsmasq+nginx', fw);
    console.log(`${fw.padEnd(8)}  ${a.toFixed(1).padStart(7)}  ${b.toFixed(1).padStart(13)}  ${(a / b).toFixed(2)}`);
  }
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    lab.destroy();
    if (!process.env.PXEHERD_KEEP_BENCH) fs.rmSync(dir, { recursive: true, force: true });
  });
