import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHttpApp } from '../../src/http/app.js';
import { provisionRouter } from '../../src/provision/http.js';
import { ProvisionService } from '../../src/provision/service.js';
import { MemoryProvisionBackend } from '../../src/provision/memory-backend.js';
import { NodescriptEngine } from '../../src/nodescripts/engine.js';
import { NodeTokens } from '../../src/security/tokens.js';
import { httpAuthorizer } from '../../src/security/authorize.js';
import { curl, listen } from './http-curl.js';

// The provision route (another part of pxeherd) with this part's token hook, over real HTTP.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-token-'));
for (const state of ['init', 'ready']) {
  fs.mkdirSync(path.join(dir, 'nodescripts', state, 'all'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'nodescripts', state, 'all', '10-hello'), `#!/bin/sh\necho "echo ${state} for $NODENAME"\n`, { mode: 0o755 });
}
const backend = new MemoryProvisionBackend();
backend.add({ mac: '52:54:00:00:03:01', name: 'n0301' });
backend.add({ mac: '52:54:00:00:03:02', name: 'n0302', ip: '10.81.0.32' });
let now = Date.now();
const tokens = new NodeTokens({ key: Buffer.alloc(32, 9), ttlSeconds: 120, now: () => now });
const engine = new NodescriptEngine({ dir: path.join(dir, 'nodescripts'), statedir: dir, events: backend.events });
const service = new ProvisionService(backend, engine);
const authorize = httpAuthorizer({ enabled: true, tokens, events: backend.events });
const srv = await listen(createHttpApp({ routers: [provisionRouter(service, { authorize })] }), 18130);
after(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const provision = (state: string, q: string) => curl(`${srv.base}/provision/${state}?${q}`);

test('a known node with the token from its boot script gets its nodescripts', async () => {
  const tok = tokens.issueToken('52:54:00:00:03:01');
  const r = await provision('init', `mac=52-54-00-00-03-01&token=${tok}`);
  assert.equal(r.status, 200);
  assert.match(r.body.toString(), /echo init for n0301/);
});

test('a known node without a token, with another node\'s token, or a forged one gets 403 with the reason and a security.denied event', async () => {
  const missing = await provision('init', 'mac=52-54-00-00-03-01');
  assert.equal(missing.status, 403);
  assert.match(missing.body.toString(), /node n0301 \(52:54:00:00:03:01\): no token/);
  const others = await provision('init', `mac=52-54-00-00-03-01&token=${tokens.issueToken('52:54:00:00:03:02')}`);
  assert.equal(others.status, 403);
  assert.match(others.body.toString(), /token was not issued for 52:54:00:00:03:01/);
  const forged = await provision('ready', 'mac=52-54-00-00-03-01&token=lzz.0011223344556677.AAAAAAAAAAAAAAAAAAAAAA');
  assert.equal(forged.status, 403);
  assert.doesNotMatch(forged.body.toString(), /echo ready/);
  const denied = backend.log.filter((e) => e.kind === 'security.denied' && e.node === 'n0301');
  assert.equal(denied.length, 3);
});

test('an expired token gets 403 saying it expired', async () => {
  const tok = tokens.issueToken('52:54:00:00:03:01');
  now += 121_000;
  try {
    const r = await provision('ready', `mac=52-54-00-00-03-01&token=${tok}`);
    assert.equal(r.status, 403);
    assert.match(r.body.toString(), /token expired at .*reboot the node/);
  } finally {
    now -= 121_000;
  }
});

test('a node whose address is known must ask from that address', async () => {
  const r = await provision('init', `mac=52-54-00-00-03-02&token=${tokens.issueToken('52:54:00:00:03:02')}`);
  assert.equal(r.status, 403);
  assert.match(r.body.toString(), /request came from 127\.0\.0\.1, but the node's address is 10\.81\.0\.32/);
});

test('an unknown MAC registers on init without a token (discovery), then needs its token for ready', async () => {
  const r = await provision('init', 'mac=52-54-00-00-03-99');
  assert.equal(r.status, 200);
  assert.ok(backend.byMac('52:54:00:00:03:99'));
  const name = backend.byMac('52:54:00:00:03:99')!.name;
  assert.match(r.body.toString(), new RegExp(`echo init for ${name}`));
  assert.equal((await provision('ready', 'mac=52-54-00-00-03-99')).status, 403);
  // The discovery script's token was issued for the MAC before the node existed: it works now.
  const ok = await provision('ready', `mac=52-54-00-00-03-99&token=${tokens.issueToken('52:54:00:00:03:99')}`);
  assert.equal(ok.status, 200);
  assert.match(ok.body.toString(), /echo ready for/);
});
