// IPv6 netboot, pxeherd vs the classic glue, in one run: the same QEMU machine (UEFI, iPXE EFI
// ROM, TCG) boots the stage-one image to a console marker over an IPv6-only link, first from
// `pxeherd serve` (DHCPv6 + RA, iPXE script, kernel, initrd, nodescripts), then from dnsmasq
// (DHCPv6 with the boot-file URL, router advertisements) + nginx serving the same iPXE script,
// kernel, initrd and nodescript output as static files. Seconds from QEMU start to the marker.
//
//   npm run build && node --import tsx bench/boot6.ts [--runs 1]
//
// Needs root, qemu-system-x86, ipxe-qemu, ovmf, dnsmasq, nginx-light, curl (as .ci/run installs).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createLab, labUnavailable, sh, tmpDir, waitFor, type Lab } from '../test/lab/lab.js';
import { startVm, labAccel } from '../test/lab/qemu.js';
import { CLI } from '../test/helpers/cli.js';

const args = process.argv.slice(2);
const RUNS = Number(args.includes('--runs') ? args[args.indexOf('--runs') + 1] : '1');
const why = labUnavailable(['qemu-system-x86_64', 'dnsmasq', 'nginx', 'curl']);
if (why) {
  console.error(`bench/boot6: ${why}`);
  process.exit(2);
}

const PREFIX = 'fd00:86::';
const S = `${PREFIX}1`;
const dir = tmpDir('pxeherd-bench-boot6-');
const statedir = path.join(dir, 'var');
const config = path.join(dir, 'pxeherd.yaml');
const lab: Lab = createLab({ name: 'phbb6', ipv6: { prefix: PREFIX }, ipv4: false });
const MARK = /PXEHERD-BENCH-MARKER/;

function cli(a: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...a, '--config', config], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pxeherd ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function bootOnce(name: string, mac: string): Promise<number> {
  const vm = startVm({ lab, name, mac, firmware: 'uefi', dir });
  try {
    await vm.waitForConsole(MARK, 300_000);
    return (Date.now() - vm.started) / 1000;
  } finally {
    vm.kill();
  }
}

async function main() {
  fs.writeFileSync(
    config,
    `statedir: ${statedir}\ninterface: br0\ndhcp: { mode: off }\ndhcp6: { mode: full, prefix: '${PREFIX}/64', range: ['${PREFIX}1000', '${PREFIX}1fff'] }\ntftp: { port: 69 }\nhttp: { port: 8080 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nsecurity: { node_tokens: false }\n`,
  );
  cli(['stage1', 'build']);
  const marker = path.join(statedir, 'nodescripts', 'init', 'all', '90-bench-marker');
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, '#!/bin/sh\necho "echo PXEHERD-BENCH-MARKER node=$NODENAME"\n', { mode: 0o755 });
  const results: { server: string; seconds: number }[] = [];
  const macs = Array.from({ length: RUNS }, (_, i) => `52:54:00:b6:00:${(i + 1).toString(16).padStart(2, '0')}`);

  // The reference serves exactly what pxeherd served: the machine's iPXE script as pxeherd
  // renders it for a request over IPv6, and the nodescripts' output, as static files.
  const web = path.join(dir, 'www');
  fs.chmodSync(dir, 0o755); // nginx workers run as an unprivileged user
  fs.mkdirSync(path.join(web, 'provision'), { recursive: true });
  fs.mkdirSync(path.join(web, 'boot'), { recursive: true });
  fs.writeFileSync(path.join(web, 'boot.ipxe'), `#!ipxe\nchain http://[${S}]:8090/boot/\${net0/mac:hexhyp}.ipxe\n`);
  fs.copyFileSync(path.join(statedir, 'vnfs', 'stage1', 'vmlinuz'), path.join(web, 'vmlinuz'));
  fs.copyFileSync(path.join(statedir, 'vnfs', 'stage1', 'initrd.img'), path.join(web, 'initrd.img'));
  fs.writeFileSync(path.join(web, 'provision', 'ready'), '# NODESCRIPT START\n# NODESCRIPT END\n');
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; daemon off;\nevents { worker_connections 256; }\nhttp { access_log off; sendfile on; default_type text/plain;\n server { listen [${S}]:8090; root ${web}; location / { try_files $uri $uri/ =404; } } }\n`,
  );
  const stop = async (p: ReturnType<typeof lab.spawnInNs>) => {
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };

  // Runs alternate (pxeherd, then the reference, per machine), so load from other work on
  // this machine falls on both alike.
  const log = path.join(dir, 'pxeherd.log');
  for (const [i, mac] of macs.entries()) {
    const server = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log });
    await waitFor('pxeherd', 30_000, () => (fs.readFileSync(log, 'utf8').match(/dhcp6 listening/g)?.length ?? 0) > i && (fs.readFileSync(log, 'utf8').match(/http listening/g)?.length ?? 0) > i);
    results.push({ server: 'pxeherd', seconds: await bootOnce(`px6-${i}`, mac) });
    console.log(`pxeherd (IPv6): ${results.at(-1)!.seconds.toFixed(1)} s`);
    const text = sh('curl', ['-sSf', '-g', `http://[${S}]:8080/boot/${mac}.ipxe`], { ns: lab.ns });
    const ipxe = text
      .replaceAll(`http://[${S}]:8080/vnfs/stage1/`, `http://[${S}]:8090/`)
      .replaceAll(`http://[${S}]:8080/provision/`, `http://[${S}]:8090/provision/`)
      .replaceAll(`pxeherd.master=http://[${S}]:8080`, `pxeherd.master=http://[${S}]:8090`);
    fs.writeFileSync(path.join(web, 'boot', `${mac.replaceAll(':', '-')}.ipxe`), ipxe);
    await stop(server);
    const name = (JSON.parse(cli(['node', 'list', '--json'])).nodes as { name: string; mac: string }[]).find((n) => n.mac === mac)!.name;
    fs.writeFileSync(path.join(web, 'provision', 'init'), cli(['script', 'render', name]));

    const nginx = lab.spawnInNs('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { log: path.join(dir, 'nginx.log') });
    const dnsmasq = lab.spawnInNs(
      'dnsmasq',
      [
        '--no-daemon', '--port=0', '--interface=br0', '--bind-interfaces',
        // Stateful DHCPv6 plus SLAAC (M and A flags), as pxeherd's defaults advertise.
        `--dhcp-range=${PREFIX}1000,${PREFIX}1fff,slaac,64,1h`, '--enable-ra',
        `--dhcp-leasefile=${dir}/dnsmasq.leases`, '--no-resolv', '--no-hosts',
        '--dhcp-userclass=set:ipxe,iPXE', `--dhcp-option=tag:ipxe,option6:bootfile-url,http://[${S}]:8090/boot.ipxe`,
      ],
      { log: path.join(dir, 'dnsmasq.log') },
    );
    await new Promise((r) => setTimeout(r, 1500));
    results.push({ server: 'dnsmasq+nginx', seconds: await bootOnce(`ref6-${i}`, mac) });
    console.log(`dnsmasq+nginx (IPv6): ${results.at(-1)!.seconds.toFixed(1)} s`);
    await stop(dnsmasq);
    await stop(nginx);
  }

  const med = (s: string) => {
    const xs = results.filter((r) => r.server === s).map((r) => r.seconds).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  console.log(`\nQEMU accel ${labAccel()}, runs ${RUNS}, seconds from QEMU start to the marker (median), UEFI + iPXE over IPv6`);
  console.log('pxeherd  dnsmasq+nginx  ratio (pxeherd/reference, goal <= 1.0)');
  const a = med('pxeherd');
  const b = med('dnsmasq+nginx');
  console.log(`${a.toFixed(1).padStart(7)}  ${b.toFixed(1).padStart(13)}  ${(a / b).toFixed(2)}`);
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
