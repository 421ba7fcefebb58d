import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startAdmin, type AdminFixture } from './admin-fixture.js';
import { AdminAuth } from '../../src/admin/auth.js';
import { dumpDb } from '../helpers/cli.js';

const PORTS: [number, number] = [18260, 18279];

async function signIn(f: AdminFixture, token: string): Promise<string> {
  const r = await fetch(`${f.base}/ui/nodes/n1?token=${token}&x=1`, { redirect: 'manual' });
  assert.equal(r.status, 303);
  assert.equal(r.headers.get('location'), '/ui/nodes/n1?x=1', 'the token is dropped from the URL, other parameters kept');
  const cookie = r.headers.get('set-cookie')!;
  assert.match(cookie, /^pxeherd_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/);
  return cookie.split(';')[0]!;
}

async function post(f: AdminFixture, cookie: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const r = await fetch(`${f.base}/ui/nodes/n1`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: f.base, ...headers },
    body: new URLSearchParams(form).toString(),
  });
  return { status: r.status, location: r.headers.get('location'), text: await r.text() };
}

test('the token link signs in with an HttpOnly SameSite=Strict cookie; pages without a session answer 401', async (t) => {
  const f = await startAdmin(PORTS);
  t.after(() => f.close());
  f.service.add({ mac: 'aa:bb:cc:00:00:01', name: 'n1' });
  const cookie = await signIn(f, f.tokens.admin);
  const page = await fetch(`${f.base}/ui/nodes/n1`, { headers: { cookie } });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy')!, /script-src 'self'/);
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  assert.equal(page.headers.get('cache-control'), 'no-store');
  assert.match(await page.text(), /<h1 id="node-name" data-mac="aa:bb:cc:00:00:01">n1<\/h1>/);

  for (const url of ['/', '/ui/nodes/n1', '/ui/groups', '/ui/vnfs', '/ui/events']) {
    const r = await fetch(f.base + url);
    assert.equal(r.status, 401, url);
    assert.match(await r.text(), /Open the link printed by &quot;pxeherd serve&quot;/);
  }
  const wrong = await fetch(`${f.base}/?token=nope`, { redirect: 'manual' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('set-cookie'), null);
  const forged = await fetch(`${f.base}/`, { headers: { cookie: 'pxeherd_session=admin.forged' } });
  assert.equal(forged.status, 401);
  // The bearer token works for the pages too (scripts, curl).
  const { stdout } = await promisify(execFile)('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: Bearer ${f.tokens.readonly}`, `${f.base}/ui/groups`]);
  assert.equal(stdout, '200');
  assert.equal((await fetch(`${f.base}/ui/nodes/ghost`, { headers: { cookie } })).status, 404);
  assert.equal((await fetch(`${f.base}/ui/static/app.js`)).status, 200, 'static assets need no session');
});

test('UI form posts need the session CSRF token and a same-origin request; refused posts change nothing', async (t) => {
  const f = await startAdmin(PORTS);
  t.after(() => f.close());
  f.service.add({ mac: 'aa:bb:cc:00:00:01', name: 'n1' });
  const cookie = await signIn(f, f.tokens.admin);
  const csrf = new AdminAuth(f.tokens).csrfToken('admin');
  const html = await (await fetch(`${f.base}/ui/nodes/n1`, { headers: { cookie } })).text();
  assert.ok(html.includes(`name="csrf" value="${csrf}"`), 'the forms carry the session CSRF token');

  const before = dumpDb(f.dir);
  const refused = [
    [await post(f, cookie, { action: 'disable' }), /CSRF check failed/],
    [await post(f, cookie, { action: 'disable', csrf: 'x'.repeat(43) }), /CSRF check failed/],
    [await post(f, cookie, { action: 'disable', csrf }, { origin: 'http://evil.example' }), /cross-origin form post from http:\/\/evil\.example refused/],
    [await post(f, cookie, { action: 'disable', csrf }, { origin: 'null' }), /cross-origin/],
    [await post(f, cookie, { action: 'disable', csrf }, { 'sec-fetch-site': 'cross-site' }), /from a cross-site page refused/],
  ] as const;
  for (const [r, msg] of refused) {
    assert.equal(r.status, 403, r.text);
    assert.match(r.text, msg);
  }
  const noSession = await fetch(`${f.base}/ui/nodes/n1`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `action=disable&csrf=${csrf}` });
  assert.equal(noSession.status, 401);
  const badMode = await post(f, cookie, { action: 'boot', mode: 'disabled', csrf });
  assert.equal(badMode.status, 400);
  assert.match(badMode.text, /boot mode must be one of provision, local, once/);
  const badAction = await post(f, cookie, { action: 'reboot', csrf });
  assert.equal(badAction.status, 400);
  // A read-only session holds a valid CSRF token of its own, and still may not write.
  const roCookie = await signIn(f, f.tokens.readonly);
  const ro = await post(f, roCookie, { action: 'disable', csrf: new AdminAuth(f.tokens).csrfToken('readonly') });
  assert.equal(ro.status, 403);
  assert.match(ro.text, /read-only/);
  // A cookie session cannot write through the API either (the API takes bearer tokens for writes).
  const api = await fetch(`${f.base}/api/v1/nodes/n1/disable`, { method: 'POST', headers: { cookie } });
  assert.equal(api.status, 403);
  assert.equal(dumpDb(f.dir), before, 'no refused post changed the database');

  const ok = await post(f, cookie, { action: 'boot', mode: 'local', csrf });
  assert.equal(ok.status, 303);
  assert.equal(ok.location, '/ui/nodes/n1?changed=boot');
  assert.equal(f.store.nodes.byName('n1')!.boot, 'local');
  const dis = await post(f, cookie, { action: 'disable', csrf }, { 'sec-fetch-site': 'same-origin' });
  assert.equal(dis.status, 303);
  assert.equal(f.store.nodes.byName('n1')!.enabled, false);
});

test('the UI event stream needs a session and sends events as they are recorded', async (t) => {
  const f = await startAdmin(PORTS);
  t.after(() => f.close());
  assert.equal((await fetch(`${f.base}/ui/events/stream`)).status, 401);
  const c2 = (await fetch(`${f.base}/?token=${f.tokens.readonly}`, { redirect: 'manual' })).headers.get('set-cookie')!.split(';')[0]!;
  const ac = new AbortController();
  t.after(() => ac.abort());
  const r = await fetch(`${f.base}/ui/events/stream?node=n7`, { headers: { cookie: c2 }, signal: ac.signal });
  assert.equal(r.status, 200);
  const reader = r.body!.getReader();
  let got = '';
  f.store.events.record({ kind: 'dhcp.ack', node: 'n6', mac: 'aa:bb:cc:00:00:06' });
  f.store.events.record({ kind: 'nodescript.stderr', node: 'n7', mac: 'aa:bb:cc:00:00:07', detail: { stderr: 'line1\nline2 <b>' } });
  const deadline = Date.now() + 5000;
  while (!/nodescript\.stderr/.test(got) && Date.now() < deadline) got += new TextDecoder().decode((await reader.read()).value);
  const data = JSON.parse(/data: (.*)\n/.exec(got)![1]!);
  assert.equal(data.node, 'n7');
  assert.equal(data.detail.stderr, 'line1\nline2 <b>', 'multi-line stderr travels inside one data line');
  assert.doesNotMatch(got, /n6/);
});
