import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { CpioEntry } from './cpio.js';

/**
 * A dynamically linked program of the master, with the shared libraries and the loader it
 * needs, as initramfs entries at the same paths. Used for `unsquashfs` in an image's stage
 * one (vnfs_mode=tmpfs): the master packs with its mksquashfs, the node unpacks with the
 * unsquashfs of the same squashfs-tools, and busybox has none. Only for an image of the
 * master's own architecture (the caller checks).
 */

/** Pure: the library paths `ldd` printed ("libz.so.1 => /lib/.../libz.so.1 (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)"). */
export function parseLdd(text: string): { libs: string[]; missing: string[] } {
  const libs: string[] = [];
  const missing: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('linux-vdso') || line.startsWith('linux-gate')) continue;
    let m = /^(\S+) => not found/.exec(line);
    if (m) {
      missing.push(m[1]!);
      continue;
    }
    m = /^\S+ => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line) ?? /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (m && !libs.includes(m[1]!)) libs.push(m[1]!);
  }
  return { libs, missing };
}

export class HostBinaryError extends Error {}

/** Where a program is on PATH, or undefined. */
export function whichBinary(name: string, dirs = ['/usr/bin', '/usr/sbin', '/bin', '/sbin']): string | undefined {
  for (const d of dirs) {
    const f = path.join(d, name);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** The program (at usr/bin/NAME) and its libraries as cpio entries, parents first; `files` are the host paths read. */
export function hostBinaryEntries(bin: string, destName = `usr/bin/${path.basename(bin)}`): { entries: CpioEntry[]; files: string[] } {
  const r = spawnSync('ldd', [bin], { encoding: 'utf8' });
  if (r.error) throw new HostBinaryError(`ldd ${bin}: ${r.error.message} (install libc-bin)`);
  const { libs, missing } = parseLdd(r.stdout);
  if (missing.length) throw new HostBinaryError(`${bin} needs libraries this machine lacks: ${missing.join(', ')}`);
  if (r.status !== 0 && !/not a dynamic executable/.test(r.stderr + r.stdout)) throw new HostBinaryError(`ldd ${bin} failed: ${(r.stderr || r.stdout).trim()}`);
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const addDirs = (rel: string) => {
    const parts = path.posix.dirname(rel).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ type: 'dir', name: d, mode: 0o755 });
      }
    }
  };
  const files = [bin, ...libs];
  for (const [i, f] of files.entries()) {
    const rel = i === 0 ? destName : f.replace(/^\/+/, '');
    addDirs(rel);
    // The loader and libraries are often symlinks: the initramfs gets the file itself.
    entries.push({ type: 'file', name: rel, data: fs.readFileSync(fs.realpathSync(f)), mode: 0o755 });
  }
  return { entries, files };
}
