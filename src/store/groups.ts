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
}

export class VnfsRepo {
  // Read on every boot and every kernel/initrd download: prepared once, not per call.
  private readonly q;

  constructor(private readonly db: DB) {
    this.q = {
      attrs: db.prepare<[string], { key: string; value: string }>('SELECT key, value FROM vnfs_attrs WHERE vnfs = ? ORDER BY key'),
      row: db.prepare<[string], VnfsRow>('SELECT * FROM vnfs WHERE name = ?'),
    };
  }

  private fromRow(r: VnfsRow): Vnfs {
    const attrs: Record<string, string> = {};
    for (const a of this.q.attrs.all(r.name)) attrs[a.key] = a.value;
    return { name: r.name, kernel: r.kernel, initrd: r.initrd, cmdline: r.cmdline, attrs, createdAt: r.created_at };
  }

  get(name: string): Vnfs | undefined {
    const r = this.q.row.get(name);
    return r && this.fromRow(r);
  }

  list(): (Vnfs & { nodes: number })[] {
    return this.db
      .prepare<[], VnfsRow & { nodes: number }>('SELECT v.*, (SELECT count(*) FROM nodes n WHERE n.vnfs = v.name) AS nodes FROM vnfs v ORDER BY name')
      .all()
      .map((r) => ({ ...this.fromRow(r), nodes: r.nodes }));
  }

  /** Insert or replace the record (files are copied by the caller first). */
  put(v: { name: string; kernel: string; initrd: string; cmdline: string; attrs?: Record<string, string> }): Vnfs {
    validateName('vnfs', v.name);
    for (const k of Object.keys(v.attrs ?? {})) validateAttrKey(k);
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO vnfs (name, kernel, initrd, cmdline, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET kernel = excluded.kernel, initrd = excluded.initrd, cmdline = excluded.cmdline`,
        )
        .run(v.name, v.kernel, v.initrd, v.cmdline, Date.now());
      for (const [k, val] of Object.entries(v.attrs ?? {})) {
        this.db.prepare('INSERT INTO vnfs_attrs (vnfs, key, value) VALUES (?, ?, ?) ON CONFLICT (vnfs, key) DO UPDATE SET value = excluded.value').run(v.name, k, val);
      }
    })();
    return this.get(v.name)!;
  }

  set(name: string, key: string, value: string): Vnfs {
    const v = this.get(name);
    if (!v) throw new NotFound(`no VNFS named "${name}"`);
    if (key === 'cmdline' || key === 'kernel' || key === 'initrd') {
      this.db.prepare(`UPDATE vnfs SET ${key} = ? WHERE name = ?`).run(value, name);
    } else {
      validateAttrKey(key);
      if (value === '') this.db.prepare('DELETE FROM vnfs_attrs WHERE vnfs = ? AND key = ?').run(name, key);
      else this.db.prepare('INSERT INTO vnfs_attrs (vnfs, key, value) VALUES (?, ?, ?) ON CONFLICT (vnfs, key) DO UPDATE SET value = excluded.value').run(name, key, value);
    }
    return this.get(name)!;
  }

  delete(name: string): void {
    const users = this.db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM nodes WHERE vnfs = ?').get(name)!.n;
    if (!this.get(name)) throw new NotFound(`no VNFS named "${name}"`);
    if (users > 0) throw new InvalidInput(`VNFS "${name}" is used by ${users} node(s): set them to another VNFS first`, 'vnfs');
    this.db.prepare('DELETE FROM vnfs WHERE name = ?').run(name);
  }
}
