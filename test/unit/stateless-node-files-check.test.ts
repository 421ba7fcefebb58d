// Who gets a node's per-node files (identity.tar, overlay.tar, reports): with tokens, the
// token and the node's address; without, the address alone, so only the address pxeherd's
// DHCP leased to the node or its static `address` attribute — never one it merely claimed —
// and identity.tar (host private keys) only with a token or the explicit opt-in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkNodeRequest } from '../../src/stateless/router.js';
import { NodeTokens } from '../../src/security/tokens.js';
import { nodeRecord, type BootEvent, type Node } from '../../src/nodes/types.js';

const MAC = '52:54:00:cc:00:01';

function deps(o: { tokensRequired: boolean; identityWithoutToken?: boolean; lease?: string; node?: Partial<Node>; neighbour?: Record<string, string> }) {
  const node = nodeRecord({ mac: MAC, name: 'n0000', ip: '10.0.0.66', ...o.node });
  const events: BootEvent[] = [];
  const tokens = new NodeTokens({ key: Buffer.alloc(32, 7), ttlSeconds: 600 });
  return {
    events,
    tokens,
    d: {
      byMac: (m: string) => (m === MAC ? node : undefined),
      events: { record: (e: BootEvent) => void events.push(e) },
      tokens,
      tokensRequired: o.tokensRequired,
      identityWithoutToken: o.identityWithoutToken,
      leaseIp: (m: string) => (m === MAC ? o.lease : undefined),
      neighbourMac: (ip: string) => o.neighbour?.[ip],
      attrsFor: (n: Node) => n.attrs,
    },
  };
}

test('tokens off: the address the node last claimed (node.ip) is not enough; its DHCP lease is', () => {
  // node.ip 10.0.0.66 was set by a request that only named the MAC: anyone can do that.
  const { d, events } = deps({ tokensRequired: false, lease: '10.0.0.5' });
  const r = checkNodeRequest(d, 'overlay', { mac: MAC }, '10.0.0.66');
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /request came from 10\.0\.0\.66, but the node's address is 10\.0\.0\.5$/);
  assert.equal(events.at(-1)!.kind, 'security.denied');
  assert.equal(checkNodeRequest(d, 'overlay', { mac: MAC }, '::ffff:10.0.0.5').ok, true);
});

test('tokens off: no lease and no static address attribute means no per-node files, with what to do', () => {
  const { d } = deps({ tokensRequired: false });
  const r = checkNodeRequest(d, 'overlay', { mac: MAC }, '10.0.0.66');
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /no DHCP lease from this master and no static address attribute.*set "address", or turn security\.node_tokens on/);
});

test('tokens off: the static address attribute counts; a neighbour entry with another MAC is refused', () => {
  const { d } = deps({ tokensRequired: false, node: { attrs: { address: '10.0.0.21' } }, neighbour: { '10.0.0.21': '52:54:00:66:66:66' } });
  const r = checkNodeRequest(d, 'overlay', { mac: MAC }, '10.0.0.21');
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /neighbour table has at MAC 52:54:00:66:66:66, not the node's 52:54:00:cc:00:01/);
  const ok = deps({ tokensRequired: false, node: { attrs: { address: '10.0.0.21' } }, neighbour: { '10.0.0.21': MAC } });
  assert.equal(checkNodeRequest(ok.d, 'overlay', { mac: MAC }, '10.0.0.21').ok, true);
});

test('tokens off: identity.tar (host private keys) is refused on the address alone unless security.identity_without_token', () => {
  const { d, events } = deps({ tokensRequired: false, lease: '10.0.0.5' });
  const r = checkNodeRequest(d, 'identity', { mac: MAC }, '10.0.0.5');
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /served only with a node token.*security\.identity_without_token: true/);
  assert.equal(events.at(-1)!.kind, 'security.denied');
  // A valid token still works with tokens off.
  assert.equal(checkNodeRequest(d, 'identity', { mac: MAC, token: d.tokens.issueToken(MAC) }, '10.0.0.5').ok, true);
  // The opt-in: the address check alone (still strict).
  const opt = deps({ tokensRequired: false, identityWithoutToken: true, lease: '10.0.0.5' });
  assert.equal(checkNodeRequest(opt.d, 'identity', { mac: MAC }, '10.0.0.5').ok, true);
  assert.equal(checkNodeRequest(opt.d, 'identity', { mac: MAC }, '10.0.0.66').ok, false);
});

test('tokens on: a valid token from the address the node booted from, its lease or static address', () => {
  const { d, tokens } = deps({ tokensRequired: true, lease: '10.0.0.5' });
  assert.equal(checkNodeRequest(d, 'identity', { mac: MAC }, '10.0.0.66').ok, false, 'no token');
  assert.equal(checkNodeRequest(d, 'identity', { mac: MAC, token: tokens.issueToken(MAC) }, '10.0.0.66').ok, true);
  assert.equal(checkNodeRequest(d, 'identity', { mac: MAC, token: tokens.issueToken(MAC) }, '10.0.0.5').ok, true);
  assert.equal(checkNodeRequest(d, 'identity', { mac: MAC, token: tokens.issueToken(MAC) }, '10.0.0.99').ok, false, 'another address');
  assert.equal(checkNodeRequest(d, 'identity', { mac: MAC, token: tokens.issueToken('52:54:00:cc:00:02') }, '10.0.0.66').ok, false, "another node's token");
});
