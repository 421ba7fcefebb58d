// Image boots (issue 17): a whole QEMU machine into the Debian image, seconds from QEMU start
// to SSH answering (the sshd banner on port 22 of the node's address), pxeherd against a
// Warewulf-style reference in the same run, on the same machine (MAC) and image:
//
//   pxeherd:   DHCP -> iPXE -> the image's kernel + pxeherd's stage one -> init nodescripts:
//              fetch rootfs.squashfs, verify its sha256, mount (vnfs_mode overlay) or unpack
//              (tmpfs), per-node files, switch_root -> systemd -> sshd.
//   reference: dnsmasq + nginx, as Warewulf 4 boots: iPXE loads the image's kernel and two
//              initrds, the whole image packed as image.cpio.gz and the node's own files as
//              node.cpio.gz; the kernel unpacks both into its tmpfs root and runs systemd there
//              (rdinit=/sbin/init; rootfstype=ramfs makes that root a ramfs: the kernel's default
//              tmpfs root is capped at half the RAM, and the 610 MiB tree does not fit in 768 MiB
//              with page rounding: systemd then cannot even write /etc/machine-id). The node's files are the very files pxeherd's nodescripts
//              wrote on the pxeherd boot (hostname, hosts, networkd unit by MAC, host keys,
//              machine-id, authorized_keys), copied off that running node over SSH.
//
//   node --import tsx bench/boot.ts --image [--runs 1] [--vnfs-mode overlay|tmpfs]
//
// Uses the Debian image of test/lab/image.ts (PXEHERD_SHARED_IMAGE_DIR keeps it between runs;
// otherwise it is built, ~2-6 min). Needs root, qemu, ipxe-qemu, dnsmasq, nginx, cpio, gzip.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createLab, labUnavailable, run, tmpDir, waitFor, type Lab } from '../test/lab/lab.js';
import { startVm, labAccel } from '../test/lab/qemu.js';
import { sharedDebianImage, cloneSharedImage, imageToolsMissing, SHARED_IMAGE_NAME } from '../test/lab/image.js';
import { CLI } from '../test/helpers/cli.js';
import { Store } from '../src/store/store.js';
import { STAGE1_CMDLINE } from '../src/stage1/build.js';

const MEM_MB = 1536;
const BOOT_MS = 600_000;
const MAC = '52:54:00:be:10:01';
const NODE = 'n0000';

interface Opts {
  runs: number;
  vnfsMode: 'overlay' | 'tmpfs';
}

function sh(cmd: string, args: string[], o: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: o.cwd, input: o.input, maxBuffer: 1 << 26, env: o.env ? { ...process.env, ...o.env } : undefined });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** The sshd banner from IP:22, seen from inside the lab's server namespace. */
async function sshAnswers(lab: Lab, ip: string): Promise<boolean> {
  try {
    const r = await run('timeout', ['3', 'bash', '-c', `exec 3<>/dev/tcp/${ip}/22 && head -c 7 <&3`], { ns: lab.ns, timeoutMs: 5000 });
    return r.stdout.startsWith('SSH-2.0');
  } catch {
    return false;
  }
}

/** Boot once; seconds from QEMU start until sshd answers at the address `ipOf` finds. */
async function bootToSsh(lab: Lab, dir: string, name: string, ipOf: () => string | undefined): Promise<{ seconds: number; kill: () => void }> {
  const vm = startVm({ lab, name, mac: MAC, firmware: 'bios', memMb: MEM_MB, dir });
  try {
    await waitFor(`${name}: sshd to answer`, BOOT_MS, async () => {
      if (vm.proc.exitCode !== null) throw new Error(`QEMU exited (${vm.proc.exitCode})`);
      const ip = ipOf();
      return ip ? sshAnswers(lab, ip) : false;
    }, 1000).catch((e) => {
      throw new Error(`${(e as Error).message}\nconsole tail:\n${vm.console().slice(-3000)}`);
    });
    return { seconds: (Date.now() - vm.started) / 1000, kill: () => vm.kill() };
  } catch (e) {
    vm.kill();
    throw e;
  }
}

/** `find . | cpio -o -H newc | gzip` of a directory (owners and modes as they are; run as root). */
function packCpioGz(srcDir: string, out: string, level = 6): void {
  const r = spawnSync('sh', ['-c', `find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc | gzip -${level} > "${out}"`], { cwd: srcDir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`packing ${srcDir} into ${out}: ${r.stderr}`);
}

export async function imageBootBench(o: Opts): Promise<void> {
  const why = labUnavailable(['qemu-system-x86_64', 'dnsmasq', 'nginx', 'cpio', 'gzip', 'ssh']) ?? imageToolsMissing();
  if (why) {
    console.error(`bench/boot --image: ${why}`);
    process.exitCode = 2;
    return;
  }
  const dir = tmpDir('pxeherd-bench-image-');
  const lab = createLab({ name: 'phbimg', subnet: '10.88.0' });
  const S = lab.serverIp;
  const kill: (() => void)[] = [];
  try {
    const img = await sharedDebianImage();
    const { statedir } = cloneSharedImage(img, dir);
    const config = path.join(dir, 'pxeherd.yaml');
    fs.writeFileSync(
      config,
      `statedir: ${statedir}\ninterface: br0\naddress: ${S}\ndhcp: { mode: full, range: [10.88.0.100, 10.88.0.200], router: ${S}, dns: [${S}], lease_seconds: 600 }\ntftp: { port: 69 }\nhttp: { port: 8080 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\n`,
    );
    // The config through the environment: after `vnfs exec NAME --`, --config would be part of the command.
    const cli = (a: string[]) => sh(process.execPath, [CLI, ...a], { env: { PXEHERD_CONFIG: config } });
    cli(['vnfs', 'set', SHARED_IMAGE_NAME, 'cmdline', STAGE1_CMDLINE]);
    let rev = img.rev;
    if (o.vnfsMode === 'tmpfs') {
      // A revision packed by this pxeherd: its stage one carries unsquashfs (a cached image may predate it).
      console.log('tmpfs mode: vnfs exec makes a fresh revision (stage one with unsquashfs)');
      cli(['vnfs', 'exec', SHARED_IMAGE_NAME, '--', 'sh', '-c', 'echo bench > /etc/pxeherd-bench']);
      rev = img.rev + 1;
    }
    const tree = path.join(statedir, 'images', SHARED_IMAGE_NAME, String(rev), 'tree');
    cli(['node', 'add', MAC, NODE, '--vnfs', SHARED_IMAGE_NAME, '--set', `vnfs_mode=${o.vnfsMode}`, '--set', 'checkin_interval=300']);
    const manifest = JSON.parse(fs.readFileSync(path.join(statedir, `vnfs/${SHARED_IMAGE_NAME}/r${rev}/manifest.json`), 'utf8')) as { artifacts: Record<string, { size: number }>; tree: { bytes: number } };
    console.log(`image ${SHARED_IMAGE_NAME} r${rev}: tree ${(manifest.tree.bytes / 1048576).toFixed(0)} MiB, rootfs.squashfs ${(manifest.artifacts['rootfs.squashfs']!.size / 1048576).toFixed(0)} MiB; QEMU accel ${labAccel()}, ${MEM_MB} MiB; pxeherd vnfs_mode=${o.vnfsMode}`);
    const results: { server: string; seconds: number }[] = [];

    // --- pxeherd ---
    const log = path.join(dir, 'pxeherd.log');
    const server = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log });
    await waitFor('pxeherd', 30_000, () => /dhcp listening/.test(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''));
    const nodeIp = () => {
      const s = Store.open(statedir);
      try {
        return s.leases.byMac(MAC)?.ip;
      } finally {
        s.close();
      }
    };
    let nodeFiles = '';
    for (let r = 0; r < o.runs; r++) {
      const b = await bootToSsh(lab, dir, `px-${r}`, nodeIp);
      results.push({ server: 'pxeherd', seconds: b.seconds });
      console.log(`pxeherd (${o.vnfsMode}) run ${r + 1}: sshd answered ${b.seconds.toFixed(1)} s after QEMU started`);
      if (!nodeFiles) {
        // The per-node files pxeherd's nodescripts wrote, off the running node, for the reference.
        const key = path.join(statedir, 'ssh', 'id_ed25519');
        nodeFiles = path.join(dir, 'node-files.tar');
        const paths = ['etc/hostname', 'etc/hosts', 'etc/systemd/network', 'etc/systemd/system/multi-user.target.wants/systemd-networkd.service', 'etc/systemd/system/sockets.target.wants/systemd-networkd.socket', 'etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service', 'etc/resolv.conf', 'etc/systemd/timesyncd.conf.d', 'etc/shadow', 'etc/ssh/ssh_host_ed25519_key', 'etc/ssh/ssh_host_ed25519_key.pub', 'etc/ssh/ssh_host_ecdsa_key', 'etc/ssh/ssh_host_ecdsa_key.pub', 'etc/ssh/ssh_host_rsa_key', 'etc/ssh/ssh_host_rsa_key.pub', 'etc/machine-id', 'root/.ssh'];
        const t = await run('ssh', ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', `root@${nodeIp()}`, `cd / && tar -cf - --ignore-failed-read ${paths.join(' ')} 2>/dev/null | base64 -w0`], { ns: lab.ns, timeoutMs: 120_000 }).catch((e) => {
          throw new Error(`copying the node's files off ${NODE}: ${(e as { stderr?: string }).stderr ?? e}`);
        });
        fs.writeFileSync(nodeFiles, Buffer.from(t.stdout.trim(), 'base64'));
      }
      b.kill();
    }
    server.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));

    // --- the Warewulf-style reference: dnsmasq + nginx, kernel + image.cpio.gz + node.cpio.gz ---
    const web = path.join(dir, 'www');
    fs.mkdirSync(web, { recursive: true });
    fs.chmodSync(dir, 0o755);
    const rdir = path.join(statedir, `vnfs/${SHARED_IMAGE_NAME}/r${rev}`);
    fs.copyFileSync(path.join(rdir, 'vmlinuz'), path.join(web, 'vmlinuz'));
    let t0 = Date.now();
    packCpioGz(fs.existsSync(tree) ? tree : img.tree, path.join(web, 'image.cpio.gz'));
    console.log(`reference: packed the image tree as image.cpio.gz (${(fs.statSync(path.join(web, 'image.cpio.gz')).size / 1048576).toFixed(0)} MiB) in ${((Date.now() - t0) / 1000).toFixed(0)} s (not part of the boot time)`);
    const nd = path.join(dir, 'node-files');
    fs.mkdirSync(nd);
    sh('tar', ['-xpf', nodeFiles, '-C', nd]);
    packCpioGz(nd, path.join(web, 'node.cpio.gz'));
    fs.writeFileSync(
      path.join(web, 'boot.ipxe'),
      `#!ipxe\nkernel http://${S}:8090/vmlinuz rdinit=/sbin/init rootfstype=ramfs console=tty0 console=ttyS0,115200\ninitrd http://${S}:8090/image.cpio.gz\ninitrd http://${S}:8090/node.cpio.gz\nboot\n`,
    );
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; daemon off;\nevents { worker_connections 256; }\nhttp { access_log off; sendfile on; default_type application/octet-stream;\n server { listen ${S}:8090; root ${web}; } }\n`,
    );
    kill.push(((p) => () => p.kill('SIGTERM'))(lab.spawnInNs('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { log: path.join(dir, 'nginx.log') })));
    const leases = path.join(dir, 'dnsmasq.leases');
    kill.push(
      ((p) => () => p.kill('SIGTERM'))(
        lab.spawnInNs(
          'dnsmasq',
          ['--no-daemon', '--port=0', '--interface=br0', '--bind-interfaces', '--dhcp-range=10.88.0.100,10.88.0.200,255.255.255.0,1h', `--dhcp-leasefile=${leases}`, '--no-resolv', '--no-hosts', `--dhcp-option=option:router,${S}`, `--dhcp-option=option:dns-server,${S}`, '--dhcp-userclass=set:ipxe,iPXE', `--dhcp-boot=tag:ipxe,http://${S}:8090/boot.ipxe`],
          { log: path.join(dir, 'dnsmasq.log') },
        ),
      ),
    );
    await new Promise((r) => setTimeout(r, 1500));
    const refIp = () => {
      const text = fs.existsSync(leases) ? fs.readFileSync(leases, 'utf8') : '';
      return text.split('\n').map((l) => l.split(' ')).find((f) => f[1] === MAC)?.[2];
    };
    for (let r = 0; r < o.runs; r++) {
      const b = await bootToSsh(lab, dir, `ref-${r}`, refIp);
      results.push({ server: 'warewulf-style', seconds: b.seconds });
      console.log(`warewulf-style (dnsmasq+nginx, image as cpio.gz initrd) run ${r + 1}: sshd answered ${b.seconds.toFixed(1)} s after QEMU started`);
      b.kill();
    }
    t0 = 0;
    const med = (s: string) => {
      const xs = results.filter((x) => x.server === s).map((x) => x.seconds).sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)]!;
    };
    const a = med('pxeherd');
    const b = med('warewulf-style');
    console.log(`\nimage boot, BIOS, seconds from QEMU start to sshd answering (median of ${o.runs}):`);
    console.log(`  pxeherd (${o.vnfsMode})  ${a.toFixed(1)}   warewulf-style  ${b.toFixed(1)}   ratio ${(a / b).toFixed(2)} (pxeherd / reference, goal <= 1.0)`);
    console.log(JSON.stringify({ bench: 'boot-image', firmware: 'bios', vnfsMode: o.vnfsMode, runs: o.runs, accel: labAccel(), pxeherd: a, reference: b, ratio: +(a / b).toFixed(2), results }));
  } finally {
    for (const k of kill) k();
    lab.destroy();
    if (!process.env.PXEHERD_KEEP_BENCH) fs.rmSync(dir, { recursive: true, force: true });
  }
}
