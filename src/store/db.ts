import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';

export type DB = Database.Database;

/**
 * Versioned migrations: each entry runs once, in order, inside one transaction together with
 * the bump of `user_version`, so a crash mid-migration leaves the previous version intact.
 */
const MIGRATIONS: string[] = [
  // 1: the base schema
  `
  CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE group_attrs (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE ON UPDATE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (grp, key)
  ) WITHOUT ROWID;
  CREATE TABLE vnfs (
    name TEXT PRIMARY KEY,
    kernel TEXT NOT NULL DEFAULT '',
    initrd TEXT NOT NULL DEFAULT '',
    cmdline TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
  );
  CREATE TABLE vnfs_attrs (
    vnfs TEXT NOT NULL REFERENCES vnfs(name) ON DELETE CASCADE ON UPDATE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (vnfs, key)
  ) WITHOUT ROWID;
  CREATE TABLE nodes (
    mac TEXT PRIMARY KEY CHECK (length(mac) = 17),
    name TEXT NOT NULL UNIQUE,
    grp TEXT NOT NULL DEFAULT '',
    vnfs TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    debug INTEGER NOT NULL DEFAULT 0 CHECK (debug IN (0, 1)),
    state TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    last_contact INTEGER,
    boot TEXT NOT NULL DEFAULT 'provision' CHECK (boot IN ('provision', 'local', 'once', 'disabled')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX nodes_ip ON nodes(ip) WHERE ip <> '';
  CREATE INDEX nodes_grp ON nodes(grp);
  CREATE TABLE node_attrs (
    mac TEXT NOT NULL REFERENCES nodes(mac) ON DELETE CASCADE ON UPDATE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (mac, key)
  ) WITHOUT ROWID;
  CREATE TABLE leases (
    mac TEXT PRIMARY KEY,
    ip TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    hostname TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
    subnet TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    mac TEXT,
    node TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
  );
  CREATE INDEX events_mac_time ON events(mac, time);
  CREATE INDEX events_node_time ON events(node, time);
  CREATE INDEX events_time ON events(time);
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  `,
  // 2: hardware inventory (current and previous report per node) and the latest check-in health.
  // ON UPDATE CASCADE: `node replace` carries them to the new MAC, so the new machine's first
  // report shows up as a change against the old one's.
  `
  CREATE TABLE inventory (
    mac TEXT NOT NULL REFERENCES nodes(mac) ON DELETE CASCADE ON UPDATE CASCADE,
    slot TEXT NOT NULL CHECK (slot IN ('current', 'previous')),
    version INTEGER NOT NULL,
    time INTEGER NOT NULL,
    seen INTEGER NOT NULL,
    data TEXT NOT NULL,
    facts TEXT NOT NULL,
    PRIMARY KEY (mac, slot)
  ) WITHOUT ROWID;
  CREATE TABLE health (
    mac TEXT PRIMARY KEY REFERENCES nodes(mac) ON DELETE CASCADE ON UPDATE CASCADE,
    time INTEGER NOT NULL,
    uptime INTEGER,
    load REAL,
    memfree_kb INTEGER
  );
  `,
  // 3: images (vnfs revisions). A VNFS with a root filesystem has a current revision; NULL keeps
  // today's kernel+initrd VNFS. Revisions are immutable; the manifest is the JSON nodes verify against.
  `
  ALTER TABLE vnfs ADD COLUMN current_rev INTEGER;
  ALTER TABLE vnfs ADD COLUMN arch TEXT NOT NULL DEFAULT 'x86_64';
  CREATE TABLE vnfs_revisions (
    vnfs TEXT REFERENCES vnfs(name) ON DELETE CASCADE ON UPDATE CASCADE,
    rev INTEGER,
    parent INTEGER,
    source TEXT,
    comment TEXT,
    created_at INTEGER,
    manifest TEXT,
    PRIMARY KEY (vnfs, rev)
  );
  `,
  // 4: DHCPv6 leases, keyed by the client's DUID and IAID (RFC 8415 §4.2) and the node's MAC
  // (virtual machines' firmware often shares one all-zero DUID-UUID).
  `
  CREATE TABLE leases6 (
    duid TEXT NOT NULL,
    iaid INTEGER NOT NULL,
    mac TEXT NOT NULL,
    ip TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (duid, iaid, mac)
  );
  CREATE INDEX leases6_mac ON leases6(mac, updated_at);
  `,
  // 5: disk installs (install=disk): the revision on each node's disk and the one before it (for a
  // rollback), and when a local boot was last handed out (a second one without a check-in in
  // between is a disk boot that failed and came back to PXE).
  `
  CREATE TABLE node_installs (
    mac TEXT PRIMARY KEY REFERENCES nodes(mac) ON DELETE CASCADE ON UPDATE CASCADE,
    vnfs TEXT NOT NULL,
    rev INTEGER NOT NULL,
    disk TEXT NOT NULL DEFAULT '',
    firmware TEXT NOT NULL DEFAULT '',
    installed_at INTEGER NOT NULL,
    prev_vnfs TEXT,
    prev_rev INTEGER,
    prev_installed_at INTEGER,
    local_boot_at INTEGER,
    local_boot_failures INTEGER NOT NULL DEFAULT 0
  );
  `,
  // 6: which server wrote a lease or an event (several servers on one PostgreSQL, issue 19;
  // src/store/pg/schema.ts has the same migration for PostgreSQL)
  `
  ALTER TABLE leases ADD COLUMN server_id TEXT NOT NULL DEFAULT '';
  ALTER TABLE events ADD COLUMN server_id TEXT NOT NULL DEFAULT '';
  `,
  // 7: pgserve — the change log several servers on one PostgreSQL follow to keep their local
  // replicas current (src/store/pg/replica.ts). On PostgreSQL triggers fill it; on SQLite it stays
  // empty (one schema on both backends, so `db copy` maps table to table).
  `
  CREATE TABLE changes (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, key TEXT NOT NULL, xid TEXT NOT NULL DEFAULT '', time INTEGER NOT NULL DEFAULT 0);
  `,
  // 8: query19 — indexes for `node list QUERY` compiled to SQL (src/nodes/query-sql.ts): query
  // globs are case-insensitive LIKEs, which read an index range only from a NOCASE index.
  // node_attrs(key, value) also carries the MAC (its primary key), so an attribute term is
  // answered from the index alone.
  `
  CREATE INDEX node_attrs_key_value ON node_attrs(key, value COLLATE NOCASE);
  CREATE INDEX nodes_name_nocase ON nodes(name COLLATE NOCASE);
  CREATE INDEX nodes_grp_nocase ON nodes(grp COLLATE NOCASE);
  CREATE INDEX nodes_vnfs_nocase ON nodes(vnfs COLLATE NOCASE);
  CREATE INDEX nodes_state_nocase ON nodes(state COLLATE NOCASE);
  `,
  // 9: pgwrite — on PostgreSQL, change-log triggers on inventory, health and node_installs (what
  // nodes report is written through to PostgreSQL and replicated); nothing to do on SQLite.
  'SELECT 1;',
  // 10: pgv6 — which server wrote a DHCPv6 lease (several servers on one PostgreSQL share the
  // leases6 table, src/store/pg/leases6.ts); on PostgreSQL a change-log trigger on leases6 too.
  `
  ALTER TABLE leases6 ADD COLUMN server_id TEXT NOT NULL DEFAULT '';
  `,
  // 11: pgbal19 — the servers sharing a PostgreSQL, by heartbeat (`dhcp.answer: balanced`,
  // src/store/pg/membership.ts); on SQLite it stays empty (one server owns every client).
  `
  CREATE TABLE dhcp_servers (server_id TEXT PRIMARY KEY, last_seen INTEGER NOT NULL, started INTEGER NOT NULL);
  `,
  // 12: vnfsfetch19 — the sha256 and size of a kernel+initrd VNFS's two files, recorded by
  // `vnfs add` / `stage1 build`: a server lacking them fetches them from images.origins and
  // verifies them, as it does a revision's artifacts (src/peers/artifacts.ts). NULL: added
  // before this migration; the server holding the file hashes it when first asked and records it.
  `
  ALTER TABLE vnfs ADD COLUMN kernel_sha256 TEXT;
  ALTER TABLE vnfs ADD COLUMN kernel_size INTEGER;
  ALTER TABLE vnfs ADD COLUMN initrd_sha256 TEXT;
  ALTER TABLE vnfs ADD COLUMN initrd_size INTEGER;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Where better-sqlite3's compiled addon is, found once (null: not looked up yet). */
let sqliteAddonFile: string | undefined | null = null;

/**
 * better-sqlite3's compiled addon by its path, or undefined to let better-sqlite3 find it. Why:
 * by default it asks the `bindings` package, which walks the call stack and tries a dozen
 * candidate paths with their package.json files: ~15 ms of every CLI command's start on this
 * machine (BENCHMARKS.md, `node list` at 100 000 nodes), more than the query of a few nodes.
 */
function sqliteAddon(): string | undefined {
  if (sqliteAddonFile === null) {
    try {
      const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
      const file = path.join(path.dirname(pkg), 'build', 'Release', 'better_sqlite3.node');
      sqliteAddonFile = fs.existsSync(file) ? file : undefined;
    } catch {
      sqliteAddonFile = undefined;
    }
  }
  return sqliteAddonFile;
}

export function openDatabase(file: string): DB {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file, { nativeBinding: sqliteAddon() });
  // WAL: readers (CLI, API) never block the server's writers; NORMAL is durable against
  // process crashes (kill -9), which is the failure the reliability suite exercises.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Two processes registering nodes at once wait for each other instead of failing.
  db.pragma('busy_timeout = 10000');
  // Reads through a memory map instead of read() into SQLite's own 2 MB page cache: a query
  // that touches 10 000 of 100 000 nodes and their attributes takes 20 % less CPU, both in a
  // fresh CLI process and again in a server (measured: BENCHMARKS.md, issue 19, q100k19).
  // Address space only; writes still go through the WAL.
  db.pragma('mmap_size = 268435456');
  migrate(db);
  return db;
}

export function migrate(db: DB): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `database schema version ${current} is newer than this pxeherd understands (${MIGRATIONS.length}): upgrade pxeherd`,
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      // Another process may have migrated while we waited for the write lock.
      const now = db.pragma('user_version', { simple: true }) as number;
      if (now > v) return;
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
