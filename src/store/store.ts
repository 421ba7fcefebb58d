import os from 'node:os';
import path from 'node:path';
import { redactUrl } from './pg/url.js';
import { openDatabase, type DB } from './db.js';
import { NodeRepo } from './nodes.js';
import { GroupRepo, VnfsRepo } from './groups.js';
import { LeaseRepo } from './leases.js';
import { Lease6Repo } from './leases6.js';
import { EventRepo } from './events.js';
import { InventoryRepo } from './inventory.js';
import { BackgroundCheckpointer } from './checkpoint.js';
import { InstallRepo } from './installs.js';

/** The node database: one SQLite file in WAL mode under the state directory. */
export class Store {
  readonly nodes: NodeRepo;
  readonly groups: GroupRepo;
  readonly vnfs: VnfsRepo;
  readonly leases: LeaseRepo;
  readonly leases6: Lease6Repo;
  readonly events: EventRepo;
  readonly inventory: InventoryRepo;
  private checkpointer?: BackgroundCheckpointer;
  readonly installs: InstallRepo;

  /** Recorded on leases and events (config `server_id`, default the host name). */
  readonly serverId: string;

  constructor(
    readonly db: DB,
    opts: { serverId?: string } = {},
  ) {
    this.serverId = opts.serverId ?? os.hostname();
    this.nodes = new NodeRepo(db);
    this.groups = new GroupRepo(db);
    this.vnfs = new VnfsRepo(db);
    this.leases = new LeaseRepo(db, this.serverId);
    this.leases6 = new Lease6Repo(db);
    this.events = new EventRepo(db, this.serverId);
    this.inventory = new InventoryRepo(db);
    this.installs = new InstallRepo(db);
  }

  static open(statedir: string, opts: { serverId?: string } = {}): Store {
    return new Store(openDatabase(path.join(statedir, 'pxeherd.db')), opts);
  }

  /**
   * The synchronous store a configuration names: SQLite under `statedir`, or the file of
   * `database: sqlite:PATH`. A postgres:// database is reached through the asynchronous
   * StoreBackend (src/store/backend.ts) only; this path refuses it with a clear message.
   */
  static openConfigured(cfg: { statedir: string; database?: string; server_id?: string }): Store {
    const opts = { serverId: cfg.server_id || undefined };
    const database = cfg.database ?? ''; // configurations built in code before these keys existed
    if (database.startsWith('sqlite:')) return new Store(openDatabase(path.resolve(database.slice('sqlite:'.length))), opts);
    if (database) {
      throw new DatabaseUnsupported(
        `database: ${redactUrl(database)}: this command runs on SQLite only so far; on PostgreSQL use \`pxeherd serve\`, \`pxeherd db ...\` and the admin commands (node, group, vnfs, script, explain, stage1, power, exec, overlay) (unset database/PXEHERD_DATABASE to use SQLite under ${cfg.statedir})`,
      );
    }
    return Store.open(cfg.statedir, opts);
  }

  /** Merged attributes for a node: its group's, overridden by its own. */
  attrsFor(node: { group: string; attrs: Record<string, string> }): Record<string, string> {
    return { ...this.groups.attrsOf(node.group), ...node.attrs };
  }

  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  /**
   * For a long-running server: WAL checkpoints on a worker thread instead of inside the commit
   * that crosses 1000 pages (src/store/checkpoint.ts). Short-lived CLI commands do without.
   */
  checkpointInBackground(warn?: (msg: string) => void): void {
    this.checkpointer ??= new BackgroundCheckpointer(this.db, this.db.name, 200, warn);
    this.checkpointer.start();
  }

  close(): void {
    this.checkpointer?.stop();
    this.events.flush();
    this.db.close();
  }
}

export function dbPath(statedir: string): string {
  return path.join(statedir, 'pxeherd.db');
}

/** The configured database is one this code path cannot use (exit 1, the reason in the message). */
export class DatabaseUnsupported extends Error {}
