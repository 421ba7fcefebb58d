// Packing a node image: the same root filesystem packed by pxeherd (what `vnfs build/import`
// do: mksquashfs zstd, SQUASHFS_OPTIONS), by Warewulf's pipeline (`find . | cpio -o -H newc |
// pigz`) and by mksquashfs with its defaults, in one run, alternating; plus what the node does
// with each (squashfs: loop-mount and read every file; cpio.gz: pigz -dc | cpio -id into a
// tmpfs), and the times of `vnfs build` and `vnfs import` themselves.
//
// Usage (root): node --import tsx bench/image.ts [--tree DIR] [--rounds N] [--json]
//   without --tree the image is built with `pxeherd vnfs build b --debian bookworm` first (timed).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SQUASHFS_OPTIONS } from '../src/images/pack.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const ROUNDS = Number(opt('--rounds') ?? 2);
const asJson = args.includes('--json');
const cli = path.resolve(import.meta.dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(cli)) throw new Error('run "npm run build" first');
if (process.getuid?.() !== 0) throw new Error('bench/image.ts needs root (mmdebstrap --mode=root, loop mounts)');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-image-'));
const sh = (cmd: string, cwd?: string) => {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, out: r.stdout };
};
const cfg = (name: string) => {
  const f = path.join(work, `${name}.yaml`);
  fs.writeFileSync(f, `statedir: ${path.join(work, name)}\n`);
  return f;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  const result: Record<string, unknown> = { machine: { cpus: os.cpus().length, kernel: os.release() }, rounds: ROUNDS };
  let tree = opt('--tree');
  if (!tree) {
    const c = cfg('build');
    const b = sh(`node ${cli} vnfs build b --debian bookworm --json --config ${c}`);
    result.buildSeconds = b.s;
    tree = path.join(work, 'build', 'images', 'b', String(JSON.parse(b.out).rev), 'tree');
  }
  const du = Number(sh(`du -sb --apparent-size ${tree} | cut -f1`).out.trim());
  const files = Number(sh(`find ${tree} | wc -l`).out.trim());
  result.tree = { path: tree, bytes: du, entries: files };
  // vnfs import of the same tree (copy, xattrs, pack), then again (everything unchanged: links, nothing repacked)
  const ic = cfg('import');
  result.importSeconds = sh(`node ${cli} vnfs import i ${tree} --json --config ${ic}`).s;
  result.reimportSeconds = sh(`node ${cli} vnfs import i ${tree} --json --config ${ic}`).s;

  const methods: Record<string, { pack: (out: string) => string; unpack: (f: string, dest: string) => string; file: string }> = {
    pxeherd: {
      file: 'rootfs.squashfs',
      pack: (out) => `mksquashfs ${tree} ${out} ${SQUASHFS_OPTIONS.join(' ')} -quiet -no-progress`,
      unpack: (f, dest) => `mount -o loop,ro -t squashfs ${f} ${dest} && tar -C ${dest} -cf - . | cat > /dev/null; umount ${dest}`,
    },
    warewulf: {
      file: 'image.cpio.gz',
      pack: (out) => `cd ${tree} && find . | cpio --quiet -o -H newc | pigz -c > ${out}`,
      unpack: (f, dest) => `mount -t tmpfs -o size=90% tmpfs ${dest} && cd ${dest} && pigz -dc ${f} | cpio --quiet -idm; cd /; umount ${dest}`,
    },
    'mksquashfs-defaults': {
      file: 'defaults.squashfs',
      pack: (out) => `mksquashfs ${tree} ${out} -noappend -quiet -no-progress`,
      unpack: (f, dest) => `mount -o loop,ro -t squashfs ${f} ${dest} && tar -C ${dest} -cf - . | cat > /dev/null; umount ${dest}`,
    },
  };
  const packs: Record<string, number[]> = {};
  const unpacks: Record<string, number[]> = {};
  const sizes: Record<string, number> = {};
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, m] of Object.entries(methods)) {
      const out = path.join(work, m.file);
      fs.rmSync(out, { force: true });
      sh('sync; echo 3 > /proc/sys/vm/drop_caches || true');
      (packs[name] ??= []).push(sh(m.pack(out)).s);
      sizes[name] = fs.statSync(out).size;
      sh('sync; echo 3 > /proc/sys/vm/drop_caches || true');
      (unpacks[name] ??= []).push(sh(m.unpack(out, mnt)).s);
    }
  }
  result.methods = Object.fromEntries(
    Object.keys(methods).map((n) => [n, { packSeconds: median(packs[n]!), packRuns: packs[n], bytes: sizes[n], nodeSideSeconds: median(unpacks[n]!), nodeSideRuns: unpacks[n] }]),
  );
  if (asJson) console.log(JSON.stringify(result, null, 2));
  else {
    const m = result.methods as Record<string, { packSeconds: number; bytes: number; nodeSideSeconds: number }>;
    console.log(`tree: ${tree} (${(du / 1048576).toFixed(0)} MiB, ${files} entries); ${os.cpus().length} CPUs; median of ${ROUNDS}`);
    if (result.buildSeconds) console.log(`vnfs build (mmdebstrap + pack): ${(result.buildSeconds as number).toFixed(1)} s`);
    console.log(`vnfs import (copy + pack): ${(result.importSeconds as number).toFixed(1)} s; again, unchanged: ${(result.reimportSeconds as number).toFixed(1)} s`);
    console.log('method               pack s   size MiB   node side s (read all / unpack)');
    for (const [n, v] of Object.entries(m)) console.log(`${n.padEnd(20)} ${v.packSeconds.toFixed(1).padStart(6)}   ${(v.bytes / 1048576).toFixed(1).padStart(8)}   ${v.nodeSideSeconds.toFixed(1).padStart(6)}`);
  }
} finally {
  spawnSync('sh', ['-c', `umount ${path.join(work, 'mnt')} 2>/dev/null; rm -rf ${work}`]);
}
