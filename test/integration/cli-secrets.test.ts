// `pxeherd node show|list|set` and `group show|set` never print a root password hash:
// they say it is set (or unset); the database keeps it for the node's identity bundle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeStateDir, pxeherd, dumpDb } from '../helpers/cli.js';

test('CLI: node/group show, list and set say the root password hash is set, never print it', () => {
  const s = makeStateDir();
  try {
    const hash = '$6$clisalt1$' + 'h'.repeat(86);
    const ghash = '$6$grpsalt1$' + 'k'.repeat(86);
    const c = { config: s.config };
    assert.equal(pxeherd(['node', 'add', '52:54:00:bb:00:01', 'n0000'], c).code, 0);
    assert.equal(pxeherd(['node', 'add', '52:54:00:bb:00:02', 'n0001'], c).code, 0);
    const outs: string[] = [];
    const set = pxeherd(['node', 'set', 'attr.root_password_hash', hash, 'n0000'], c);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /set attr.root_password_hash=\(set, hidden\) on 1 node/);
    outs.push(set.stdout, set.stderr, pxeherd(['node', 'set', 'attr.root_password_hash', hash, 'n0000', '--json'], c).stdout);
    const gs = pxeherd(['group', 'set', 'cluster', 'root_password_hash', ghash], c);
    assert.equal(gs.code, 0, gs.stderr);
    outs.push(gs.stdout, gs.stderr);
    const show = pxeherd(['node', 'show', 'n0000'], c);
    assert.match(show.stdout, /^root password: set \(the hash is hidden\)$/m);
    assert.match(show.stdout, /^  root_password_hash = \(set, hidden\)$/m);
    const json = JSON.parse(pxeherd(['node', 'show', 'n0000', '--json'], c).stdout) as { nodes: { attrs: Record<string, string>; root_password: string }[] };
    assert.equal(json.nodes[0]!.attrs.root_password_hash, '(set, hidden)');
    assert.equal(json.nodes[0]!.root_password, 'set');
    outs.push(show.stdout, JSON.stringify(json));
    for (const args of [['node', 'list'], ['node', 'list', '--json'], ['node', 'show', 'n0001'], ['group', 'show', 'cluster'], ['group', 'show', 'cluster', '--json'], ['group', 'list']]) {
      const r = pxeherd(args, c);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      outs.push(r.stdout, r.stderr);
    }
    for (const o of outs) assert.ok(!o.includes(hash) && !o.includes(ghash), `no hash in:\n${o}`);
    assert.match(pxeherd(['node', 'show', 'n0001'], c).stdout, /^root password: set/m, 'inherited from the group');
    assert.ok(dumpDb(s.statedir).includes(hash), 'the store keeps the hash');
  } finally {
    s.cleanup();
  }
});
