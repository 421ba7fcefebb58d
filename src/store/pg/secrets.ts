/**
 * The secrets every server on one database shares (issue 19): the admin token, the read-only
 * admin token and the node-token key. On a single server they are files in the state directory;
 * with several servers on one PostgreSQL each file would otherwise differ per server, so an admin
 * token from one server's link would be refused by the next one, and a node that booted through
 * one server (its kernel command line carries a token signed with that server's key) would be
 * refused by another for its check-ins once the first one dies — exactly when high availability
 * matters.
 *
 * The database holds one value of each (table `meta`, keys `secret.*`; whoever can write the
 * database can change every node already, so it is no wider trust than before). At start each
 * server publishes its own file's value if the database has none yet (the first server's secrets
 * become the cluster's; INSERT ... ON CONFLICT DO NOTHING, so two servers starting at once agree)
 * and otherwise adopts the database's: its file is replaced (0600, atomically) and the change is
 * logged, because a token that server printed before stops working. The files stay the place the
 * server, the CLI and admins read them from. With the database unreachable at start the files are
 * used as they are (and published next start).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN_TOKEN_FILE, READONLY_TOKEN_FILE, ensureAdminTokens } from '../../admin/tokens.js';
import { loadOrCreateKey, tokenKeyPath } from '../../security/tokens.js';
import { writeSecretFile } from '../../security/secret-file.js';
import type { Sql } from './connect.js';

export interface SharedSecret {
  /** Row key in `meta`. */
  key: string;
  /** File name in the state directory. */
  file: string;
  /** What it is, for the log line. */
  what: string;
  /** The file's bytes as stored in the database (text), and back. */
  encode(data: Buffer): string;
  decode(value: string): Buffer;
  /** Whether a database value makes a file the server accepts (as the file readers check). */
  usable(value: string): boolean;
}

const text = { encode: (d: Buffer) => d.toString('utf8').trim(), decode: (v: string) => Buffer.from(v + '\n', 'utf8'), usable: (v: string) => /^\S{16,}$/.test(v) };
const binary = {
  encode: (d: Buffer) => d.toString('base64'),
  decode: (v: string) => Buffer.from(v, 'base64'),
  usable: (v: string) => Buffer.from(v, 'base64').length >= 16 && Buffer.from(v, 'base64').toString('base64') === v,
};

export const SHARED_SECRETS: readonly SharedSecret[] = [
  { key: 'secret.admin_token', file: ADMIN_TOKEN_FILE, what: 'admin token', ...text },
  { key: 'secret.admin_readonly_token', file: READONLY_TOKEN_FILE, what: 'read-only admin token', ...text },
  { key: 'secret.node_token_key', file: path.basename(tokenKeyPath('.')), what: 'node-token key', ...binary },
];

export interface SecretOutcome {
  what: string;
  file: string;
  /** published: this server's value became the cluster's; adopted: the file now holds the cluster's; same: they already agreed. */
  outcome: 'published' | 'adopted' | 'same';
}

/**
 * Make this server's secret files the cluster's (see above). Validates the local files first
 * (ensureAdminTokens / loadOrCreateKey create missing ones and refuse unusable ones, as on a
 * single server), and refuses a database value that would not make a usable file.
 */
export async function shareSecrets(sql: Sql, statedir: string): Promise<SecretOutcome[]> {
  ensureAdminTokens(statedir);
  loadOrCreateKey(tokenKeyPath(statedir));
  const out: SecretOutcome[] = [];
  for (const s of SHARED_SECRETS) {
    const file = path.join(statedir, s.file);
    const local = s.encode(fs.readFileSync(file));
    const inserted = await sql<{ value: string }[]>`INSERT INTO meta (key, value) VALUES (${s.key}, ${local}) ON CONFLICT (key) DO NOTHING RETURNING value`;
    if (inserted.length) {
      out.push({ what: s.what, file, outcome: 'published' });
      continue;
    }
    const [row] = await sql<{ value: string }[]>`SELECT value FROM meta WHERE key = ${s.key}`;
    const shared = row!.value;
    if (shared === local) {
      out.push({ what: s.what, file, outcome: 'same' });
      continue;
    }
    if (!s.usable(shared)) {
      throw new Error(`the database's ${s.what} (meta row ${s.key}) is not usable: delete that row to let the next server that starts publish its own`);
    }
    writeSecretFile(file, s.decode(shared));
    out.push({ what: s.what, file, outcome: 'adopted' });
  }
  // The two admin tokens must still differ (a hand-edited database could make them equal).
  ensureAdminTokens(statedir);
  return out;
}
