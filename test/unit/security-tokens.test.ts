import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NodeTokens, loadOrCreateKey, nodeTokensFor, tokenKeyPath } from '../../src/security/tokens.js';
import { checkNode } from '../../src/security/authorize.js';
import type { BootEvent, Node } from '../../src/nodes/types.js';

const key = Buffer.alloc(32, 1);
function clock(start = 1_800_000_000_000) {
  let t = start;
  return { now: () => t, advance: (s: number) => (t += s * 1000) };
}

test('a token issued for a MAC verifies for that MAC in any spelling, and carries issue time and boot id', () => {
  const c = clock();
  const t = new NodeTokens({ key, ttlSeconds: 600, now: c.now, bootId: () => 'abcdef0123456789' });
  const tok = t.issueToken('52-54-00-AA-BB-CC');
  assert.match(tok, /^[0-9a-z]+\.abcdef0123456789\.[A-Za-z0-9_-]{22}$/);
  const v = t.verifyToken('52:54:00:aa:bb:cc', tok);
  assert.equal(v.ok, true);
  if (v.ok) {
    assert.equal(v.bootId, 'abcdef0123456789');
    assert.equal(v.issuedAt * 1000, 1_800_000_000_000);
    assert.equal(v.expiresAt - v.issuedAt, 600);
  }
});

test('each boot gets a different token', () => {
  const t = new NodeTokens({ key, ttlSeconds: 600 });
  assert.notEqual(t.issueToken('52:54:00:aa:bb:cc'), t.issueToken('52:54:00:aa:bb:cc'));
});

test('a token is refused for another MAC, under another key, when tampered with, malformed or missing', () => {
  const t = new NodeTokens({ key, ttlSeconds: 600 });
  const tok = t.issueToken('52:54:00:aa:bb:cc');
  const other = t.verifyToken('52:54:00:aa:bb:cd', tok);
  assert.deepEqual(other, { ok: false, reason: 'token was not issued for 52:54:00:aa:bb:cd by this master' });
  assert.equal(new NodeTokens({ key: Buffer.alloc(32, 2), ttlSeconds: 600 }).verifyToken('52:54:00:aa:bb:cc', tok).ok, false);
  const [a, b, sig] = tok.split('.');
  // Moving the issue time forward (to extend the lifetime) breaks the signature.
  assert.equal(t.verifyToken('52:54:00:aa:bb:cc', `${(parseInt(a!, 36) + 1000).toString(36)}.${b}.${sig}`).ok, false);
  assert.equal(t.verifyToken('52:54:00:aa:bb:cc', `${a}.${b}.${sig!.slice(0, -1)}${sig!.endsWith('A') ? 'B' : 'A'}`).ok, false);
  assert.deepEqual(t.verifyToken('52:54:00:aa:bb:cc', 'garbage'), { ok: false, reason: 'malformed token' });
  assert.deepEqual(t.verifyToken('52:54:00:aa:bb:cc', ''), { ok: false, reason: 'no token' });
  assert.deepEqual(t.verifyToken('52:54:00:aa:bb:cc', undefined), { ok: false, reason: 'no token' });
});

test('a token expires after token_ttl_seconds (injected clock), and one issued far in the future is refused', () => {
  const c = clock();
  const t = new NodeTokens({ key, ttlSeconds: 60, now: c.now });
  const tok = t.issueToken('52:54:00:aa:bb:cc');
  c.advance(59);
  assert.equal(t.verifyToken('52:54:00:aa:bb:cc', tok).ok, true);
  c.advance(1);
  const v = t.verifyToken('52:54:00:aa:bb:cc', tok);
  assert.equal(v.ok, false);
  assert.match((v as { reason: string }).reason, /^token expired at .* \(valid 60s\): reboot the node/);
  const future = new NodeTokens({ key, ttlSeconds: 60, now: () => c.now() + 3600_000 }).issueToken('52:54:00:aa:bb:cc');
  assert.match((t.verifyToken('52:54:00:aa:bb:cc', future) as { reason: string }).reason, /issued in the future/);
});

test('the key file is 32 random bytes, mode 0600, made once and reused', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-key-'));
  try {
    const file = tokenKeyPath(dir);
    const k1 = loadOrCreateKey(file);
    assert.equal(k1.length, 32);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.ok(loadOrCreateKey(file).equals(k1));
    const a = nodeTokensFor(dir, 600);
    const b = nodeTokensFor(dir, 600);
    assert.equal(b.verifyToken('52:54:00:aa:bb:cc', a.issueToken('52:54:00:aa:bb:cc')).ok, true, 'tokens survive a restart');
    fs.writeFileSync(file, 'short');
    assert.throws(() => loadOrCreateKey(file), /holds 5 bytes, need at least 16/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function node(over: Partial<Node> = {}): Node {
  return { mac: '52:54:00:aa:bb:cc', name: 'n0001', group: 'g', vnfs: 'v', enabled: true, debug: false, state: '', ip: '', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0, ...over };
}

test('checkNode: tokens off allows; a just-registered node may ask for init only; the address must match a known one; refusals are events', () => {
  const tokens = new NodeTokens({ key, ttlSeconds: 600 });
  const log: BootEvent[] = [];
  const opts = { enabled: true, tokens, events: { record: (e: BootEvent) => void log.push(e) } };
  const tok = tokens.issueToken('52:54:00:aa:bb:cc');
  assert.deepEqual(checkNode({ ...opts, enabled: false }, node(), { token: undefined, state: 'init', registered: false }), { ok: true });
  assert.deepEqual(checkNode(opts, node(), { token: undefined, state: 'init', registered: true }), { ok: true });
  const noTok = checkNode(opts, node(), { token: undefined, state: 'ready', registered: true });
  assert.equal(noTok.ok, false);
  assert.deepEqual(checkNode(opts, node(), { token: tok, state: 'ready', registered: false, ip: '::ffff:10.0.0.5' }), { ok: true });
  assert.deepEqual(checkNode(opts, node({ ip: '10.0.0.5' }), { token: tok, state: 'ready', registered: false, ip: '::ffff:10.0.0.5' }), { ok: true });
  const wrongIp = checkNode(opts, node({ ip: '10.0.0.5' }), { token: tok, state: 'ready', registered: false, ip: '10.0.0.6' });
  assert.deepEqual(wrongIp, { ok: false, status: 403, reason: "node n0001 (52:54:00:aa:bb:cc): request came from 10.0.0.6, but the node's address is 10.0.0.5" });
  const twice = checkNode(opts, node(), { token: null, state: 'init', registered: false });
  assert.match((twice as { reason: string }).reason, /more than once/);
  assert.equal(log.length, 3);
  assert.ok(log.every((e) => e.kind === 'security.denied' && e.node === 'n0001'));
  assert.equal(log[1]!.detail?.ip, '10.0.0.6');
});
