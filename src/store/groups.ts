import type { DB } from './db.js';
import type { Group, Vnfs } from '../nodes/types.js';
import { InvalidInput } from '../nodes/mac.js';
import { validateAttrKey, validateName } from '../nodes/names.js';
import { validateInstallAttr } from '../install/plan.js';
import { NotFound } from '../nodes/select.js';

/**
 * Groups exist when a node names them or an admin gave them attributes (SPL's `vlan`,
 * `head_node`); listing shows both kinds.
 */
export class GroupRepo {
  // Read on every boot (attributes for nodescripts and templates): prepared once, not per call.
  private readonly q;

  constructor(private readonly db: DB) {
    this.q = {
      attrs: db.prepare<[string], { key: string; value: string }>('SELECT key, value FROM group_attrs WHERE grp = ? ORDER BY key'),
      row: db.prepare<[string], { name: string; created_at: number }>('SELECT name, created_at FROM groups WHERE name = ?'),
      nodes: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM nodes WHERE grp = ?'),
    };
  }

  private attrs(name: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const r of this.q.attrs.all(name)) out[r.key] = r.value;
    return out;
  }

  get(name: string): (Group & { nodes: number }) | undefined {
    const row = this.q.row.get(name);
    const nodes = this.q.nodes.get(name)!.n;
    if (!row && nodes === 0) return undefined;
    return { name, attrs: this.attrs(name), createdAt: row?.created_at ?? 0, nodes };
  }

  list(): (Group & { nodes: number })[] {
    const names = this.db
      .prepare<[], { name: string }>("SELECT name FROM groups UNION SELECT grp AS name FROM nodes WHERE grp <> '' ORDER BY name")
      .all();
    return names.map((r) => this.get(r.name)!);
  }

  /** Attribute merge for nodescripts and templates: group's, overridden by the node's. */
  attrsOf(name: string): Record<string, string> {
    return name ? this.attrs(name) : {};
  }

  set(name: string, key: string, value: string): Group {
    validateName('group', name);
    validateInstallAttr(validateAttrKey(key), value);
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO groups (name, created_at) VALUES (?, ?)').run(name, Date.now());
      if (value === '') this.db.prepare('DELETE FROM group_attrs WHERE grp = ? AND key = ?').run(name, key);
      else this.db.prepare('INSERT INTO group_attrs (grp, key, value) VALUES (?, ?, ?) ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value').run(name, key, value);
    })();
    return this.get(name)!;
  }

  /** Refuses while nodes are in the group, unless they are moved to `moveTo`. */
  delete(name: string, moveTo?: string): void {
    const g = this.get(name);
    if (!g) throw new NotFound(`no group named "${name}"`);
    if (moveTo !== undefined && moveTo !== '') validateName('group', moveTo);
    this.db.transaction(() => {
      if (g.nodes > 0) {
        if (moveTo === undefined) throw new InvalidInput(`group "${name}" still has ${g.nodes} node(s): move them first (node set group ...) or use --move-to GROUP`, 'group');
        this.db.prepare('UPDATE nodes SET grp = ?, updated_at = ? WHERE grp = ?').run(moveTo, Date.now(), name);
      }
      this.db.prepare('DELETE FROM groups WHERE name = ?').run(name);
    })();
  }
}

interface VnfsRow {
  name: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  created_at: number;
  current_rev: number | null;
  arch: string;
  kernel_sha256?: string | null;
  kernel_size?: number | null;
  initrd_sha256?: string | null;
  initrd_size?: number | null;
}

/** The sha256 and size of one file of a kernel+initrd VNFS (migration 12). */
export interface VnfsFileHash {
  sha256: string;
  size: number;
}

/**
 * What the database says of NAME/FILE: `hash` undefined when FILE is the VNFS's kernel or
 * initrd but no hash was recorded (a VNFS added before migration 12).
 */
export interface VnfsFileRecord {
  role: 'kernel' | 'initrd';
  hash?: VnfsFileHash;
}

/** One revision of a VNFS's root filesystem (migration 3). */
export interface VnfsRevision {
  vnfs: string;
  rev: number;
  parent: number | null;
  source: string;
  comment: string;
  createdAt: number;
  /** The manifest as stored (JSON text). */
  manifest: string;
}

interface RevisionRow {
  vnfs: string;
  rev: number;
  parent: number | null;
  source: string | null;
  comment: string | null;
  created_at: number | null;
  manifest: string | null;
}

function revisionFromRow(r: RevisionRow): VnfsRevision {
  return { vnfs: r.vnfs, rev: r.rev, parent: r.parent, source: r.source ?? '', comment: r.comment ?? '', createdAt: r.created_at ?? 0, manifest: r.manifest ?? '{}' };
}

/** SQL: a node uses VNFS v (as NAME or pinned as NAME@REV). */
const USES = "(n.vnfs = v.name OR substr(n.vnfs, 1, length(v.name) + 1) = v.name || '@')";

export class VnfsRepo {
  // Read on every boot and every kernel/initrd download: prepared once, not per call.
  private readonly q;

  constructor(private readonly db: DB) {
    this.q = {
      attrs: db.prepare<[string], { key: string; value: string }>('SELECT key, value FROM vnfs_attrs WHERE vnfs = ? ORDER BY key'),
      row: db.prepare<[string], VnfsRow>('SELECT * FROM vnfs WHERE name = ?'),
      files: db.prepare<[string], Pick<VnfsRow, 'kernel' | 'initrd' | 'kernel_sha256' | 'kernel_size' | 'initrd_sha256' | 'initrd_size'>>(
        'SELECT kernel, initrd, kernel_sha256, kernel_size, initrd_sha256, initrd_size FROM vnfs WHERE name = ?',
      ),
    };
  }

  private fromRow(r: VnfsRow): Vnfs {
    const attrs: Record<string, string> = {};
    for (const a of this.q.attrs.all(r.name)) attrs[a.key] = a.value;
    // A VNFS with a root filesystem boots its current revision's packed kernel and stage one:
    // the paths are relative to <statedir>/vnfs/NAME/, so today's boot path serves them unchanged.
    const rooted = r.current_rev !== null && r.current_rev !== undefined;
    return {
      name: r.name,
      kernel: rooted ? `r${r.current_rev}/vmlinuz` : r.kernel,
      initrd: rooted ? `r${r.current_rev}/initrd.img` : r.initrd,
      cmdline: r.cmdline,
      attrs,
      createdAt: r.created_at,
      currentRev: r.current_rev ?? null,
      arch: r.arch ?? 'x86_64',
    };
  }

  get(name: string): Vnfs | undefined {
    const r = this.q.row.get(name);
    return r && this.fromRow(r);
  }

  list(): (Vnfs & { nodes: number })[] {
    return this.db
      .prepare<[], VnfsRow & { nodes: number }>(`SELECT v.*, (SELECT count(*) FROM nodes n WHERE ${USES}) AS nodes FROM vnfs v ORDER BY name`)
      .all()
      .map((r) => ({ ...this.fromRow(r), nodes: r.nodes }));
  }

  /**
   * Insert or replace the record (files are copied by the caller first). `hashes`: the files'
   * sha256 and size as copied (servers lacking them fetch and verify against these); absent,
   * none is recorded (the server holding the files records them when first asked).
   */
  put(v: { name: string; kernel: string; initrd: string; cmdline: string; attrs?: Record<string, string>; hashes?: { kernel: VnfsFileHash; initrd: VnfsFileHash } }): Vnfs {
    validateName('vnfs', v.name);
    for (const k of Object.keys(v.attrs ?? {})) validateAttrKey(k);
    const h = v.hashes;
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO vnfs (name, kernel, initrd, cmdline, created_at, kernel_sha256, kernel_size, initrd_sha256, initrd_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET kernel = excluded.kernel, initrd = excluded.initrd, cmdline = excluded.cmdline,
             kernel_sha256 = excluded.kernel_sha256, kernel_size = excluded.kernel_size, initrd_sha256 = excluded.initrd_sha256, initrd_size = excluded.initrd_size`,
        )
        .run(v.name, v.kernel, v.initrd, v.cmdline, Date.now(), h?.kernel.sha256 ?? null, h?.kernel.size ?? null, h?.initrd.sha256 ?? null, h?.initrd.size ?? null);
      for (const [k, val] of Object.entries(v.attrs ?? {})) {
        this.db.prepare('INSERT INTO vnfs_attrs (vnfs, key, value) VALUES (?, ?, ?) ON CONFLICT (vnfs, key) DO UPDATE SET value = excluded.value').run(v.name, k, val);
      }
    })();
    return this.get(v.name)!;
  }

  set(name: string, key: string, value: string): Vnfs {
    const v = this.get(name);
    if (!v) throw new NotFound(`no VNFS named "${name}"`);
    if (key === 'kernel' || key === 'initrd') {
      // Another file of the directory: its hash is not known here (the server holding it records it when first asked).
      this.db.prepare(`UPDATE vnfs SET ${key} = ?, ${key}_sha256 = CASE WHEN ${key} = ? THEN ${key}_sha256 END, ${key}_size = CASE WHEN ${key} = ? THEN ${key}_size END WHERE name = ?`).run(value, value, value, name);
    } else if (key === 'cmdline') {
      this.db.prepare(`UPDATE vnfs SET ${key} = ? WHERE name = ?`).run(value, name);
    } else {
      validateAttrKey(key);
      if (value === '') this.db.prepare('DELETE FROM vnfs_attrs WHERE vnfs = ? AND key = ?').run(name, key);
      else this.db.prepare('INSERT INTO vnfs_attrs (vnfs, key, value) VALUES (?, ?, ?) ON CONFLICT (vnfs, key) DO UPDATE SET value = excluded.value').run(name, key, value);
    }
    return this.get(name)!;
  }

  /** NAME/FILE when FILE is the kernel or initrd of VNFS NAME, with its recorded hash; undefined for any other file (one indexed read: on the path of every kernel download). */
  file(name: string, file: string): VnfsFileRecord | undefined {
    const r = this.q.files.get(name);
    if (!r || !file) return undefined;
    const hash = (sha256: string | null | undefined, size: number | null | undefined) => (sha256 && size !== null && size !== undefined ? { sha256, size: Number(size) } : undefined);
    if (file === r.kernel) return { role: 'kernel', hash: hash(r.kernel_sha256, r.kernel_size) };
    if (file === r.initrd) return { role: 'initrd', hash: hash(r.initrd_sha256, r.initrd_size) };
    return undefined;
  }

  /**
   * Record the hash of a file whose VNFS has none (added before migration 12), by the server
   * holding it: only while it is still that VNFS's kernel/initrd and still unrecorded, so a
   * hash `vnfs add` recorded meanwhile is never overwritten (on PostgreSQL the write-through of
   * a server applies the same condition: PostgresBackend, isHashFill). True when recorded.
   */
  recordFileHash(name: string, file: string, hash: VnfsFileHash): boolean {
    const role = this.file(name, file)?.role;
    if (!role) return false;
    const r = this.db.prepare(`UPDATE vnfs SET ${role}_sha256 = ?, ${role}_size = ? WHERE name = ? AND ${role} = ? AND ${role}_sha256 IS NULL`).run(hash.sha256, hash.size, name, file);
    return r.changes === 1;
  }

  delete(name: string): void {
    const users = this.usersOf(name).length;
    if (!this.get(name)) throw new NotFound(`no VNFS named "${name}"`);
    if (users > 0) throw new InvalidInput(`VNFS "${name}" is used by ${users} node(s): set them to another VNFS first`, 'vnfs');
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM vnfs WHERE name = ?').run(name);
      this.db.prepare('DELETE FROM meta WHERE key = ?').run(`vnfs.lastrev.${name}`);
    })();
  }

  // ---- revisions (images) ----------------------------------------------------------

  /** Nodes that use this VNFS, with their own field value (NAME or NAME@REV). */
  usersOf(name: string): { name: string; mac: string; grp: string; vnfs: string }[] {
    return this.db
      .prepare<[string, string, string], { name: string; mac: string; grp: string; vnfs: string }>(
        "SELECT name, mac, grp, vnfs FROM nodes WHERE vnfs = ? OR substr(vnfs, 1, length(?) + 1) = ? || '@' ORDER BY name",
      )
      .all(name, name, name);
  }

  revisions(name: string): VnfsRevision[] {
    return this.db.prepare<[string], RevisionRow>('SELECT * FROM vnfs_revisions WHERE vnfs = ? ORDER BY rev').all(name).map(revisionFromRow);
  }

  revision(name: string, rev: number): VnfsRevision | undefined {
    const r = this.db.prepare<[string, number], RevisionRow>('SELECT * FROM vnfs_revisions WHERE vnfs = ? AND rev = ?').get(name, rev);
    return r && revisionFromRow(r);
  }

  /**
   * The highest revision number ever recorded (0 when none), pruned ones included: a number
   * is never used twice, so r<N> URLs and node caches never mean two different images.
   */
  maxRev(name: string): number {
    const live = this.db.prepare<[string], { m: number | null }>('SELECT max(rev) AS m FROM vnfs_revisions WHERE vnfs = ?').get(name)!.m ?? 0;
    const mark = this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(`vnfs.lastrev.${name}`);
    return Math.max(live, Number(mark?.value ?? 0) || 0);
  }

  /**
   * Record a committed revision and make it current, in one transaction (the VNFS record is
   * created when it does not exist yet: a built image needs no `vnfs add`).
   */
  addRevision(r: Omit<VnfsRevision, 'createdAt'> & { createdAt: number; arch?: string }, makeCurrent = true): void {
    validateName('vnfs', r.vnfs);
    this.db.transaction(() => {
      this.db.prepare("INSERT OR IGNORE INTO vnfs (name, kernel, initrd, cmdline, created_at, arch) VALUES (?, '', '', '', ?, ?)").run(r.vnfs, Date.now(), r.arch ?? 'x86_64');
      this.db
        .prepare('INSERT INTO vnfs_revisions (vnfs, rev, parent, source, comment, created_at, manifest) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(r.vnfs, r.rev, r.parent, r.source, r.comment, r.createdAt, r.manifest);
      if (makeCurrent) this.db.prepare('UPDATE vnfs SET current_rev = ? WHERE name = ?').run(r.rev, r.vnfs);
      this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))').run(`vnfs.lastrev.${r.vnfs}`, String(r.rev));
    })();
  }

  setCurrent(name: string, rev: number): void {
    if (!this.revision(name, rev)) throw new NotFound(`VNFS "${name}" has no revision ${rev}`);
    this.db.prepare('UPDATE vnfs SET current_rev = ? WHERE name = ?').run(rev, name);
  }

  deleteRevision(name: string, rev: number): void {
    this.db.prepare('DELETE FROM vnfs_revisions WHERE vnfs = ? AND rev = ?').run(name, rev);
  }
}
