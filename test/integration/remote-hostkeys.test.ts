// pxeherd's SSH client verifies a node's host key against the copy the master keeps
// (<statedir>/hostkeys/<node>/, made for stateless nodes) and refuses any other key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FakeSshd } from './remote-fixture.js';
import { ensureKey } from '../../src/remote/keys.js';
import { nodeTarget } from '../../src/remote/target.js';
import { sshRun, SshError } from '../../src/remote/ssh.js';
import { ensureIdentity } from '../../src/stateless/identity.js';
import type { Node } from '../../src/nodes/types.js';

const why = spawnSync('ssh-keygen', ['-?']).error ? 'needs ssh-keygen (openssh-client)' : undefined;

function node(name: string): Node {
  return { mac: '52:54:00:00:00:01', name, group: 'cluster', vnfs: 'deb', enabled: true, debug: false, state: '', ip: '127.0.0.1', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0 };
}

test('a node with kept host keys must present one of them; any other key is refused with a clear reason', { skip: why }, async () => {
  const statedir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-hostkeys-'));
  try {
    const key = ensureKey(statedir);
    const dir = await ensureIdentity(statedir, 'n0000');
    await ensureIdentity(statedir, 'n0001');
    const good = await new FakeSshd({ authorizedKeys: [key.publicKey], hostKey: fs.readFileSync(path.join(dir, 'ssh_host_ed25519_key')) }).listen(0);
    const impostor = await new FakeSshd({ authorizedKeys: [key.publicKey], hostKey: fs.readFileSync(path.join(statedir, 'hostkeys/n0001/ssh_host_ed25519_key')) }).listen(0);
    try {
      const t = nodeTarget(node('n0000'), { ssh_port: String(good.port) }, key, statedir);
      assert.equal(t.hostKeys?.length, 3, 'the kept keys are expected');
      const ok = await sshRun(t, 'true', { timeoutMs: 10_000 });
      assert.equal(ok.exit, 0, 'the right host key is accepted');

      const bad = nodeTarget(node('n0000'), { ssh_port: String(impostor.port) }, key, statedir);
      await assert.rejects(sshRun(bad, 'true', { timeoutMs: 10_000 }), (e: Error) => {
        assert.ok(e instanceof SshError);
        assert.equal(e.stage, 'hostkey');
        assert.match(e.message, /host key of root@127\.0\.0\.1:\d+ \(SHA256:[A-Za-z0-9+/]+\) is not the one pxeherd keeps for it \(.*hostkeys\/n0000\/\)/);
        return true;
      });
      assert.equal(impostor.calls.length, 0, 'no command ran on the impostor');

      // A node without kept keys (installed by other means) is reached as before.
      const other = nodeTarget(node('n0099'), { ssh_port: String(impostor.port) }, key, statedir);
      assert.equal(other.hostKeys, undefined);
      assert.equal((await sshRun(other, 'true', { timeoutMs: 10_000 })).exit, 0);
    } finally {
      await good.close();
      await impostor.close();
    }
  } finally {
    fs.rmSync(statedir, { recursive: true, force: true });
  }
});
