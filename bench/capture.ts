// `vnfs capture` against the classic way (OpenSSH's client piping `tar -c` on the node into
// GNU tar -x on the master), in one run, against the same node: an OpenSSH server chrooted
// into a Debian root (overlay over the tree, as a stateless node's /), in a lab namespace.
// pxeherd's figure "to tree" is connect + stream + spool + validation + extraction,
// what the pipe does (minus validation and cleaning); "with pack" adds mksquashfs and the initrd.
//
//   npm run build && node --import tsx bench/capture.ts [--runs 3] [--tree DIR]
//
// Default tree: the shared test image (test/lab/image.ts, built with mmdebstrap when absent).
// Needs root, openssh-client, mksquashfs (as .ci/run installs).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { createLab, labUnavailable, run, tmpDir, waitFor } from '../test/lab/lab.js';
import { sharedDebianImage } from '../test/lab/image.js';
import { CLI } from '../test/helpers/cli.js';
import { ensureKey } from '../src/remote/keys.js';
import { ensureIdentity } from '../src/stateless/identity.js';
import { ALWAYS_EXCLUDED } from '../src/images/capture.js';

const args = process.argv.slice(2);
const opt = (n: string, d: string) => (args.includes(n) ? args[args.indexOf(n) + 1]! : d);
const RUNS = Number(opt('--runs', '3'));
const why = labUnavailable(['ssh', 'mksquashfs', 'unshare', 'chroot']);
if (why) {
  console.error(`bench/capture: ${why}`);
  process.exit(2);
}
const IP = '10.77.0.50';
const tree = args.includes('--tree') ? path.resolve(opt('--tree', '')) : (await sharedDebianImage()).tree;
const dir = tmpDir('pxeherd-bench-capture-');
const statedir = path.join(dir, 'var');
const config = path.join(dir, 'pxeherd.yaml');
fs.writeFileSync(config, `statedir: ${statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { port: 0 }\n`);
const lab = createLab({ name: 'phcb', clientAddrs: [IP] });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  const key = ensureKey(statedir);
  const id = await ensureIdentity(statedir, 'node');
  const bench = path.join(dir, 'node');
  fs.mkdirSync(bench);
  fs.copyFileSync(path.join(id, 'ssh_host_ed25519_key'), path.join(bench, 'hostkey'));
  fs.chmodSync(path.join(bench, 'hostkey'), 0o600);
  fs.writeFileSync(path.join(bench, 'ak'), key.publicKey + '\n');
  fs.writeFileSync(path.join(bench, 'sshd_config'), `ListenAddress ${IP}:22\nHostKey /run/bench/hostkey\nAuthorizedKeysFile /run/bench/ak\nPidFile /run/bench/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n`);
  const m = path.join(dir, 'm');
  const script = `set -e
mkdir -p ${m}/rw ${m}/root
mount -t tmpfs tmpfs ${m}/rw; mkdir ${m}/rw/upper ${m}/rw/work
mount -t overlay overlay -o lowerdir=${tree},upperdir=${m}/rw/upper,workdir=${m}/rw/work ${m}/root
R=${m}/root
mount -t proc proc $R/proc; mount --bind /dev $R/dev
mount -t tmpfs -o mode=0755 tmpfs $R/run; mkdir -m 0755 $R/run/sshd; cp -a ${bench} $R/run/bench
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
exec chroot $R /usr/sbin/sshd -D -e -f /run/bench/sshd_config`;
  const log = path.join(dir, 'sshd.log');
  lab.spawnInNs('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { ns: lab.clientNs, log });
  await waitFor('sshd', 15_000, () => fs.existsSync(log) && /Server listening/.test(fs.readFileSync(log, 'utf8')));
  execFileSync(process.execPath, [CLI, 'node', 'add', '52:54:00:00:0b:01', 'node', '--ip', IP, '--config', config]);
  const excludes = ALWAYS_EXCLUDED.map((p) => `--exclude=.${p}/*`).join(' ');
  const rows: { ssh: number; toTree: number; withPack: number; mib: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const dest = path.join(dir, `ref${i}`);
    fs.mkdirSync(dest);
    const t0 = Date.now();
    const ref = `ssh -i ${key.privatePath} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@${IP} 'cd / && tar --create --file=- --one-file-system --format=posix --numeric-owner --xattrs --xattrs-include="*" --anchored ${excludes} .' | tar -x -C ${dest} --xattrs --xattrs-include='*' --numeric-owner --same-owner -p`;
    await run('sh', ['-c', ref], { ns: lab.ns, timeoutMs: 1_800_000 });
    const ssh = (Date.now() - t0) / 1000;
    fs.rmSync(dest, { recursive: true, force: true });
    const r = await run(process.execPath, [CLI, 'vnfs', 'capture', 'node', `bench${i}`, '--json', '--config', config], { ns: lab.ns, timeoutMs: 1_800_000 });
    const j = JSON.parse(r.stdout) as { streamMs: number; streamedBytes: number; ms: number };
    rows.push({ ssh, toTree: j.streamMs / 1000, withPack: j.ms / 1000, mib: j.streamedBytes / 1048576 });
    console.log(`run ${i + 1}: ${j.streamedBytes / 1048576 | 0} MiB: OpenSSH + tar pipe ${ssh.toFixed(1)} s; pxeherd to tree ${(j.streamMs / 1000).toFixed(1)} s, with pack ${(j.ms / 1000).toFixed(1)} s`);
    spawnSync('rm', ['-rf', path.join(statedir, 'images', `bench${i}`), path.join(statedir, 'vnfs', `bench${i}`)]);
  }
  const s = median(rows.map((r) => r.ssh));
  const p = median(rows.map((r) => r.toTree));
  console.log(`median of ${RUNS}: ${median(rows.map((r) => r.mib)).toFixed(0)} MiB; OpenSSH + tar pipe ${s.toFixed(1)} s (${(median(rows.map((r) => r.mib)) / s).toFixed(1)} MiB/s); pxeherd to tree ${p.toFixed(1)} s (${(median(rows.map((r) => r.mib)) / p).toFixed(1)} MiB/s), ratio ${(s / p).toFixed(2)}x; with pack ${median(rows.map((r) => r.withPack)).toFixed(1)} s`);
} finally {
  lab.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
}
