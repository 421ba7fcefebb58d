import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import { ensureAdminTokens, adminLink } from '../../src/admin/tokens.js';
import { AdminAuth, parseCookies } from '../../src/admin/auth.js';

function tmp(t: { after(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-tokens-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

test('ensureAdminTokens creates two different tokens in mode 0600 files and returns the same ones later', (t) => {
  const dir = path.join(tmp(t), 'state');
  const old = process.umask(0o022);
  try {
    const a = ensureAdminTokens(dir);
    assert.match(a.admin, /^[A-Za-z0-9_-]{43}$/);
    assert.match(a.readonly, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a.admin, a.readonly);
    for (const f of ['admin.token', 'admin-readonly.token']) assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
    assert.equal(fs.readFileSync(path.join(dir, 'admin.token'), 'utf8'), a.admin + '\n');
    assert.deepEqual(ensureAdminTokens(dir), a, 'a restart keeps the tokens');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['admin-readonly.token', 'admin.token'], 'no temporary files left');
  } finally {
    process.umask(old);
  }
});

test('an admin-written token file is kept but tightened to 0600; an unusable one is an error', (t) => {
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'admin.token'), 'my-own-long-admin-token-123\n', { mode: 0o644 });
  fs.chmodSync(path.join(dir, 'admin.token'), 0o644);
  const a = ensureAdminTokens(dir);
  assert.equal(a.admin, 'my-own-long-admin-token-123');
  assert.equal(fs.statSync(path.join(dir, 'admin.token')).mode & 0o777, 0o600);
  fs.writeFileSync(path.join(dir, 'admin-readonly.token'), 'short');
  assert.throws(() => ensureAdminTokens(dir), /admin-readonly\.token does not hold a usable token/);
  fs.writeFileSync(path.join(dir, 'admin-readonly.token'), 'my-own-long-admin-token-123');
  assert.throws(() => ensureAdminTokens(dir), /hold the same token/);
});

test('adminLink builds the one-click link, showing wildcard listen addresses as loopback', () => {
  assert.equal(adminLink('127.0.0.1', 8081, 'abc_-'), 'http://127.0.0.1:8081/?token=abc_-');
  assert.equal(adminLink('0.0.0.0', 8081, 't'), 'http://127.0.0.1:8081/?token=t');
  assert.equal(adminLink('::', 9000, 't'), 'http://[::1]:9000/?token=t');
  assert.equal(adminLink('fd00::1', 9000, 't'), 'http://[fd00::1]:9000/?token=t');
  assert.equal(adminLink('10.1.2.3', 80, 'a+b'), 'http://10.1.2.3:80/?token=a%2Bb');
});

const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

test('AdminAuth tells admin from read-only by bearer token or session cookie and refuses anything else', () => {
  const auth = new AdminAuth({ admin: 'A'.repeat(43), readonly: 'R'.repeat(43) });
  assert.deepEqual(auth.identify(req({ authorization: `Bearer ${'A'.repeat(43)}` }), { cookie: false }), { role: 'admin', via: 'bearer' });
  assert.deepEqual(auth.identify(req({ authorization: `bearer ${'R'.repeat(43)}` }), { cookie: false }), { role: 'readonly', via: 'bearer' });
  assert.equal(auth.identify(req({ authorization: 'Bearer nope' }), { cookie: true }).role, undefined);
  assert.match((auth.identify(req({}), { cookie: true }) as { problem: string }).problem, /missing token/);

  const cookie = auth.sessionCookie('admin');
  assert.match(cookie, /; HttpOnly; SameSite=Strict$/);
  const value = cookie.split(';')[0]!;
  assert.deepEqual(auth.identify(req({ cookie: `other=1; ${value}` }), { cookie: true }), { role: 'admin', via: 'cookie' });
  assert.equal(auth.identify(req({ cookie: value }), { cookie: false }).role, undefined, 'cookies only where allowed');
  // A forged session: right shape, wrong MAC; or the read-only session relabelled as admin.
  assert.equal(auth.identify(req({ cookie: 'pxeherd_session=admin.AAAA' }), { cookie: true }).role, undefined);
  const ro = auth.sessionValue('readonly');
  assert.equal(auth.roleOfSession('admin' + ro.slice('readonly'.length)), undefined);
  // A new token file ends old sessions.
  const rotated = new AdminAuth({ admin: 'B'.repeat(43), readonly: 'R'.repeat(43) });
  assert.equal(rotated.roleOfSession(auth.sessionValue('admin')), undefined);

  assert.ok(auth.checkCsrf('admin', auth.csrfToken('admin')));
  assert.equal(auth.checkCsrf('admin', auth.csrfToken('readonly')), false);
  assert.equal(auth.checkCsrf('admin', undefined), false);
  assert.deepEqual(parseCookies('a=1; b=x%20y; bad; =z'), { a: '1', b: 'x y' });
});
