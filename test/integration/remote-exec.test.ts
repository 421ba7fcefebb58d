import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir } from '../helpers/cli.js';
import { ensureKey, keyPaths } from '../../src/remote/keys.js';
import { BLACKHOLE, canUseNetns, cli, FakeSshd, makeBlackhole } from './remote-fixture.js';

// Ports 18310-18319 belong to this file; 18399 is never listened on.

test('exec fans out over SSH with the pxeherd key, prefixes output by node, sums up exit codes and exits 1 when a node fails', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  // First use generates the key: the nodes are told to trust its public half.
  const key = ensureKey(s.statedir);
  assert.equal(fs.statSync(keyPaths(s.statedir).privatePath).mode & 0o777, 0o600);
  assert.equal(fs.readFileSync(keyPaths(s.statedir).publicPath, 'utf8'), key.publicKey + '\n');
  let running = 0;
  let peak = 0;
  const servers: FakeSshd[] = [];
  for (let i = 0; i < 4; i++) {
    const srv = new FakeSshd({
      authorizedKeys: [key.publicKey],
      onExec: async (c) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 150));
        running--;
        if (i === 2) return { exit: 3, stdout: 'partial\n', stderr: 'disk full\n' };
        return { stdout: `up ${i} days\nload ${c.command.length}\n` };
      },
    });
    servers.push(await srv.listen(18310 + i));
  }
  t.after(() => Promise.all(servers.map((x) => x.close())));
  for (let i = 0; i < 4; i++) {
    const r = await cli(['node', 'add', `aa:bb:cc:00:01:0${i}`, `n000${i}`, '--set', 'ssh_host=127.0.0.1', '--set', `ssh_port=${18310 + i}`], s.config);
    assert.equal(r.code, 0, r.stderr);
  }

  const r = await cli(['exec', 'n000*', '--parallel', '2', '--', 'uptime', '-p'], s.config);
  assert.equal(r.code, 1);
  const out = r.stdout.split('\n').filter(Boolean).sort();
  assert.deepEqual(out, ['n0000: load 9', 'n0000: up 0 days', 'n0001: load 9', 'n0001: up 1 days', 'n0002: partial', 'n0003: load 9', 'n0003: up 3 days']);
  assert.match(r.stderr, /^n0002: disk full$/m);
  assert.match(r.stderr, /^exec: 4 node\(s\): exit 0: 3, exit 3: 1 \(n0002\)$/m);
  assert.match(r.stderr, /pxeherd: exec: 1 of 4 node\(s\) failed: n0002 \(exit 3\)/);
  assert.equal(peak, 2, '--parallel 2 bounds the fan-out');
  for (const srv of servers) assert.deepEqual(srv.calls.map((c) => [c.user, c.command, c.auth]), [['root', 'uptime -p', 'publickey']]);

  const j = await cli(['exec', 'n0002', 'n0003', '--json', '--', 'echo', 'hi'], s.config);
  assert.equal(j.code, 1);
  assert.deepEqual(JSON.parse(j.stdout), [
    { node: 'n0002', exit: 3, stdout: 'partial\n', stderr: 'disk full\n', error: null },
    { node: 'n0003', exit: 0, stdout: 'up 3 days\nload 7\n', stderr: '', error: null },
  ]);

  const ok = await cli(['exec', 'n0000', '--', 'true'], s.config);
  assert.equal(ok.code, 0, ok.stderr);

  const usage = await cli(['exec', 'n0000', 'uptime'], s.config);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /give the command after --/);
});

test('a wrong key, a closed port and a blackholed address each fail with a clear reason within the connect timeout', async (t) => {
  const skip = canUseNetns();
  if (skip) return t.skip(skip);
  const s = makeStateDir();
  t.after(s.cleanup);
  ensureKey(s.statedir);
  const other = new FakeSshd({ authorizedKeys: [ensureKey(path.join(s.dir, 'someone-else')).publicKey] });
  await other.listen(18315);
  t.after(() => other.close());
  const cleanupNs = makeBlackhole();
  t.after(cleanupNs);
  await cli(['node', 'add', 'aa:bb:cc:00:02:01', 'wrongkey', '--set', 'ssh_host=127.0.0.1', '--set', 'ssh_port=18315', '--set', 'ssh_user=ops'], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:02:02', 'closed', '--set', 'ssh_host=127.0.0.1', '--set', 'ssh_port=18399'], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:02:03', 'dark', '--ip', BLACKHOLE], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:02:04', 'noaddr'], s.config);

  const t0 = Date.now();
  const r = await cli(['exec', 'wrongkey', 'closed', 'dark', 'noaddr', '--connect-timeout', '2', '--json', '--', 'hostname'], s.config);
  const took = Date.now() - t0;
  assert.equal(r.code, 1);
  const res = Object.fromEntries((JSON.parse(r.stdout) as { node: string; error: string; exit: null }[]).map((x) => [x.node, x]));
  const priv = keyPaths(s.statedir).privatePath;
  assert.equal(res.wrongkey.error, `authentication failed for ops@127.0.0.1:18315 (tried key ${priv}): the server refused the credential`);
  assert.equal(res.closed.error, 'cannot connect to root@127.0.0.1:18399: connection refused (is sshd running there?)');
  assert.equal(res.dark.error, `timed out after 2 s connecting to root@${BLACKHOLE}:22 (no answer: host down, wrong address or filtered)`);
  assert.equal(res.noaddr.error, 'node noaddr has no address: set ip or attr.ssh_host');
  for (const x of Object.values(res)) assert.equal(x.exit, null);
  assert.ok(took < 6000, `all four answered within the 2 s connect timeout (took ${took} ms)`);
  assert.equal(other.calls.length, 0);
  assert.ok(!r.stdout.includes(fs.readFileSync(priv, 'utf8').split('\n')[1]!), 'the key is named, never shown');
});
