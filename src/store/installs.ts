import type { DB } from './db.js';

/** What is on a node's disk (install=disk): written when the node reports install.done. */
export interface NodeInstall {
  mac: string;
  vnfs: string;
  rev: number;
  disk: string;
  firmware: string;
  installedAt: number;
  /** The installation it replaced: what a rollback goes back to. */
  previous: { vnfs: string; rev: number; installedAt: number } | null;
  /** When pxeherd last told the node to boot its disk (ms since epoch). */
  localBootAt: number | null;
  /** Disk boots in a row that came back to PXE without the OS checking in. */
  localBootFailures: number;
}

interface Row {
  mac: string;
  vnfs: string;
  rev: number;
  disk: string;
  firmware: string;
  installed_at: number;
  prev_vnfs: string | null;
  prev_rev: number | null;
  prev_installed_at: number | null;
  local_boot_at: number | null;
  local_boot_failures: number;
}

const fromRow = (r: Row): NodeInstall => ({
  mac: r.mac,
  vnfs: r.vnfs,
  rev: r.rev,
  disk: r.disk,
  firmware: r.firmware,
  installedAt: r.installed_at,
  previous: r.prev_vnfs !== null && r.prev_rev !== null ? { vnfs: r.prev_vnfs, rev: r.prev_rev, installedAt: r.prev_installed_at ?? 0 } : null,
  localBootAt: r.local_boot_at,
  localBootFailures: r.local_boot_failures,
});

/** Local boot scripts handed out within this of each other belong to one pass of the firmware. */
export const LOCAL_BOOT_SAME_PASS_MS = 60_000;

export class InstallRepo {
  constructor(private readonly db: DB) {}

  get(mac: string): NodeInstall | undefined {
    const r = this.db.prepare('SELECT * FROM node_installs WHERE mac = ?').get(mac) as Row | undefined;
    return r ? fromRow(r) : undefined;
  }

  /**
   * A finished install: the one there was becomes the previous one (one transaction). A
   * reinstall of the revision already on the disk keeps the previous one: it stays the
   * rollback target, so a rollback and a rollback of that swap the two (see install/rollback.ts).
   */
  recordDone(mac: string, v: { vnfs: string; rev: number; disk: string; firmware: string }, now = Date.now()): NodeInstall {
    return this.db.transaction(() => {
      const cur = this.get(mac);
      const old = cur && cur.vnfs === v.vnfs && cur.rev === v.rev ? cur.previous : cur;
      this.db
        .prepare(
          `INSERT INTO node_installs (mac, vnfs, rev, disk, firmware, installed_at, prev_vnfs, prev_rev, prev_installed_at, local_boot_at, local_boot_failures)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)
           ON CONFLICT(mac) DO UPDATE SET vnfs = excluded.vnfs, rev = excluded.rev, disk = excluded.disk, firmware = excluded.firmware,
             installed_at = excluded.installed_at, prev_vnfs = excluded.prev_vnfs, prev_rev = excluded.prev_rev,
             prev_installed_at = excluded.prev_installed_at, local_boot_at = NULL, local_boot_failures = 0`,
        )
        .run(mac, v.vnfs, v.rev, v.disk, v.firmware, now, old?.vnfs ?? null, old?.rev ?? null, old?.installedAt ?? null);
      return this.get(mac)!;
    })();
  }

  /**
   * A local boot is handed out. When the one handed out before (localBootAt) was not followed
   * by the OS checking in (`checkedInSince`), that disk boot failed and the machine came back
   * to PXE: `failed`, and `failures` counts such boots in a row.
   */
  localBoot(mac: string, checkedInSince: (t: number) => boolean, now = Date.now(), samePassMs = LOCAL_BOOT_SAME_PASS_MS): { failed: boolean; failures: number; install?: NodeInstall } {
    return this.db.transaction(() => {
      const cur = this.get(mac);
      if (!cur) return { failed: false, failures: 0 };
      // One firmware pass may ask several times (OVMF's own PXE entry, then the iPXE ROM's):
      // that is one boot, not a failed one.
      if (cur.localBootAt !== null && now >= cur.localBootAt && now - cur.localBootAt < samePassMs) return { failed: false, failures: cur.localBootFailures, install: cur };
      const failed = cur.localBootAt !== null && !checkedInSince(cur.localBootAt);
      const failures = failed ? cur.localBootFailures + 1 : 0;
      this.db.prepare('UPDATE node_installs SET local_boot_at = ?, local_boot_failures = ? WHERE mac = ?').run(now, failures, mac);
      return { failed, failures, install: this.get(mac) };
    })();
  }
}
