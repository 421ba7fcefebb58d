/**
 * Secrets shared by every server on one PostgreSQL (src/store/pg/secrets.ts), against a real
 * private PostgreSQL: the first server publishes its admin tokens and node-token key, the next
 * adopts them (its own files replaced, 0600), two servers starting at once agree, a node token
 * issued by one server verifies on the other, and an unusable database value stops the start
 * without touching the server's files.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectPostgres, type Sql } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { shareSecrets } from '../../src/store/pg/secrets.js';
import { ensureAdminTokens } from '../../src/admin/tokens.js';
import { nodeTokensFor, tokenKeyPath } from '../../src/security/tokens.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';

const skip = postgresUnavailable();
let pg: PostgresLab | undefined;
let tmp = '';
before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'phsecrets-'));
  if (!skip) pg = await startPostgres();
});
after(async () => {
  await pg?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function database(name: string): Promise<Sql> {
  const sql = connectPostgres(await pg!.createDatabase(name), { max: 2 });
  await migratePostgres(sql);
  return sql;
}

function statedir(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

const FILES = ['admin.token', 'admin-readonly.token', 'node-token.key'];
const read = (dir: string) => FILES.map((f) => fs.readFileSync(path.join(dir, f)).toString('base64'));

test('the first server publishes its secrets, the next adopts them: same tokens and key on both, files 0600', { skip }, async () => {
  const sql = await database('secrets_share');
  try {
    const a = statedir('a');
    const b = statedir('b');
    // B already ran alone: its own tokens and key, which must give way to the cluster's.
    const bOwn = ensureAdminTokens(b);
    nodeTokensFor(b, 3600);
    const before = read(b);

    assert.deepEqual((await shareSecrets(sql, a)).map((o) => o.outcome), ['published', 'published', 'published']);
    assert.deepEqual((await shareSecrets(sql, b)).map((o) => o.outcome), ['adopted', 'adopted', 'adopted']);
    assert.deepEqual(read(b), read(a), "B's files now hold A's secrets");
    assert.notDeepEqual(read(b), before);
    for (const f of FILES) assert.equal(fs.statSync(path.join(b, f)).mode & 0o777, 0o600, `${f} is private`);
    assert.notEqual(ensureAdminTokens(b).admin, bOwn.admin, "B's old admin token is gone");
    assert.deepEqual((await shareSecrets(sql, a)).map((o) => o.outcome), ['same', 'same', 'same'], 'a restart changes nothing');

    // A node booted through A (token in its kernel command line) checks in at B.
    const token = nodeTokensFor(a, 3600).issueToken('52:54:00:12:34:56');
    const atB = nodeTokensFor(b, 3600).verifyToken('52:54:00:12:34:56', token);
    assert.equal(atB.ok, true, JSON.stringify(atB));
    // ...and a server with a key of its own would have refused it (the test can fail).
    const c = statedir('c-alone');
    assert.equal(nodeTokensFor(c, 3600).verifyToken('52:54:00:12:34:56', token).ok, false);
  } finally {
    await sql.end();
  }
});

test('two servers starting at once on an empty database end with the same secrets', { skip }, async () => {
  const sql = await database('secrets_race');
  const sql2 = connectPostgres(pg!.url('secrets_race'), { max: 2 });
  try {
    const dirs = [statedir('race1'), statedir('race2')];
    const outcomes = await Promise.all([shareSecrets(sql, dirs[0]!), shareSecrets(sql2, dirs[1]!)]);
    assert.deepEqual(read(dirs[0]!), read(dirs[1]!));
    // Each secret was published by exactly one of them.
    for (let i = 0; i < FILES.length; i++) {
      assert.deepEqual(outcomes.map((o) => o[i]!.outcome).sort(), ['adopted', 'published'], FILES[i]);
    }
  } finally {
    await sql.end();
    await sql2.end();
  }
});

test('an unusable secret in the database stops the start and leaves the files alone', { skip }, async () => {
  const sql = await database('secrets_bad');
  try {
    await shareSecrets(sql, statedir('good'));
    await sql`UPDATE meta SET value = 'short token' WHERE key = 'secret.admin_token'`;
    const d = statedir('victim');
    ensureAdminTokens(d);
    const before = fs.readFileSync(path.join(d, 'admin.token'), 'utf8');
    await assert.rejects(shareSecrets(sql, d), /admin token \(meta row secret\.admin_token\) is not usable: delete that row/);
    assert.equal(fs.readFileSync(path.join(d, 'admin.token'), 'utf8'), before);
    assert.ok(fs.existsSync(tokenKeyPath(d)));
  } finally {
    await sql.end();
  }
});
