import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir, pxeherd } from '../helpers/cli.js';

test('pxeherd overlay render: the files a node gets, one file\'s bytes, and template errors naming file and key (exit 1)', () => {
  const sd = makeStateDir('address: 10.0.0.1\n');
  try {
    assert.equal(pxeherd(['node', 'add', '52:54:00:00:00:01', 'n0000', '--ip', '10.0.0.5'], { config: sd.config }).code, 0);
    assert.equal(pxeherd(['node', 'add', '52:54:00:00:00:02', 'n0001', '--ip', '10.0.0.6'], { config: sd.config }).code, 0);
    const list = pxeherd(['overlay', 'render', 'n0000', '--json'], { config: sd.config });
    assert.equal(list.code, 0, list.stderr);
    const j = JSON.parse(list.stdout) as { node: string; hash: string; files: { path: string; source: string; mode: string }[]; deletes: string[] };
    assert.equal(j.node, 'n0000');
    assert.match(j.hash, /^[0-9a-f]{64}$/);
    assert.deepEqual(j.files.find((f) => f.path === '/etc/hosts'), { path: '/etc/hosts', type: 'file', mode: '0644', uid: 0, gid: 0, bytes: j.files.find((f) => f.path === '/etc/hosts')!.bytes, source: 'all:etc/hosts.hbs' } as unknown as (typeof j.files)[0]);
    const hosts = pxeherd(['overlay', 'render', 'n0000', '/etc/hosts'], { config: sd.config });
    assert.equal(hosts.code, 0);
    assert.match(hosts.stdout, /^10\.0\.0\.6\tn0001$/m);
    const dir = path.join(sd.statedir, 'overlays/node/n0000/etc');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, '.wh.motd'), '');
    assert.deepEqual((JSON.parse(pxeherd(['overlay', 'render', 'n0000', '--json'], { config: sd.config }).stdout) as typeof j).deletes, ['/etc/motd']);
    fs.writeFileSync(path.join(dir, 'app.conf.hbs'), 'rack={{node.attrs.rack}}\n');
    const bad = pxeherd(['overlay', 'render', 'n0000'], { config: sd.config });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /node\/n0000:etc\/app\.conf\.hbs line 1: \{\{node\.attrs\.rack\}\} is not defined/);
    assert.equal(pxeherd(['node', 'set', 'attr.rack=r12', 'n0000'], { config: sd.config }).code, 0);
    assert.equal(pxeherd(['overlay', 'render', 'n0000', '/etc/app.conf'], { config: sd.config }).stdout, 'rack=r12\n');
    const missing = pxeherd(['overlay', 'render', 'n0000', '/etc/nothere'], { config: sd.config });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /n0000's overlay has no \/etc\/nothere/);
  } finally {
    sd.cleanup();
  }
});
