/**
 * VNFS revisions through the REST API and the web UI: listing (nodes using each), rollback
 * by bearer token (read-only refused), and the VNFS page's "Make current" form (CSRF-guarded).
 * The revisions are recorded directly with their files on disk: the image tools are tested in
 * test/e2e/images.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startAdmin, type AdminFixture } from './admin-fixture.js';
import { AdminAuth } from '../../src/admin/auth.js';
import { manifestJson } from '../../src/images/manifest.js';

const PORTS: [number, number] = [18280, 18289];

function addRevisions(f: AdminFixture, name: string, n: number): void {
  for (let rev = 1; rev <= n; rev++) {
    const dir = path.join(f.dir, 'vnfs', name, `r${rev}`);
    fs.mkdirSync(dir, { recursive: true });
    for (const a of ['vmlinuz', 'initrd.img', 'rootfs.squashfs']) fs.writeFileSync(path.join(dir, a), `${a} ${rev}`);
    const m = { vnfs: name, rev, parent: rev > 1 ? rev - 1 : null, arch: 'x86_64', source: `exec:step ${rev}`, comment: `c${rev}`, createdAt: rev * 1000, kernel: '6.1.0-1-amd64', kernelVersions: ['6.1.0-1-amd64'], artifacts: { vmlinuz: { sha256: 'a', size: 1 }, 'initrd.img': { sha256: 'b', size: 1 }, 'rootfs.squashfs': { sha256: 'c', size: 1048576 * rev } }, tree: { files: 1, bytes: 1 } };
    fs.writeFileSync(path.join(dir, 'manifest.json'), manifestJson(m));
    fs.mkdirSync(path.join(f.dir, 'images', name, String(rev), 'tree'), { recursive: true });
    f.store.vnfs.addRevision({ vnfs: name, rev, parent: m.parent, source: m.source, comment: m.comment, createdAt: m.createdAt, manifest: manifestJson(m) });
  }
}

test('REST: revisions list with the nodes using each; rollback needs the admin token; bad revisions are 400/404', async (t) => {
  const f = await startAdmin(PORTS);
  t.after(() => f.close());
  addRevisions(f, 'deb12', 3);
  f.service.add({ mac: '52:54:00:00:16:01', name: 'pinned', vnfs: 'deb12@1' });
  f.service.add({ mac: '52:54:00:00:16:02', name: 'follower', vnfs: 'deb12' });
  const auth = (tok: string) => ({ authorization: `Bearer ${tok}`, 'content-type': 'application/json' });
  const list = await fetch(`${f.base}/api/v1/vnfs/deb12/revisions`, { headers: auth(f.tokens.readonly) });
  assert.equal(list.status, 200);
  const body = (await list.json()) as { current: number; revisions: { rev: number; current: boolean; nodes: string[] }[] };
  assert.equal(body.current, 3);
  assert.deepEqual(body.revisions.map((r) => [r.rev, r.current, r.nodes]), [[1, false, ['pinned']], [2, false, []], [3, true, ['follower']]]);
  const ro = await fetch(`${f.base}/api/v1/vnfs/deb12/rollback`, { method: 'POST', headers: auth(f.tokens.readonly), body: '{}' });
  assert.equal(ro.status, 403);
  const rb = await fetch(`${f.base}/api/v1/vnfs/deb12/rollback`, { method: 'POST', headers: auth(f.tokens.admin), body: '{}' });
  assert.equal(rb.status, 200, await rb.clone().text());
  assert.deepEqual(await rb.json(), { vnfs: 'deb12', from: 3, to: 2 });
  assert.equal(f.store.vnfs.get('deb12')!.kernel, 'r2/vmlinuz');
  const bad = await fetch(`${f.base}/api/v1/vnfs/deb12/rollback`, { method: 'POST', headers: auth(f.tokens.admin), body: '{"rev":"x"}' });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { field: string }).field, 'rev');
  const missing = await fetch(`${f.base}/api/v1/vnfs/deb12/rollback`, { method: 'POST', headers: auth(f.tokens.admin), body: '{"rev":9}' });
  assert.equal(missing.status, 404);
  assert.equal((await fetch(`${f.base}/api/v1/vnfs/nope/revisions`, { headers: auth(f.tokens.admin) })).status, 404);
  const events = f.store.events.query({ kind: 'vnfs.rollback' } as never);
  assert.ok(events.some((e) => (e.detail as { from: number; to: number }).to === 2));
});

test('UI: the VNFS page lists revisions and "Make current" rolls back (CSRF-checked)', async (t) => {
  const f = await startAdmin(PORTS);
  t.after(() => f.close());
  addRevisions(f, 'deb12', 2);
  const signIn = await fetch(`${f.base}/ui/vnfs?token=${f.tokens.admin}`, { redirect: 'manual' });
  const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
  const html = await (await fetch(`${f.base}/ui/vnfs`, { headers: { cookie } })).text();
  assert.match(html, /Revisions of deb12/);
  assert.match(html, /r2 <b>\(current\)<\/b>/);
  assert.match(html, /id="rollback-deb12-1"/);
  assert.doesNotMatch(html, /id="rollback-deb12-2"/, 'no action on the current revision');
  const csrf = new AdminAuth(f.tokens).csrfToken('admin');
  const post = (form: Record<string, string>) =>
    fetch(`${f.base}/ui/vnfs/deb12`, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: f.base }, body: new URLSearchParams(form).toString() });
  assert.equal((await post({ action: 'rollback', rev: '1', csrf: 'x'.repeat(43) })).status, 403);
  assert.equal(f.store.vnfs.get('deb12')!.currentRev, 2);
  const ok = await post({ action: 'rollback', rev: '1', csrf });
  assert.equal(ok.status, 303);
  assert.equal(f.store.vnfs.get('deb12')!.currentRev, 1);
  const after = await (await fetch(`${f.base}${ok.headers.get('location')}`, { headers: { cookie } })).text();
  assert.match(after, /revision 1 is current \(was 2\)/);
});
