import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import { describeHandlebarsError } from '../boot/templates.js';
import { writeTar, type TarEntry } from './tar.js';

/**
 * File overlays (issue 17): trees of files applied into a stateless node's root at boot and
 * refreshed by its check-in. Layers, least specific first (a more specific file wins, as for
 * nodescripts):
 *   <statedir>/overlays/vnfs/<vnfs>/   <statedir>/overlays/all/
 *   <statedir>/overlays/group/<group>/ <statedir>/overlays/node/<node>/
 * A file keeps its mode, owner and group from the overlay tree (files owned by the user
 * pxeherd runs as, an admin's copies, belong to root on the node). `NAME.hbs` is rendered per
 * node with Handlebars (strict: a missing value is an error naming the file and the key) and
 * installed as NAME. An empty `.wh.NAME` deletes NAME from the image (and from lower layers).
 */
export const DEFAULT_OVERLAYS_SRC = fileURLToPath(new URL('../../overlays', import.meta.url));

export class OverlayError extends Error {}

export interface OverlayLayer {
  where: string;
  dir: string;
}

export function overlayLayers(statedir: string, node: { name: string; group: string }, vnfs: string): OverlayLayer[] {
  const base = path.join(statedir, 'overlays');
  const out: OverlayLayer[] = [];
  if (vnfs) out.push({ where: `vnfs/${vnfs}`, dir: path.join(base, 'vnfs', vnfs) });
  out.push({ where: 'all', dir: path.join(base, 'all') });
  if (node.group) out.push({ where: `group/${node.group}`, dir: path.join(base, 'group', node.group) });
  out.push({ where: `node/${node.name}`, dir: path.join(base, 'node', node.name) });
  return out;
}

export interface OverlayFile {
  /** Path inside the node's root, without a leading '/'. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  target?: string;
  /** Layer and file it came from, e.g. "group/compute:etc/motd.hbs". */
  source: string;
}

export interface Overlay {
  files: OverlayFile[];
  /** Paths removed from the image, without a leading '/'. */
  deletes: string[];
  /** sha256 of the bundle: the node compares it to skip unchanged overlays. */
  hash: string;
}

interface Found {
  rel: string;
  st: fs.Stats;
  abs: string;
  where: string;
}

function walk(layer: OverlayLayer, rel: string, out: Found[]): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(path.join(layer.dir, rel), { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.endsWith('~')) continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    const abs = path.join(layer.dir, r);
    const st = fs.lstatSync(abs);
    out.push({ rel: r, st, abs, where: layer.where });
    if (st.isDirectory()) walk(layer, r, out);
  }
}

/**
 * The overlay for one node: layers merged, templates rendered with `context` (the boot
 * templates' context plus `nodes`, every node of the cluster).
 */
export function buildOverlay(layers: OverlayLayer[], context: object): Overlay {
  const files = new Map<string, OverlayFile>();
  const deletes = new Set<string>();
  for (const layer of layers) {
    const found: Found[] = [];
    walk(layer, '', found);
    for (const f of found) {
      const base = path.posix.basename(f.rel);
      const dir = path.posix.dirname(f.rel);
      const source = `${f.where}:${f.rel}`;
      const mine = f.st.uid === process.getuid?.();
      const meta = { mode: f.st.mode & 0o7777, uid: mine ? 0 : f.st.uid, gid: mine && f.st.gid === process.getgid?.() ? 0 : f.st.gid, source };
      if (base.startsWith('.wh.') && f.st.isFile()) {
        const victim = (dir === '.' ? '' : dir + '/') + base.slice(4);
        if (!base.slice(4)) throw new OverlayError(`${source}: a whiteout needs a name after .wh.`);
        for (const k of [...files.keys()]) if (k === victim || k.startsWith(victim + '/')) files.delete(k);
        deletes.add(victim);
        continue;
      }
      if (f.st.isDirectory()) {
        if (!files.has(f.rel) || files.get(f.rel)!.type !== 'dir') files.set(f.rel, { path: f.rel, type: 'dir', ...meta });
        deletes.delete(f.rel);
      } else if (f.st.isSymbolicLink()) {
        files.set(f.rel, { path: f.rel, type: 'symlink', ...meta, target: fs.readlinkSync(f.abs) });
        deletes.delete(f.rel);
      } else if (f.st.isFile()) {
        let rel = f.rel;
        let data = fs.readFileSync(f.abs);
        if (base.endsWith('.hbs')) {
          rel = rel.slice(0, -4);
          data = Buffer.from(renderTemplate(data.toString('utf8'), context, `overlay ${source}`));
        }
        files.set(rel, { path: rel, type: 'file', ...meta, data });
        deletes.delete(rel);
      }
      // sockets, fifos, devices in an overlay tree are ignored
    }
  }
  const list = [...files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const del = [...deletes].sort();
  return { files: list, deletes: del, hash: hashOf(list, del) };
}

function renderTemplate(src: string, context: object, name: string): string {
  let fn: HandlebarsTemplateDelegate;
  try {
    fn = Handlebars.compile(src, { noEscape: true, strict: true });
    return fn(context);
  } catch (e) {
    throw new OverlayError(describeHandlebarsError(e as Error, src, name));
  }
}

function hashOf(files: OverlayFile[], deletes: string[]): string {
  const h = crypto.createHash('sha256');
  for (const f of files) {
    h.update(`${f.type} ${f.path} ${f.mode.toString(8)} ${f.uid}:${f.gid} ${f.target ?? ''}\n`);
    if (f.data) h.update(crypto.createHash('sha256').update(f.data).digest('hex') + '\n');
  }
  for (const d of deletes) h.update(`delete ${d}\n`);
  return h.digest('hex');
}

/**
 * The bundle the node unpacks into a staging directory: the files under `root/`, the list of
 * paths to delete in `delete` and the hash in `hash` (the node keeps it to skip an unchanged
 * overlay on its next check-in).
 */
export function overlayTar(o: Overlay): Buffer {
  const root = { uid: 0, gid: 0 };
  const entries: TarEntry[] = [{ path: 'root', type: 'dir', mode: 0o755, ...root }];
  for (const f of o.files) entries.push({ path: `root/${f.path}`, type: f.type, mode: f.mode, uid: f.uid, gid: f.gid, data: f.data, target: f.target });
  entries.push({ path: 'delete', type: 'file', mode: 0o644, ...root, data: Buffer.from(o.deletes.map((d) => d + '\n').join('')) });
  entries.push({ path: 'hash', type: 'file', mode: 0o644, ...root, data: Buffer.from(o.hash + '\n') });
  return writeTar(entries);
}
