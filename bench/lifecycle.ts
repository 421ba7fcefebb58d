// Lifecycle (issue 18): seconds from a power cycle to SSH answering with the node's kept host
// key, for a disk install of the same image on the same QEMU machine and disk, pxeherd against
// the chain a user would otherwise script (Cobbler/Warewulf style), in one run:
//
//   pxeherd:   `pxeherd node reinstall NODE --wait` as a user runs it: boot once + PXE override
//              + power cycle through the BMC (OpenIPMI's ipmi_sim wired to the VM, test/lab/bmc.ts),
//              DHCP -> iPXE -> the image's kernel + pxeherd's stage one -> nodescripts: download
//              rootfs.squashfs, sha256 check, sfdisk + mkfs from the plan, cp -a onto the disk,
//              per-node files, GRUB, install.done, reboot -> boot mode local -> the disk's GRUB ->
//              Debian -> check-in ready -> SSH. Stages come from pxeherd's own events.
//   reference: what an admin scripts with stock parts: ipmitool bootdev pxe + power cycle,
//              dnsmasq (DHCP with a fixed address per MAC, iPXE's no-ProxyDHCP option and router
//              advertisements, as pxeherd sends both) handing iPXE a script on nginx; that script
//              chains a per-MAC "local boot" script when there is one, else boots the same
//              kernel with a minimal stage one (busybox + the host's sfdisk, mke2fs, curl, zstd
//              and GNU tar); the stage one partitions with the same sfdisk script and mkfs as
//              pxeherd's plan, streams `curl | zstd -d | tar -x` of the same tree (zstd -9 like
//              the squashfs, plus the per-node files pxeherd wrote: host keys, network,
//              authorized_keys, hostname) onto the disk, writes fstab, runs the image's
//              grub-install and grub-mkconfig chrooted, PUTs the per-MAC local boot script to
//              nginx (WebDAV: Cobbler's "netboot disabled" after install) and reboots. The bench
//              polls SSH (1 s) with the same expected host key. Stages come from nginx's log and
//              marks the stage one fetches (404s, logged with millisecond times).
//
//   npm run build && node --import tsx bench/lifecycle.ts [--rounds N] [--json] [--mem MB]
//
// Rounds alternate (pxeherd, reference, pxeherd, ...) so both sides see the same drift of a shared
// machine's load; the reference's tarball and stage one are made after the first pxeherd round
// (they need the node's files and pxeherd's disk plan) and are not timed.
//
// Uses the Debian image of test/lab/image.ts (PXEHERD_SHARED_IMAGE_DIR keeps it between runs;
// otherwise it is built, ~2-6 min). Needs root, qemu, ipxe-qemu, ipmitool, openipmi, dnsmasq,
// nginx (with the dav module: nginx-light/-full), curl, zstd, GNU tar, openssh-client.
// Timings are never part of a pass/fail test; test/unit/bench-lifecycle.test.ts checks the
// argument parsing and the stage arithmetic only.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

export interface LifecycleOptions {
  rounds: number;
  json: boolean;
  memMb: number;
  help: boolean;
}

export const USAGE = `usage: node --import tsx bench/lifecycle.ts [--rounds N] [--json] [--mem MB]
  seconds from power cycle to SSH for a disk install of the shared Debian image, pxeherd
  (node reinstall --wait through ipmi_sim) against a scripted dnsmasq + iPXE + nginx +
  curl|zstd|tar stage one, on the same QEMU machine and disk, in one run
  --rounds N   installs per side (default 1), alternating pxeherd and reference; figures are medians
  --json       one JSON object on stdout (progress on stderr)
  --mem MB     the VM's memory (default 1536: pxeherd's stage one holds the squashfs in RAM)`;

export class UsageError extends Error {}

/** Pure: the command line. */
export function parseArgs(argv: readonly string[]): LifecycleOptions {
  const o: LifecycleOptions = { rounds: 1, json: false, memMb: 1536, help: false };
  const num = (flag: string, v: string | undefined, min: number): number => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`${flag} needs a whole number >= ${min}, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') o.help = true;
    else if (a === '--json') o.json = true;
    else if (a === '--rounds') o.rounds = num(a, argv[++i], 1);
    else if (a === '--mem') o.memMb = num(a, argv[++i], 512);
    else throw new UsageError(`unknown argument ${JSON.stringify(a)} (see --help)`);
  }
  return o;
}

/** A stage: its name and seconds (null when the boundary events were not seen). */
export interface Stage {
  stage: string;
  seconds: number | null;
}

/**
 * Pure: consecutive differences between named instants (ms), from `t0`. A missing instant
 * gives null for its stage, and the next stage starts from the last instant that was seen.
 */
export function stagesFrom(t0: number, marks: readonly [string, number | undefined][]): Stage[] {
  let prev = t0;
  return marks.map(([stage, t]) => {
    if (t === undefined) return { stage, seconds: null };
    const s = { stage, seconds: Math.round((t - prev) / 100) / 10 };
    prev = t;
    return s;
  });
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

interface Ev {
  time: number;
  kind: string;
  detail: Record<string, unknown>;
}

/** Pure: pxeherd's stages of one reinstall, from the node's events (oldest first) since `t0`. */
export function pxeherdStages(t0: number, evs: readonly Ev[], end: number): Stage[] {
  const first = (kind: string, after = 0, pred: (e: Ev) => boolean = () => true) => evs.find((e) => e.kind === kind && e.time >= after && pred(e))?.time;
  const ipxe = first('http.ipxe');
  const initrd = first('http.initrd');
  const stageOne = evs.find((e) => e.time >= (initrd ?? t0) && /^(inventory\.|provision\.start)/.test(e.kind))?.time;
  const download = first('image.download', 0, (e) => String(e.detail.ok) === '1' || e.detail.ok === true);
  const verify = first('image.verify');
  const start = first('install.start');
  const write = evs.find((e) => e.kind === 'install.write');
  const writeMs = write ? Number(write.detail.ms) : NaN;
  const done = first('install.done');
  const local = done === undefined ? undefined : first('http.ipxe', done);
  const checkin = done === undefined ? undefined : first('node.checkin', done);
  return stagesFrom(t0, [
    ['power cycle to boot script (firmware, DHCP, iPXE)', ipxe],
    ['boot files and stage one start', stageOne],
    ['(stage one: inventory, plan, scripts)', download === undefined ? undefined : download - (Number((evs.find((e) => e.kind === 'image.download')?.detail.ms) ?? 0) || 0)],
    ['image download into RAM', download],
    ['image sha256 verify', verify],
    ['(mount image, tools, modules)', start],
    ['partition + mkfs', write && Number.isFinite(writeMs) ? write.time - writeMs : undefined],
    ['write image to disk', write?.time],
    ['per-node files + GRUB + unmount', done],
    ['reboot to the local boot script', local],
    ['disk boot to the OS check-in', checkin],
    ['check-in to SSH answering (probe every 2 s)', end],
  ]);
}

/** Pure: nginx log lines `MSEC REQUEST_TIME METHOD URI STATUS BYTES` into requests with start and end (ms). */
export function parseNginxLog(text: string): { start: number; end: number; method: string; uri: string; status: number; bytes: number }[] {
  const out: { start: number; end: number; method: string; uri: string; status: number; bytes: number }[] = [];
  for (const l of text.split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f.length < 6 || !/^\d+\.\d+$/.test(f[0]!)) continue;
    const end = Math.round(Number(f[0]) * 1000);
    out.push({ start: end - Math.round(Number(f[1]) * 1000), end, method: f[2]!, uri: f[3]!, status: Number(f[4]), bytes: Number(f[5]) });
  }
  return out;
}

/** Pure: the reference's stages of one install, from nginx's requests since `t0`. */
export function referenceStages(t0: number, reqs: ReturnType<typeof parseNginxLog>, mark: string, end: number): Stage[] {
  const r = reqs.filter((q) => q.start >= t0);
  const at = (pred: (q: (typeof r)[number]) => boolean, which: 'start' | 'end' = 'end') => r.find(pred)?.[which];
  const boot = at((q) => q.uri === '/boot.ipxe', 'start');
  const markAt = (m: string) => at((q) => q.uri === `/mark/${mark}/${m}`);
  const put = at((q) => q.method === 'PUT');
  const local = put === undefined ? undefined : r.find((q) => q.start > put && q.uri.startsWith('/nodes/') && q.method === 'GET' && q.status === 200)?.start;
  const img = r.find((q) => q.uri === '/image.tar.zst');
  return stagesFrom(t0, [
    ['power cycle to boot script (firmware, DHCP, iPXE)', boot],
    ['boot files and stage one start', markAt('start')],
    ['partition + mkfs', markAt('formatted')],
    ['stream image to disk (curl | zstd -d | tar -x)', markAt('written')],
    ['fstab + GRUB + unmount', put],
    ['reboot to the local boot script', local],
    ['disk boot to SSH (probe)', end],
  ]).concat(img ? [{ stage: '(of which the image download)', seconds: Math.round((img.end - img.start) / 100) / 10 }] : []);
}

/** The reference's stage one, /init of its initramfs (busybox sh). */
export function referenceInit(o: { sfdisk: string; mkfsRoot: string; rootPart: string; disk: string; grubCmdline: string }): string {
  return `#!/bin/sh
# Reference stage one (bench/lifecycle.ts): partition, format, stream the image from nginx, GRUB, reboot.
# Debian's static busybox runs its own applets before PATH: the full tools go by absolute path.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /run /mnt /tmp
for m in $(cat /lib/modules/load.order); do insmod /lib/modules/$m 2>/dev/null; done
for w in $(cat /proc/cmdline); do case $w in ref.server=*) S=\${w#ref.server=} ;; ref.mark=*) M=\${w#ref.mark=} ;; esac; done
fail() { echo "REFERENCE INSTALL FAILED: $*"; exec sh; }
i=0; while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
udhcpc -i eth0 -q -f -n -t 20 -s /etc/udhcpc.script || fail dhcp
mac=$(cat /sys/class/net/eth0/address | tr : -)
mark() { /usr/bin/curl -s -o /dev/null "http://$S/mark/$M/$1"; }
mark start
i=0; while [ ! -b ${o.disk} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
printf '%s' '${o.sfdisk.replace(/'/g, `'\\''`)}' | /usr/sbin/sfdisk --quiet --wipe always --wipe-partitions always ${o.disk} || fail sfdisk
i=0; while [ ! -b ${o.rootPart} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
${o.mkfsRoot} ${o.rootPart} >/tmp/mkfs.log 2>&1 || { cat /tmp/mkfs.log; fail mkfs; }
mount -t ext4 ${o.rootPart} /mnt || fail mount
mark formatted
set -o pipefail 2>/dev/null
/usr/bin/curl -fsS "http://$S/image.tar.zst" | /usr/bin/zstd -d -q | /usr/bin/tar -x -p --numeric-owner --xattrs --xattrs-include='*' -C /mnt || fail "image download/untar"
mark written
U=$(/usr/sbin/blkid -s UUID -o value ${o.rootPart})
[ -n "$U" ] || fail "no UUID"
echo "UUID=$U / ext4 errors=remount-ro 0 1" > /mnt/etc/fstab
for d in dev proc sys; do mount -o bind /$d /mnt/$d; done
mkdir -p /dev/disk/by-uuid; ln -sf ${o.rootPart} /dev/disk/by-uuid/$U
cat > /mnt/etc/default/grub <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="${o.grubCmdline}"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
chroot /mnt grub-install --target=i386-pc --recheck --no-floppy ${o.disk} >/tmp/grub.log 2>&1 || { cat /tmp/grub.log; fail grub-install; }
chroot /mnt grub-mkconfig -o /boot/grub/grub.cfg >/tmp/grub.log 2>&1 || { cat /tmp/grub.log; fail grub-mkconfig; }
sync
for d in dev proc sys; do umount /mnt/$d; done
umount /mnt || fail umount
sync
printf '#!ipxe\\nsanboot --no-describe --drive 0x80\\n' | /usr/bin/curl -fsS -T - "http://$S/nodes/$mac.ipxe" || fail "netboot off"
echo "reference: installed, rebooting"
reboot -f
`;
}

const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    [ -n "$router" ] && route add default gw "\${router%% *}" dev "$interface"
    ;;
esac
exit 0
`;

async function main(o: LifecycleOptions): Promise<void> {
  const { createLab, labUnavailable, run, tmpDir, waitFor } = await import('../test/lab/lab.js');
  const { labAccel } = await import('../test/lab/qemu.js');
  const { startSimBmc } = await import('../test/lab/bmc.js');
  const { sharedDebianImage, cloneSharedImage, imageToolsMissing, SHARED_IMAGE_NAME } = await import('../test/lab/image.js');
  const { CLI } = await import('../test/helpers/cli.js');
  const { Store } = await import('../src/store/store.js');
  const { STAGE1_CMDLINE, busyboxBinary, modulesFromDir } = await import('../src/stage1/build.js');
  const { hostBinaryEntries } = await import('../src/stage1/hostbin.js');
  const { defaultCacheDir } = await import('../src/stage1/debs.js');
  const { writeCpio } = await import('../src/stage1/cpio.js');
  type CpioEntry = Parameters<typeof writeCpio>[0][number];

  const log = (m: string) => process.stderr.write(`# lifecycle: ${m}\n`);
  const why =
    labUnavailable(['qemu-system-x86_64', 'dnsmasq', 'nginx', 'ipmitool', 'ipmi_sim', 'curl', 'zstd', 'tar', 'ssh', 'sfdisk', 'mke2fs']) ??
    (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)') ??
    (/--with-http_dav_module/.test(spawnSync('nginx', ['-V'], { encoding: 'utf8' }).stderr ?? '') ? undefined : 'needs nginx with the WebDAV module (Debian nginx-light or nginx-full)') ??
    imageToolsMissing();
  if (why) {
    console.error(`bench/lifecycle: ${why}`);
    process.exitCode = 2;
    return;
  }
  const MAC = '52:54:00:1c:18:01';
  const NODE = 'n0000';
  const PASSWORD = 'Lab-lifecycle18';
  const DISK_MB = 4096;
  const TIMEOUT_S = 1800;
  const dir = tmpDir('pxeherd-bench-lifecycle-');
  fs.chmodSync(dir, 0o755);
  const lab = createLab({ name: 'phlc', subnet: '10.89.0' });
  const S = lab.serverIp;
  const NODE_IP = '10.89.0.150';
  let bmc: Awaited<ReturnType<typeof startSimBmc>> | undefined;
  try {
    const img = await sharedDebianImage();
    const { statedir } = cloneSharedImage(img, dir);
    const config = path.join(dir, 'pxeherd.yaml');
    fs.writeFileSync(
      config,
      `statedir: ${statedir}\ninterface: br0\naddress: ${S}\ndhcp: { mode: full, range: [10.89.0.100, 10.89.0.200], router: ${S}, dns: [${S}], lease_seconds: 600 }\ntftp: { port: 69 }\nhttp: { port: 8080 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nnodescripts: { timeout_seconds: 60 }\n`,
    );
    const env = { ...process.env, PXEHERD_CONFIG: config };
    const cli = (a: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...a], { encoding: 'utf8', env });
      if (r.status !== 0) throw new Error(`pxeherd ${a.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const rdir = path.join(statedir, `vnfs/${SHARED_IMAGE_NAME}/r${img.rev}`);
    const manifest = JSON.parse(fs.readFileSync(path.join(rdir, 'manifest.json'), 'utf8')) as { kernel: string; artifacts: Record<string, { size: number }>; tree: { bytes: number } };
    cli(['vnfs', 'set', SHARED_IMAGE_NAME, 'cmdline', STAGE1_CMDLINE]);
    bmc = await startSimBmc({ lab, dir, user: 'admin', password: PASSWORD, mac: MAC, memMb: o.memMb, diskMb: DISK_MB, diskSerial: 'PXEHERDLC1' });
    fs.mkdirSync(path.join(statedir, 'secrets'), { recursive: true });
    fs.writeFileSync(path.join(statedir, 'secrets', 'bmc-lab'), PASSWORD + '\n', { mode: 0o600 });
    cli(['node', 'add', MAC, NODE, '--vnfs', SHARED_IMAGE_NAME, '--ip', NODE_IP, '--set', 'install=disk', '--set', 'checkin_interval=10', '--set', 'power=ipmi', '--set', `bmc_host=${bmc.host}`, '--set', 'bmc_user=admin', '--set', 'ipmi_cipher=3', '--set', 'bmc_password_file=bmc-lab']);
    const machine = `QEMU ${labAccel()}, 1 vCPU, ${o.memMb} MiB, virtio disk ${DISK_MB} MiB, BIOS (SeaBIOS + iPXE e1000 ROM), ipmi_sim BMC`;
    log(`image ${SHARED_IMAGE_NAME} r${img.rev}: tree ${(manifest.tree.bytes / 1048576).toFixed(0)} MiB, rootfs.squashfs ${(manifest.artifacts['rootfs.squashfs']!.size / 1048576).toFixed(0)} MiB (zstd -9); ${machine}; logs in ${dir}`);
    const key = path.join(statedir, 'ssh', 'id_ed25519');

    // Rounds alternate (pxeherd, reference, pxeherd, ...): on a shared machine the load drifts,
    // and each side should see the same drift. Only one side's servers run at a time (one DHCP server on the wire).
    const stop = async (pr: import('node:child_process').ChildProcess, what: string) => {
      if (pr.exitCode === null && pr.signalCode === null) pr.kill('SIGTERM');
      await waitFor(`${what} to stop`, 15_000, () => pr.exitCode !== null || pr.signalCode !== null);
    };
    // --- pxeherd ---
    const px: { seconds: number; stages: Stage[]; events: { t: number; kind: string }[] }[] = [];
    let nodeFiles = '';
    let plan: { sfdisk: string; partitions: { name: string; device: string; mkfs: string[] | null }[]; disk?: { name?: string } } | undefined;
    const pxeherdRound = async (r: number) => {
      const srvLog = path.join(dir, `pxeherd-${r}.log`);
      const server = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log: srvLog });
      await waitFor('pxeherd to listen', 30_000, () => /dhcp listening/.test(fs.existsSync(srvLog) ? fs.readFileSync(srvLog, 'utf8') : '') && /http listening/.test(fs.readFileSync(srvLog, 'utf8')));
      log(`pxeherd round ${r + 1}: node reinstall ${NODE} --wait`);
      const t0 = Date.now();
      const out = await run(process.execPath, [CLI, 'node', 'reinstall', NODE, '--wait', '--timeout', String(TIMEOUT_S), '--json'], { ns: lab.ns, timeoutMs: (TIMEOUT_S + 120) * 1000, env }).catch((e) => {
        const x = e as { stdout?: string; stderr?: string };
        throw new Error(`pxeherd node reinstall failed: ${x.stderr ?? e}\n${x.stdout ?? ''}\nconsole tail:\n${bmc!.console().slice(-3000)}`);
      });
      const end = Date.now();
      const res = (JSON.parse(out.stdout) as { results: { result: string; seconds: number }[] }).results[0]!;
      if (res.result !== 'ready') throw new Error(`pxeherd reinstall ended ${res.result}: ${out.stdout}`);
      const s = Store.open(statedir);
      const evs = s.events.query({ node: NODE, since: t0, order: 'asc', limit: 100000 }).map((e) => ({ time: e.time!, kind: e.kind, detail: (e.detail ?? {}) as Record<string, unknown> }));
      s.close();
      const stages = pxeherdStages(t0, evs, end);
      px.push({ seconds: (end - t0) / 1000, stages, events: evs.map((e) => ({ t: Math.round((e.time - t0) / 100) / 10, kind: e.kind })) });
      log(`pxeherd round ${r + 1}: ${((end - t0) / 1000).toFixed(1)} s power cycle to SSH (reinstall says ${res.seconds} s)`);
      if (!nodeFiles) {
        // The per-node files pxeherd's nodescripts wrote, off the installed node, for the reference's tarball.
        const paths = ['etc/hostname', 'etc/hosts', 'etc/systemd/network', 'etc/systemd/system/multi-user.target.wants/systemd-networkd.service', 'etc/systemd/system/sockets.target.wants/systemd-networkd.socket', 'etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service', 'etc/resolv.conf', 'etc/systemd/timesyncd.conf.d', 'etc/shadow', 'etc/ssh/ssh_host_ed25519_key', 'etc/ssh/ssh_host_ed25519_key.pub', 'etc/ssh/ssh_host_ecdsa_key', 'etc/ssh/ssh_host_ecdsa_key.pub', 'etc/ssh/ssh_host_rsa_key', 'etc/ssh/ssh_host_rsa_key.pub', 'etc/machine-id', 'root/.ssh'];
        const t = await run('ssh', ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', `root@${NODE_IP}`, `cd / && tar -cf - --ignore-failed-read ${paths.join(' ')} 2>/dev/null | base64 -w0`], { ns: lab.ns, timeoutMs: 120_000 });
        nodeFiles = path.join(dir, 'node-files.tar');
        fs.writeFileSync(nodeFiles, Buffer.from(t.stdout.trim(), 'base64'));
        plan = JSON.parse(cli(['node', 'plan', NODE, '--json'])) as typeof plan;
      }
      await stop(server, 'pxeherd');
    };
    await pxeherdRound(0);

    // --- the reference: prepared once, not timed ---
    const p = (plan as unknown as { plan?: typeof plan }).plan ?? plan;
    if (!p?.sfdisk) throw new Error(`pxeherd node plan ${NODE} --json gave no sfdisk script: ${JSON.stringify(plan).slice(0, 400)}`);
    const root = p.partitions.find((x) => x.name === 'root');
    if (!root?.mkfs) throw new Error('the plan has no root partition with mkfs');
    const disk = root.device.replace(/p?\d+$/, '');
    const web = path.join(dir, 'www');
    fs.mkdirSync(path.join(web, 'nodes'), { recursive: true });
    let t = Date.now();
    const stage = path.join(dir, 'ref-tree');
    const sh = (cmd: string) => {
      const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 26 });
      if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
    };
    sh(`cp -a ${img.tree} ${stage} && tar -xpf ${nodeFiles} -C ${stage}`);
    sh(`tar -C ${stage} --numeric-owner --xattrs --xattrs-include='*' -cf - . | zstd -q -9 -T2 -o ${web}/image.tar.zst`);
    fs.rmSync(stage, { recursive: true, force: true });
    log(`reference: image tree + node files packed as image.tar.zst (${(fs.statSync(path.join(web, 'image.tar.zst')).size / 1048576).toFixed(0)} MiB, zstd -9) in ${((Date.now() - t) / 1000).toFixed(0)} s (not timed)`);
    t = Date.now();
    fs.copyFileSync(path.join(rdir, 'vmlinuz'), path.join(web, 'vmlinuz'));
    const mods = modulesFromDir(path.join(img.tree, 'lib', 'modules', manifest.kernel), ['e1000', 'virtio_pci', 'virtio_blk', 'ext4', 'crc32c_generic'], 'the image');
    const seen = new Set<string>();
    const entries: CpioEntry[] = [];
    const add = (e: CpioEntry) => {
      if (seen.has(e.name)) return;
      seen.add(e.name);
      entries.push(e);
    };
    for (const d of ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'etc', 'lib', 'lib/modules', 'mnt', 'root']) add({ type: 'dir', name: d, mode: 0o755 });
    add({ type: 'char', name: 'dev/console', major: 5, minor: 1, mode: 0o600 });
    add({ type: 'file', name: 'bin/busybox', data: busyboxBinary(defaultCacheDir(), log), mode: 0o755 });
    add({ type: 'symlink', name: 'bin/sh', target: 'busybox' });
    const tool = (name: string) => {
      const f = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
      for (const e of hostBinaryEntries(fs.realpathSync(f), f.replace(/^\/+/, '')).entries) add(e);
    };
    for (const x of ['sfdisk', 'mke2fs', 'curl', 'zstd', 'tar', 'blkid']) tool(x);
    // mke2fs's defaults for ext4 (features, inode size) as the image's mkfs.ext4 has them.
    if (fs.existsSync(path.join(img.tree, 'etc/mke2fs.conf'))) add({ type: 'file', name: 'etc/mke2fs.conf', mode: 0o644, data: fs.readFileSync(path.join(img.tree, 'etc/mke2fs.conf')) });
    const mkfsRoot = root.mkfs.map((a) => (a === 'mkfs.ext4' ? '/usr/sbin/mke2fs -t ext4' : a)).join(' ');
    add({ type: 'file', name: 'init', mode: 0o755, data: Buffer.from(referenceInit({ sfdisk: p.sfdisk, mkfsRoot, rootPart: root.device, disk, grubCmdline: STAGE1_CMDLINE })) });
    add({ type: 'file', name: 'etc/udhcpc.script', mode: 0o755, data: Buffer.from(UDHCPC_SCRIPT) });
    for (const m of mods.order) add({ type: 'file', name: `lib/modules/${m}.ko`, data: mods.bodies.get(m)!, mode: 0o644 });
    add({ type: 'file', name: 'lib/modules/load.order', mode: 0o644, data: Buffer.from(mods.order.map((m) => `${m}.ko\n`).join('')) });
    const zlib = await import('node:zlib');
    fs.writeFileSync(path.join(web, 'stage1.img'), zlib.gzipSync(writeCpio(entries), { level: 9 }));
    log(`reference: stage one ${(fs.statSync(path.join(web, 'stage1.img')).size / 1048576).toFixed(1)} MiB (busybox, ${mods.order.length} modules of the image's kernel, host sfdisk/mke2fs/curl/zstd/tar/blkid) in ${((Date.now() - t) / 1000).toFixed(0)} s (not timed)`);
    fs.writeFileSync(
      path.join(web, 'boot.ipxe'),
      `#!ipxe\nchain --autofree http://${S}:8090/nodes/\${mac:hexhyp}.ipxe || goto install\n:install\nkernel http://${S}:8090/vmlinuz initrd=stage1.img ${STAGE1_CMDLINE} ref.server=${S}:8090 ref.mark=\${mac:hexhyp}\ninitrd http://${S}:8090/stage1.img\nboot\n`,
    );
    const accessLog = path.join(dir, 'nginx.access');
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `user root; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; daemon off;\nevents { worker_connections 256; }\nhttp { log_format t '$msec $request_time $request_method $uri $status $body_bytes_sent'; access_log ${accessLog} t; sendfile on; default_type application/octet-stream;\n server { listen ${S}:8090; root ${web}; location /nodes/ { dav_methods PUT DELETE; create_full_put_path on; dav_access all:r; } } }\n`,
    );
    const leases = path.join(dir, 'dnsmasq.leases');
    const startReference = async () => {
      // Router advertisements, as pxeherd sends them (native/ra): without an answer to its router
      // solicitations iPXE waits ~16 s for IPv6 after every DHCPv4 (twice per install). dnsmasq
      // needs an IPv6 prefix on the interface to advertise; it is removed after the round.
      await run('ip', ['-n', lab.ns, '-6', 'addr', 'replace', 'fd89::1/64', 'dev', 'br0', 'nodad'], { timeoutMs: 10_000 });
      const nginx = lab.spawnInNs('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { log: path.join(dir, 'nginx.log') });
      const dnsmasq = lab.spawnInNs(
        'dnsmasq',
        [
          ...['--no-daemon', '--port=0', '--interface=br0', '--bind-interfaces', '--dhcp-range=10.89.0.100,10.89.0.200,255.255.255.0,1h', `--dhcp-host=${MAC},${NODE_IP}`, `--dhcp-leasefile=${leases}`, '--no-resolv', '--no-hosts'],
          ...[`--dhcp-option=option:router,${S}`, `--dhcp-option=option:dns-server,${S}`, '--dhcp-userclass=set:ipxe,iPXE', `--dhcp-boot=tag:ipxe,http://${S}:8090/boot.ipxe`],
          // iPXE's no-pxedhcp setting, as pxeherd sends it (175.176 = 1: sub-option 0xb0, length 1, value 1),
          // forced since iPXE does not list 175 in its request: without it iPXE waits ~15 s for ProxyDHCP offers.
          '--dhcp-option-force=tag:ipxe,175,b0:01:01',
          '--enable-ra',
          '--dhcp-range=::,constructor:br0,ra-only',
        ],
        { log: path.join(dir, 'dnsmasq.log') },
      );
      await waitFor('nginx and dnsmasq', 15_000, async () => (await run('curl', ['-fsS', '-I', '-o', '/dev/null', `http://${S}:8090/vmlinuz`], { ns: lab.ns, timeoutMs: 5000 }).then(() => true, () => false)) && fs.existsSync(path.join(dir, 'dnsmasq.log')));
      return async () => {
        await stop(nginx, 'nginx');
        await stop(dnsmasq, 'dnsmasq');
        await run('ip', ['-n', lab.ns, '-6', 'addr', 'del', 'fd89::1/64', 'dev', 'br0'], { timeoutMs: 10_000 }).catch(() => undefined);
      };
    };
    const known = path.join(dir, 'known_hosts');
    fs.writeFileSync(known, `${NODE} ${fs.readFileSync(path.join(statedir, `hostkeys/${NODE}/ssh_host_ed25519_key.pub`), 'utf8').trim().split(/\s+/).slice(0, 2).join(' ')}\n`);
    const sshOk = () =>
      run('ssh', ['-i', key, '-o', `HostKeyAlias=${NODE}`, '-o', `UserKnownHostsFile=${known}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'HostKeyAlgorithms=ssh-ed25519', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=3', `root@${NODE_IP}`, 'true'], { ns: lab.ns, timeoutMs: 10_000 }).then(
        () => true,
        () => false,
      );
    const ipmi = (a: string[]) => run('ipmitool', ['-I', 'lanplus', '-H', bmc!.host, '-p', String(bmc!.port), '-U', 'admin', '-P', PASSWORD, '-C', '3', ...a], { ns: lab.ns, timeoutMs: 30_000 });
    const ref: { seconds: number; stages: Stage[] }[] = [];
    const referenceRound = async (r: number) => {
      const stopReference = await startReference();
      const mark = `r${r}`;
      fs.writeFileSync(path.join(web, 'boot.ipxe'), fs.readFileSync(path.join(web, 'boot.ipxe'), 'utf8').replace(/ref\.mark=\S+/, `ref.mark=${mark}`));
      // The admin's script: netboot on for this node, next boot from the network, power cycle, wait for SSH.
      fs.rmSync(path.join(web, 'nodes', `${MAC.replace(/:/g, '-')}.ipxe`), { force: true });
      log(`reference round ${r + 1}: ipmitool chassis bootdev pxe + power cycle, then ssh every 1 s`);
      const t0 = Date.now();
      await ipmi(['chassis', 'bootdev', 'pxe']);
      await ipmi(['chassis', 'power', 'cycle']);
      // SSH is probed once the stage one has started (the old system is gone by then).
      const started = () => parseNginxLog(fs.existsSync(accessLog) ? fs.readFileSync(accessLog, 'utf8') : '').some((q) => q.uri === `/mark/${mark}/start`);
      await waitFor('the reference install to reach SSH', TIMEOUT_S * 1000, async () => {
        if (!bmc!.vmPid() && Date.now() - t0 > 30_000) throw new Error('the VM is off');
        if (/REFERENCE INSTALL FAILED/.test(bmc!.console())) throw new Error(`reference stage one failed:\n${bmc!.console().slice(-3000)}`);
        return started() && (await sshOk());
      }, 1000);
      const end = Date.now();
      const stages = referenceStages(t0, parseNginxLog(fs.readFileSync(accessLog, 'utf8')), mark, end);
      ref.push({ seconds: (end - t0) / 1000, stages });
      log(`reference round ${r + 1}: ${((end - t0) / 1000).toFixed(1)} s power cycle to SSH`);
      await stopReference();
    };
    await referenceRound(0);
    for (let r = 1; r < o.rounds; r++) {
      await pxeherdRound(r);
      await referenceRound(r);
    }

    const a = median(px.map((x) => x.seconds));
    const b = median(ref.map((x) => x.seconds));
    const ratio = Math.round((a / b) * 100) / 100;
    const medStages = (rows: { stages: Stage[] }[]) => rows[0]!.stages.map((s0, i) => ({ stage: s0.stage, seconds: rows.every((x) => x.stages[i]?.seconds != null) ? Math.round(median(rows.map((x) => x.stages[i]!.seconds!)) * 10) / 10 : null }));
    const result = {
      bench: 'lifecycle',
      machine,
      image: { name: SHARED_IMAGE_NAME, rev: img.rev, treeMiB: Math.round(manifest.tree.bytes / 1048576), squashfsMiB: Math.round(manifest.artifacts['rootfs.squashfs']!.size / 1048576), tarZstMiB: Math.round(fs.statSync(path.join(web, 'image.tar.zst')).size / 1048576) },
      rounds: o.rounds,
      pxeherd: { seconds: a, stages: medStages(px), runs: px },
      reference: { seconds: b, stages: medStages(ref), runs: ref },
      ratio,
    };
    if (o.json) console.log(JSON.stringify(result));
    else {
      const fmt = (s: Stage[]) => s.map((x) => `    ${x.stage.padEnd(52)} ${x.seconds === null ? '   -' : x.seconds.toFixed(1).padStart(6)} s`).join('\n');
      console.log(`\ndisk install, power cycle to SSH with the kept host key (${machine}; median of ${o.rounds}):`);
      console.log(`  pxeherd (node reinstall --wait)                ${a.toFixed(1)} s\n${fmt(result.pxeherd.stages)}`);
      console.log(`  reference (dnsmasq + iPXE + nginx, curl|zstd|tar stage one)  ${b.toFixed(1)} s\n${fmt(result.reference.stages)}`);
      console.log(`  ratio ${ratio.toFixed(2)} (pxeherd / reference; < 1 means pxeherd is faster)`);
    }
  } finally {
    bmc?.stop();
    lab.destroy();
    if (!process.env.PXEHERD_KEEP_BENCH) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  let o: LifecycleOptions;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bench/lifecycle: ${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (o.help) console.log(USAGE);
  else
    await main(o).catch((e) => {
      console.error(`bench/lifecycle: ${(e as Error).stack ?? e}`);
      process.exitCode = 1;
    });
}
