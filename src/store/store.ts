import path from 'node:path';
import { openDatabase, type DB } from './db.js';
import { NodeRepo } from './nodes.js';
import { GroupRepo, VnfsRepo } from './groups.js';
import { LeaseRepo } from './leases.js';
import { Lease6Repo } from './leases6.js';
import { EventRepo } from './events.js';
import { InventoryRepo } from './inventory.js';
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
  readonly installs: InstallRepo;

  constructor(readonly db: DB) {
    this.nodes = new NodeRepo(db);
    this.groups = new GroupRepo(db);
    this.vnfs = new VnfsRepo(db);
    this.leases = new LeaseRepo(db);
    this.leases6 = new Lease6Repo(db);
    this.events = new EventRepo(db);
    this.inventory = new InventoryRepo(db);
    this.installs = new InstallRepo(db);
  }

  static open(statedir: string): Store {
    return new Store(openDatabase(path.join(statedir, 'pxeherd.db')));
  }

  /** Merged attributes for a node: its group's, overridden by its own. */
  attrsFor(node: { group: string; attrs: Record<string, string> }): Record<string, string> {
    return { ...this.groups.attrsOf(node.group), ...node.attrs };
  }

  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  close(): void {
    this.events.flush();
    this.db.close();
  }
}

export function dbPath(statedir: string): string {
  return path.join(statedir, 'pxeherd.db');
}
