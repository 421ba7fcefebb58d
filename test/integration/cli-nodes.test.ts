import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir, pxeherd, dumpDb } from '../helpers/cli.js';

test('node add/list/show/set/delete work end to end with stable --json output', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const c = { config: s.config };
  assert.equal(pxeherd(['node', 'add', 'aa:bb:cc:dd:ee:01'], c).stdout, 'added n0000 (aa:bb:cc:dd:ee:01)\n');
  const r = pxeherd(['node', 'add', 'AA-BB-CC-DD-EE-02', 'head', '--group', 'infra', '--ip', '10.0.0.2', '--set', 'rack=r12', '--json'], c);
  assert.equal(r.code, 0, r.stderr);
  const n = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(n), ['name', 'mac', 'group', 'vnfs', 'enabled', 'debug', 'state', 'ip', 'last_contact', 'boot', 'attrs', 'created', 'updated']);
  assert.equal(n.name, 'head');
  assert.equal(n.mac, 'aa:bb:cc:dd:ee:02');
  assert.deepEqual(n.attrs, { rack: 'r12' });
  assert.equal(n.last_contact, null);

  assert.equal(pxeherd(['node', 'add', 'aabb.ccdd.ee03'], c).code, 0);
  const list = JSON.parse(pxeherd(['node', 'list', '--json'], c).stdout);
  assert.deepEqual(list.nodes.map((x: { name: string }) => x.name), ['head', 'n0000', 'n0001']);

  assert.equal(pxeherd(['node', 'set', 'group', 'compute', 'n000[0-1]'], c).code, 0);
  assert.equal(pxeherd(['node', 'set', 'attr.rack=r13', 'n0000'], c).code, 0);
  const q = JSON.parse(pxeherd(['node', 'list', 'group:compute and attr:rack,r13', '--json'], c).stdout);
  assert.deepEqual(q.nodes.map((x: { name: string }) => x.name), ['n0000']);

  assert.equal(pxeherd(['node', 'disable', 'n0001'], c).code, 0);
  assert.equal(JSON.parse(pxeherd(['node', 'show', 'n0001', '--json'], c).stdout).nodes[0].enabled, false);
  assert.match(pxeherd(['node', 'status'], c).stdout, /NAME\s+STATE\s+IP\s+LAST CONTACT\s+BOOT/);

  const rep = pxeherd(['node', 'replace', 'n0000', '52:54:00:12:34:56', '--json'], c);
  assert.equal(rep.code, 0, rep.stderr);
  const replaced = JSON.parse(rep.stdout);
  assert.equal(replaced.name, 'n0000');
  assert.equal(replaced.mac, '52:54:00:12:34:56');
  assert.deepEqual(replaced.attrs, { rack: 'r13' }, 'attributes follow the node to its new MAC');

  assert.equal(pxeherd(['node', 'delete', 'n0001'], c).code, 0);
  assert.equal(pxeherd(['node', 'add', 'aa:bb:cc:dd:ee:09'], c).stdout, 'added n0001 (aa:bb:cc:dd:ee:09)\n', 'the freed name is reused first');
});

test('every rejected command exits 2 with a one-line reason and leaves the database unchanged', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const c = { config: s.config };
  pxeherd(['node', 'add', 'aa:bb:cc:dd:ee:01', 'n0000', '--ip', '10.0.0.5'], c);
  pxeherd(['node', 'add', 'aa:bb:cc:dd:ee:02', 'n0001', '--group', 'g1'], c);
  const bad = path.join(s.dir, 'bad.csv');
  fs.writeFileSync(bad, 'mac,name\naa:bb:cc:dd:ee:10,x1\naa:bb:cc:dd:ee:11,../etc\naa:bb:cc:dd:ee:12,x3\n');
  const dupe = path.join(s.dir, 'dupe.ethers');
  fs.writeFileSync(dupe, 'aa:bb:cc:dd:ee:20 y1\naa:bb:cc:dd:ee:01 y2\n');
  const cases: [string[], RegExp][] = [
    [['node', 'add', 'zz:zz'], /invalid MAC address "zz:zz"/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '../../usr/sbin'], /node name "..\/..\/usr\/sbin" is not allowed/],
    [['node', 'add', 'aa:bb:cc:dd:ee:01'], /a node with MAC aa:bb:cc:dd:ee:01 exists already \(n0000\)/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', 'n0000'], /node name "n0000" is taken/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '--ip', '10.0.0.5'], /address 10.0.0.5 is already node n0000's/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '--ip', '10.0.0.300'], /invalid IPv4 address "10.0.0.300"/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '--vnfs', 'nope'], /no VNFS named "nope"/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '--group', 'a/b'], /group name "a\/b" is not allowed/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '--set', 'bad-key=1'], /attribute key "bad-key" is not allowed/],
    [['node', 'add', 'aa:bb:cc:dd:ee:03', '--boot', 'sometimes'], /boot mode must be one of provision, local, once, disabled/],
    [['node', 'set', 'colour', 'red', 'n0000'], /unknown node field "colour"/],
    [['node', 'set', 'group', 'x', 'n0099'], /no node named "n0099"/],
    [['node', 'set', 'group', 'x', 'n0000', 'n0099'], /no node named "n0099"/],
    [['node', 'set', 'name', 'n0001', 'n0000'], /name "n0001" is already taken by node n0001/],
    [['node', 'set', 'name', 'x', 'n000*'], /name can be set on one node at a time/],
    [['node', 'set', 'enabled', 'maybe', 'n0000'], /enabled must be yes\/no/],
    [['node', 'set', 'group'], /missing VALUE and NODES/],
    [['node', 'list', 'group:compute and'], /bad query at column 18/],
    [['node', 'delete', 'n0042'], /no node named "n0042"/],
    [['node', 'replace', 'n0000', 'aa:bb:cc:dd:ee:02'], /MAC aa:bb:cc:dd:ee:02 already belongs to node n0001/],
    [['node', 'replace', 'n0000', 'nonsense'], /invalid MAC address "nonsense"/],
    [['node', 'import', bad], /line 3: node name "..\/etc" is not allowed/],
    [['node', 'import', dupe], /line 2: a node with MAC aa:bb:cc:dd:ee:01 exists already/],
    [['node', 'import', path.join(s.dir, 'missing.csv')], /cannot read .*missing.csv/],
    [['node', 'import', path.join(s.dir, 'nodes.txt')], /cannot tell the format/],
    [['group', 'delete', 'g1'], /group "g1" still has 1 node\(s\)/],
    [['group', 'set', '..', 'vlan', '12'], /group name ".." is not allowed/],
    [['vnfs', 'add', 'v1', '--kernel', '/nonexistent', '--initrd', '/nonexistent'], /kernel file "\/nonexistent" does not exist/],
    [['vnfs', 'add', '../v', '--kernel', '/etc/hostname', '--initrd', '/etc/hostname'], /vnfs name "..\/v" is not allowed/],
    [['vnfs', 'delete', 'none'], /no VNFS named "none"/],
  ];
  const before = dumpDb(s.statedir);
  for (const [args, why] of cases) {
    const r = pxeherd(args, c);
    assert.equal(r.code, 2, `${args.join(' ')} should exit 2 (got ${r.code}: ${r.stderr})`);
    assert.match(r.stderr, why, args.join(' '));
    assert.match(r.stderr, /^pxeherd: /, 'the reason starts with the program name');
    assert.equal(dumpDb(s.statedir), before, `${args.join(' ')} must not change the database`);
  }
  assert.ok(!fs.existsSync(path.join(s.statedir, 'vnfs', '..', 'v')), 'no directory was created outside vnfs/');
});

test('a bad configuration stops the command with the key named; usage errors exit 2; --help exits 0', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const bad = path.join(s.dir, 'bad.yaml');
  fs.writeFileSync(bad, `statedir: ${s.statedir}\ndhcp: { mode: full, rang: [1] }\n`);
  const r = pxeherd(['node', 'list'], { config: bad });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /dhcp\.rang: unknown key/);
  const env = pxeherd(['node', 'list'], { env: { PXEHERD_CONFIG: bad } });
  assert.match(env.stderr, /dhcp\.rang: unknown key/, 'PXEHERD_CONFIG is honoured');
  assert.equal(pxeherd(['node', 'frobnicate']).code, 2);
  assert.equal(pxeherd(['node', 'add']).code, 2);
  for (const args of [[], ['node'], ['node', 'add'], ['node', 'list'], ['node', 'set'], ['node', 'import'], ['node', 'export'], ['group', 'set'], ['vnfs', 'add'], ['serve']]) {
    const h = pxeherd([...args, '--help']);
    assert.equal(h.code, 0, `${args.join(' ')} --help`);
    assert.match(h.stdout, /Usage: pxeherd/);
  }
});

test('import is all-or-nothing and export writes what import reads', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const c = { config: s.config };
  const csv = path.join(s.dir, 'nodes.csv');
  fs.writeFileSync(csv, 'mac,name,group,attr.rack\n' + Array.from({ length: 50 }, (_, i) => `52:54:00:00:01:${i.toString(16).padStart(2, '0')},c${i},compute,r${i % 4}`).join('\n') + '\n');
  const r = pxeherd(['node', 'import', csv, '--json'], c);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).imported, 50);
  for (const f of ['json', 'csv', 'ethers']) {
    const out = path.join(s.dir, `out.${f}`);
    assert.equal(pxeherd(['node', 'export', out, 'attr:rack,r1'], c).code, 0);
    const s2 = makeStateDir();
    try {
      assert.equal(pxeherd(['node', 'import', out], { config: s2.config }).code, 0);
      const names = JSON.parse(pxeherd(['node', 'list', '--json'], { config: s2.config }).stdout).nodes.map((n: { name: string }) => n.name);
      assert.equal(names.length, 13, f);
    } finally {
      s2.cleanup();
    }
  }
  const stdout = pxeherd(['node', 'export', '-', '--format', 'ethers', 'c1'], c);
  assert.equal(stdout.stdout, '52:54:00:00:01:01 c1\n');
});

test('groups and VNFS: set attributes, add images into the state directory, refuse deleting what is in use', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const c = { config: s.config };
  const k = path.join(s.dir, 'vmlinuz-6.1');
  const i = path.join(s.dir, 'initrd.img-6.1');
  fs.writeFileSync(k, 'kernel-bytes');
  fs.writeFileSync(i, 'initrd-bytes');
  const v = pxeherd(['vnfs', 'add', 'rocky9', '--kernel', k, '--initrd', i, '--cmdline', 'console=ttyS0 quiet', '--json'], c);
  assert.equal(v.code, 0, v.stderr);
  assert.deepEqual(JSON.parse(v.stdout), { name: 'rocky9', kernel: 'vmlinuz-6.1', initrd: 'initrd.img-6.1', cmdline: 'console=ttyS0 quiet', nodes: 0, attrs: {}, currentRev: null, arch: 'x86_64' });
  assert.equal(fs.readFileSync(path.join(s.statedir, 'vnfs', 'rocky9', 'vmlinuz-6.1'), 'utf8'), 'kernel-bytes');
  assert.equal(pxeherd(['node', 'add', 'aa:bb:cc:dd:ee:01', '--vnfs', 'rocky9', '--group', 'compute'], c).code, 0);
  assert.match(pxeherd(['vnfs', 'delete', 'rocky9'], c).stderr, /used by 1 node/);
  assert.equal(pxeherd(['group', 'set', 'compute', 'vlan', '120'], c).code, 0);
  assert.equal(pxeherd(['group', 'set', 'compute', 'head_node=n0000'], c).code, 0);
  const g = JSON.parse(pxeherd(['group', 'show', 'compute', '--json'], c).stdout);
  assert.deepEqual(g, { name: 'compute', nodes: 1, attrs: { head_node: 'n0000', vlan: '120' }, members: ['n0000'] });
  assert.equal(pxeherd(['group', 'delete', 'compute', '--move-to', 'spare'], c).code, 0);
  assert.equal(JSON.parse(pxeherd(['node', 'show', 'n0000', '--json'], c).stdout).nodes[0].group, 'spare');
  assert.equal(pxeherd(['node', 'set', 'vnfs', '', 'n0000'], c).code, 0);
  assert.equal(pxeherd(['vnfs', 'delete', 'rocky9'], c).code, 0);
  assert.ok(!fs.existsSync(path.join(s.statedir, 'vnfs', 'rocky9')));
});
