import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAdmin, type AdminFixture } from './admin-fixture.js';
import { dumpDb, CLI } from '../helpers/cli.js';
import type { Node } from '../../src/nodes/types.js';

const PORTS: [number, number] = [18200, 18219];

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
  headers: Headers;
}

function client(f: AdminFixture, token: string | null = f.tokens.admin) {
  return async (method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
    const h: Record<string, string> = { ...headers };
    if (token !== null) h.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const r = await fetch(f.base + url, { method, headers: h, body: payload });
    const text = await r.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: r.status, body: parsed, text, headers: r.headers };
  };
}

/**
 * curl, as an operator's script would call the API: status code and body. Asynchronous: the
 * server answers from this same process.
 */
async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout: out } = await promisify(execFile)('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' });
  const i = out.lastIndexOf('\n');
  return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
}

function runCli(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (status) => resolve({ status, stderr }));
  });
}

async function withAdmin(t: { after(fn: () => Promise<void> | void): void }, extra = {}): Promise<AdminFixture> {
  const f = await startAdmin(PORTS, extra);
  t.after(() => f.close());
  return f;
}

test('every API route refuses a missing, malformed or wrong token with 401 and a Bearer challenge', async (t) => {
  const f = await withAdmin(t);
  const routes: [string, string][] = [
    ['GET', '/api/v1/nodes'],
    ['GET', '/api/v1/nodes/n0000'],
    ['POST', '/api/v1/nodes'],
    ['PATCH', '/api/v1/nodes/n0000'],
    ['DELETE', '/api/v1/nodes/n0000'],
    ['GET', '/api/v1/groups'],
    ['GET', '/api/v1/vnfs'],
    ['GET', '/api/v1/leases'],
    ['GET', '/api/v1/events'],
    ['GET', '/api/v1/nodes/export?format=csv'],
    ['GET', '/api/v1/explain/aa:bb:cc:dd:ee:ff'],
  ];
  for (const [method, url] of routes) {
    const none = await client(f, null)(method, url);
    assert.equal(none.status, 401, `${method} ${url} without a token`);
    assert.match(none.body.error, /missing token/);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="pxeherd"');
    const wrong = await client(f, 'x'.repeat(43))(method, url);
    assert.equal(wrong.status, 401, `${method} ${url} with a wrong token`);
    assert.equal(wrong.body.error, 'wrong token');
  }
  const basic = await client(f, null)('GET', '/api/v1/nodes', undefined, { authorization: `Basic ${f.tokens.admin}` });
  assert.equal(basic.status, 401);
  assert.match(basic.body.error, /Bearer <token>/);

  // The same with curl, as a script would see it.
  const c = await curl([`${f.base}/api/v1/nodes`]);
  assert.equal(c.status, 401);
  assert.match(JSON.parse(c.body).error, /missing token/);
  const ok = await curl(['-H', `Authorization: Bearer ${f.tokens.admin}`, `${f.base}/api/v1/nodes`]);
  assert.equal(ok.status, 200);
  assert.deepEqual(JSON.parse(ok.body), { nodes: [] });
});

test('the read-only token reads everything and every write answers 403 without touching the database', async (t) => {
  const f = await withAdmin(t);
  await client(f)('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:01', name: 'n1' });
  const ro = client(f, f.tokens.readonly);
  assert.equal((await ro('GET', '/api/v1/nodes')).status, 200);
  assert.equal((await ro('GET', '/api/v1/nodes/n1')).body.name, 'n1');
  assert.equal((await ro('GET', '/api/v1/events')).status, 200);
  const before = dumpDb(f.dir);
  const writes: [string, string, unknown][] = [
    ['POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:02' }],
    ['PATCH', '/api/v1/nodes/n1', { group: 'gpu' }],
    ['DELETE', '/api/v1/nodes/n1', undefined],
    ['POST', '/api/v1/nodes/n1/disable', undefined],
    ['POST', '/api/v1/nodes/import', { text: 'aa:bb:cc:00:00:03 x3', format: 'ethers' }],
    ['PATCH', '/api/v1/groups/cluster', { attrs: { vlan: '10' } }],
    ['DELETE', '/api/v1/vnfs/none', undefined],
  ];
  for (const [m, u, b] of writes) {
    const r = await ro(m, u, b);
    assert.equal(r.status, 403, `${m} ${u}`);
    assert.match(r.body.error, /read-only/);
  }
  const c = await curl(['-X', 'DELETE', '-H', `Authorization: Bearer ${f.tokens.readonly}`, `${f.base}/api/v1/nodes/n1`]);
  assert.equal(c.status, 403);
  assert.equal(dumpDb(f.dir), before);
});

test('nodes: add, list with a NODES query, show by name or MAC, and unknown nodes are 404', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  const a = await api('POST', '/api/v1/nodes', { mac: 'AA-BB-CC-00-00-01', group: 'compute', ip: '10.0.0.11', attrs: { rack: 'r12' }, enabled: 'yes' });
  assert.equal(a.status, 201, a.text);
  assert.deepEqual(
    Object.keys(a.body),
    ['name', 'mac', 'group', 'vnfs', 'enabled', 'debug', 'state', 'ip', 'last_contact', 'boot', 'attrs', 'created', 'updated'],
    'the stable nodeJson shape',
  );
  assert.equal(a.body.name, 'n0000');
  assert.equal(a.body.mac, 'aa:bb:cc:00:00:01');
  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:02', group: 'gpu', debug: true });
  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:03', name: 'head', group: 'compute', attrs: { rack: 'r13' } });

  const all = await api('GET', '/api/v1/nodes');
  assert.deepEqual(all.body.nodes.map((n: Node) => n.name), ['head', 'n0000', 'n0001']);
  const q = await api('GET', '/api/v1/nodes?q=' + encodeURIComponent('group:compute and attr:rack,r12'));
  assert.deepEqual(q.body.nodes.map((n: Node) => n.name), ['n0000']);
  const glob = await api('GET', '/api/v1/nodes?q=' + encodeURIComponent('n000[0-1]'));
  assert.deepEqual(glob.body.nodes.map((n: Node) => n.name), ['n0000', 'n0001']);
  const bad = await api('GET', '/api/v1/nodes?q=' + encodeURIComponent('group:compute and ('));
  assert.equal(bad.status, 400);
  assert.equal(bad.body.field, 'query');
  assert.match(bad.body.error, /bad query/);

  assert.equal((await api('GET', '/api/v1/nodes/n0001')).body.debug, true);
  assert.equal((await api('GET', '/api/v1/nodes/aa:bb:cc:00:00:03')).body.name, 'head');
  const missing = await api('GET', '/api/v1/nodes/nope');
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, { error: 'no node named or with MAC "nope"' });
  const c = await curl(['-H', `Authorization: Bearer ${f.tokens.admin}`, `${f.base}/api/v1/nodes/nope`]);
  assert.equal(c.status, 404);
});

test('nodes: validation errors are 400 naming the field, with the CLI message, and leave the database unchanged', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:01', name: 'n1', ip: '10.0.0.1' });
  const before = dumpDb(f.dir);
  const cases: [unknown, string, RegExp][] = [
    [{ mac: 'zz:zz' }, 'mac', /invalid MAC address "zz:zz"/],
    [{}, 'mac', /"mac" is required/],
    [{ mac: 12 }, 'mac', /"mac" must be a string/],
    [{ mac: 'aa:bb:cc:00:00:01' }, 'mac', /exists already/],
    [{ mac: 'aa:bb:cc:00:00:02', name: '../etc' }, 'node', /node name "..\/etc" is not allowed/],
    [{ mac: 'aa:bb:cc:00:00:02', ip: '10.0.0.1' }, 'ip', /already node n1's/],
    [{ mac: 'aa:bb:cc:00:00:02', ip: '300.1.1.1' }, 'ip', /invalid IPv4 address/],
    [{ mac: 'aa:bb:cc:00:00:02', boot: 'sometimes' }, 'boot', /boot mode must be one of/],
    [{ mac: 'aa:bb:cc:00:00:02', enabled: 'maybe' }, 'enabled', /enabled must be yes\/no/],
    [{ mac: 'aa:bb:cc:00:00:02', attrs: { 'bad-key': 'x' } }, 'key', /attribute key "bad-key" is not allowed/],
    [{ mac: 'aa:bb:cc:00:00:02', attrs: { rack: { x: 1 } } }, 'attrs.rack', /attribute "rack" must be a string/],
    [{ mac: 'aa:bb:cc:00:00:02', vnfs: 'nosuch' }, 'vnfs', /no VNFS named "nosuch"/],
    [{ mac: 'aa:bb:cc:00:00:02', colour: 'red' }, 'colour', /unknown field "colour"/],
  ];
  for (const [body, field, msg] of cases) {
    const r = await api('POST', '/api/v1/nodes', body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.body.field, field, JSON.stringify(body));
    assert.match(r.body.error, msg);
  }
  // Bodies that are not a JSON object.
  const badJson = await api('POST', '/api/v1/nodes', '{"mac": "aa:bb', {});
  assert.equal(badJson.status, 400);
  assert.equal(badJson.body.field, 'body');
  assert.match(badJson.body.error, /^request body is not valid JSON: /);
  const arr = await api('POST', '/api/v1/nodes', [{ mac: 'aa:bb:cc:00:00:02' }]);
  assert.equal(arr.status, 400);
  assert.match(arr.body.error, /must be a JSON object, not an array/);
  const form = await api('POST', '/api/v1/nodes', 'mac=aa:bb:cc:00:00:02', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 400);
  assert.match(form.body.error, /Content-Type: application\/json/);
  const c = await curl(['-X', 'POST', '-H', `Authorization: Bearer ${f.tokens.admin}`, '-H', 'Content-Type: application/json', '--data', '{nope', `${f.base}/api/v1/nodes`]);
  assert.equal(c.status, 400);
  assert.equal(JSON.parse(c.body).field, 'body');
  assert.equal(dumpDb(f.dir), before, 'no rejected request changed the database');

  // One implementation behind both: the CLI prints the same message for the same mistake.
  if (fs.existsSync(CLI)) {
    const cfg = path.join(f.dir, 'cli.yaml');
    fs.writeFileSync(cfg, `statedir: ${f.dir}\n`);
    const cli = await runCli([CLI, 'node', 'add', 'zz:zz', '--config', cfg]);
    const api1 = await api('POST', '/api/v1/nodes', { mac: 'zz:zz' });
    assert.equal(cli.status, 2);
    assert.ok(cli.stderr.includes(api1.body.error), `CLI said: ${cli.stderr}`);
  }
});

test('PATCH changes fields and attributes all-or-nothing: one bad field leaves every other unchanged', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:01', name: 'n1', attrs: { rack: 'r1', old: 'x' } });
  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:02', name: 'n2', ip: '10.0.0.2' });

  const ok = await api('PATCH', '/api/v1/nodes/n1', { group: 'gpu', boot: 'once', enabled: false, ip: '10.0.0.1', attrs: { rack: 'r2', old: null, slot: 7 } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.group, 'gpu');
  assert.equal(ok.body.boot, 'once');
  assert.equal(ok.body.enabled, false);
  assert.deepEqual(ok.body.attrs, { rack: 'r2', slot: '7' });
  const renamed = await api('PATCH', '/api/v1/nodes/n1', { name: 'n1b', group: 'compute' });
  assert.equal(renamed.body.name, 'n1b');
  assert.equal(renamed.body.group, 'compute');

  const before = dumpDb(f.dir);
  const cases: [unknown, number, string | undefined, RegExp][] = [
    [{ group: 'other', ip: '10.0.0.2' }, 400, 'ip', /already taken by node n2/],
    [{ group: 'other', ip: 'x' }, 400, 'ip', /invalid IPv4 address "x"/],
    [{ group: 'other', boot: 'never' }, 400, 'boot', /boot mode must be one of/],
    [{ group: 'other', attrs: { 'no-dash': 'x' } }, 400, 'attrs.no-dash', /attribute key "no-dash"/],
    [{ group: 'other', name: '../x' }, 400, 'node', /not allowed/],
    [{ group: 'other', vnfs: 'missing' }, 400, 'vnfs', /no VNFS named "missing"/],
    [{ group: 'other', colour: 'red' }, 400, 'colour', /unknown field "colour"/],
    [{ group: 'other', enabled: 'perhaps' }, 400, 'enabled', /enabled must be yes\/no/],
    [{ group: 7 }, 400, 'group', /"group" must be a string/],
    [{}, 400, 'body', /nothing to change/],
  ];
  for (const [body, status, field, msg] of cases) {
    const r = await api('PATCH', '/api/v1/nodes/n1b', body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.body.field, field, JSON.stringify(body));
    assert.match(r.body.error, msg);
  }
  const notFound = await api('PATCH', '/api/v1/nodes/ghost', { group: 'x' });
  assert.equal(notFound.status, 404);
  assert.equal(dumpDb(f.dir), before, 'rejected PATCHes changed nothing, not even the valid fields before the bad one');
});

test('delete, enable/disable, replace and the bulk NODES operations', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  for (let i = 0; i < 4; i++) await api('POST', '/api/v1/nodes', { mac: `aa:bb:cc:00:00:0${i}`, group: i < 2 ? 'a' : 'b', attrs: { k: String(i) } });
  const dis = await api('POST', '/api/v1/nodes/n0000/disable');
  assert.equal(dis.status, 200);
  assert.equal(dis.body.enabled, false);
  assert.equal(f.store.nodes.byName('n0000')!.enabled, false);
  assert.equal((await api('POST', '/api/v1/nodes/n0000/enable')).body.enabled, true);
  assert.equal((await api('POST', '/api/v1/nodes/ghost/enable')).status, 404);

  const bulkSet = await api('POST', '/api/v1/nodes/set', { key: 'boot', value: 'local', nodes: 'group:a' });
  assert.deepEqual(bulkSet.body.nodes.map((n: Node) => [n.name, n.boot]), [['n0000', 'local'], ['n0001', 'local']]);
  const bulkAttr = await api('POST', '/api/v1/nodes/set', { key: 'attr.rack', value: 'r9', nodes: ['n000[2-3]'] });
  assert.equal(bulkAttr.status, 200);
  assert.equal(f.store.nodes.byName('n0003')!.attrs.rack, 'r9');
  const typo = await api('POST', '/api/v1/nodes/set', { key: 'boot', value: 'local', nodes: ['n0002', 'n9999'] });
  assert.equal(typo.status, 404, 'an exact name that matches nothing is an error, as in the CLI');
  assert.equal(f.store.nodes.byName('n0002')!.boot, 'provision');
  const badKey = await api('POST', '/api/v1/nodes/set', { key: 'colour', value: 'red', nodes: 'n0002' });
  assert.equal(badKey.status, 400);
  assert.equal(badKey.body.field, 'key');
  const noNodes = await api('POST', '/api/v1/nodes/set', { key: 'boot', value: 'local' });
  assert.equal(noNodes.body.field, 'nodes');
  assert.equal((await api('POST', '/api/v1/nodes/disable', { nodes: 'group:b' })).body.nodes.length, 2);
  assert.equal(f.store.nodes.byName('n0003')!.enabled, false);
  assert.equal((await api('POST', '/api/v1/nodes/enable', { nodes: ['n0003'] })).body.nodes[0].enabled, true);

  const rep = await api('POST', '/api/v1/nodes/n0001/replace', { mac: '52:54:00:12:34:56' });
  assert.equal(rep.status, 200, rep.text);
  assert.equal(rep.body.mac, '52:54:00:12:34:56');
  assert.deepEqual(rep.body.attrs, { k: '1' });
  const repBad = await api('POST', '/api/v1/nodes/n0001/replace', { mac: 'nonsense' });
  assert.equal(repBad.status, 400);
  assert.equal(repBad.body.field, 'mac');
  const repTaken = await api('POST', '/api/v1/nodes/n0001/replace', { mac: 'aa:bb:cc:00:00:00' });
  assert.equal(repTaken.status, 400);
  assert.match(repTaken.body.error, /already belongs to node n0000/);
  assert.equal((await api('POST', '/api/v1/nodes/ghost/replace', { mac: '52:54:00:00:00:01' })).status, 404);

  const del = await api('DELETE', '/api/v1/nodes/n0000');
  assert.deepEqual(del.body, { deleted: ['n0000'] });
  assert.equal(f.store.nodes.byName('n0000'), undefined);
  assert.equal((await api('DELETE', '/api/v1/nodes/n0000')).status, 404);
  const bulkDel = await api('POST', '/api/v1/nodes/delete', { nodes: 'group:b' });
  assert.deepEqual(bulkDel.body, { deleted: ['n0002', 'n0003'] });
  assert.deepEqual(f.store.nodes.all().map((n) => n.name), ['n0001']);
});

test('import takes JSON {text, format} or a text body, all or nothing; export writes csv, json and ethers', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  const csv = 'mac,name,group,attr.rack\naa:bb:cc:00:00:01,c1,compute,r1\naa:bb:cc:00:00:02,c2,compute,r2\n';
  const imp = await api('POST', '/api/v1/nodes/import', { text: csv, format: 'csv' });
  assert.equal(imp.status, 201, imp.text);
  assert.deepEqual(imp.body, { imported: 2, nodes: ['c1', 'c2'] });
  const ethers = await api('POST', '/api/v1/nodes/import?format=ethers', 'aa:bb:cc:00:00:03 e3\n', { 'content-type': 'text/plain' });
  assert.equal(ethers.status, 201, ethers.text);
  const c = await curl(['-X', 'POST', '-H', `Authorization: Bearer ${f.tokens.admin}`, '-H', 'Content-Type: text/csv', '--data-binary', 'mac,name\naa:bb:cc:00:00:04,k4\n', `${f.base}/api/v1/nodes/import?format=csv`]);
  assert.equal(c.status, 201, c.body);

  const before = dumpDb(f.dir);
  const bad = await api('POST', '/api/v1/nodes/import', { text: 'mac,name\naa:bb:cc:00:00:05,ok5\nzz,bad\n', format: 'csv' });
  assert.equal(bad.status, 400);
  assert.match(bad.body.error, /^line 3: invalid MAC address "zz"/);
  const noFormat = await api('POST', '/api/v1/nodes/import', { text: csv });
  assert.equal(noFormat.status, 400);
  assert.equal(noFormat.body.field, 'format');
  const badFormat = await api('POST', '/api/v1/nodes/import?format=xml', '<nodes/>', { 'content-type': 'text/plain' });
  assert.equal(badFormat.body.field, 'format');
  assert.equal(dumpDb(f.dir), before, 'a rejected import adds no node at all');

  const ex = await api('GET', '/api/v1/nodes/export?format=csv&q=' + encodeURIComponent('group:compute'));
  assert.equal(ex.status, 200);
  assert.match(ex.headers.get('content-type')!, /^text\/csv/);
  assert.match(ex.text, /^mac,name,/);
  assert.match(ex.text, /aa:bb:cc:00:00:01,c1,compute/);
  assert.doesNotMatch(ex.text, /e3/);
  const exJson = await api('GET', '/api/v1/nodes/export?format=json');
  assert.equal(exJson.body.nodes?.length ?? exJson.body.length, 4);
  const curlEthers = await curl(['-H', `Authorization: Bearer ${f.tokens.admin}`, `${f.base}/api/v1/nodes/export?format=ethers`]);
  assert.equal(curlEthers.status, 200);
  assert.match(curlEthers.body, /aa:bb:cc:00:00:03\s+e3/);
  const missing = await api('GET', '/api/v1/nodes/export');
  assert.equal(missing.status, 400);
  assert.equal(missing.body.field, 'format');
});

test('groups and VNFS: list, show, set attributes atomically, add VNFS from server-side files, delete with the CLI rules', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  const src = fs.mkdtempSync(path.join(f.dir, 'img-'));
  fs.writeFileSync(path.join(src, 'vmlinuz-6.1'), 'kernel');
  fs.writeFileSync(path.join(src, 'initrd-6.1.img'), 'initrd');

  const v = await api('POST', '/api/v1/vnfs', { name: 'debian12', kernel: path.join(src, 'vmlinuz-6.1'), initrd: path.join(src, 'initrd-6.1.img'), cmdline: 'console=ttyS0' });
  assert.equal(v.status, 201, v.text);
  assert.deepEqual(v.body, { name: 'debian12', kernel: 'vmlinuz-6.1', initrd: 'initrd-6.1.img', cmdline: 'console=ttyS0', nodes: 0, attrs: {}, currentRev: null, arch: 'x86_64' });
  assert.equal(fs.readFileSync(path.join(f.dir, 'vnfs', 'debian12', 'vmlinuz-6.1'), 'utf8'), 'kernel');
  const noFile = await api('POST', '/api/v1/vnfs', { name: 'x', kernel: '/nonexistent/vmlinuz', initrd: path.join(src, 'initrd-6.1.img') });
  assert.equal(noFile.status, 400);
  assert.equal(noFile.body.field, 'kernel');
  assert.match(noFile.body.error, /kernel file "\/nonexistent\/vmlinuz" does not exist/);
  assert.equal((await api('POST', '/api/v1/vnfs', { name: 'x', initrd: 'y' })).body.field, 'kernel');

  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:01', group: 'compute', vnfs: 'debian12' });
  assert.deepEqual((await api('GET', '/api/v1/vnfs')).body, { vnfs: [{ ...v.body, nodes: 1 }] });
  const show = await api('GET', '/api/v1/vnfs/debian12');
  assert.equal(show.body.dir, path.join(f.dir, 'vnfs', 'debian12'));
  assert.equal((await api('GET', '/api/v1/vnfs/nope')).status, 404);
  const vset = await api('PATCH', '/api/v1/vnfs/debian12', { cmdline: 'quiet', attrs: { arch: 'x86_64' } });
  assert.equal(vset.body.cmdline, 'quiet');
  assert.deepEqual(vset.body.attrs, { arch: 'x86_64' });
  const before = dumpDb(f.dir);
  const vbad = await api('PATCH', '/api/v1/vnfs/debian12', { cmdline: 'changed', attrs: { 'bad key': 'x' } });
  assert.equal(vbad.status, 400);
  assert.equal(vbad.body.field, 'attrs.bad key');
  const inUse = await api('DELETE', '/api/v1/vnfs/debian12');
  assert.equal(inUse.status, 400);
  assert.equal(inUse.body.field, 'vnfs');
  assert.match(inUse.body.error, /is used by 1 node/);

  assert.deepEqual((await api('GET', '/api/v1/groups')).body, { groups: [{ name: 'compute', nodes: 1, attrs: {} }] });
  const gbad = await api('PATCH', '/api/v1/groups/compute', { attrs: { vlan: '10', 'x-y': '1' } });
  assert.equal(gbad.status, 400);
  assert.equal(gbad.body.field, 'attrs.x-y');
  assert.equal(dumpDb(f.dir), before, 'rejected VNFS and group changes left everything as it was');
  const gset = await api('PATCH', '/api/v1/groups/compute', { attrs: { vlan: '10', head_node: 'head' } });
  assert.deepEqual(gset.body, { name: 'compute', nodes: 1, attrs: { head_node: 'head', vlan: '10' } });
  assert.deepEqual((await api('GET', '/api/v1/groups/compute')).body.members, ['n0000']);
  assert.equal((await api('GET', '/api/v1/groups/nope')).status, 404);
  const gInUse = await api('DELETE', '/api/v1/groups/compute');
  assert.equal(gInUse.status, 400);
  assert.match(gInUse.body.error, /still has 1 node/);
  assert.deepEqual((await api('DELETE', '/api/v1/groups/compute?move_to=spare')).body, { deleted: 'compute' });
  assert.equal(f.store.nodes.byName('n0000')!.group, 'spare');

  await api('PATCH', '/api/v1/nodes/n0000', { vnfs: '' });
  assert.deepEqual((await api('DELETE', '/api/v1/vnfs/debian12')).body, { deleted: 'debian12' });
  assert.equal(fs.existsSync(path.join(f.dir, 'vnfs', 'debian12')), false);
  assert.equal((await api('DELETE', '/api/v1/vnfs/debian12')).status, 404);
});

test('leases and events: listing, filters by node, MAC, kind prefix, since/until and limit, and bad filters name the field', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  const now = Date.now();
  f.store.leases.putMany([
    { mac: 'aa:bb:cc:00:00:01', ip: '10.0.0.100', expiresAt: now + 3600_000, hostname: 'n0000', state: 'bound', subnet: '10.0.0.0/24', updatedAt: now },
    { mac: 'aa:bb:cc:00:00:02', ip: '10.0.0.101', expiresAt: now - 1000, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: now },
  ]);
  const leases = await api('GET', '/api/v1/leases');
  assert.equal(leases.body.leases.length, 2);
  assert.deepEqual(Object.keys(leases.body.leases[0]), ['mac', 'ip', 'state', 'hostname', 'subnet', 'expires']);
  assert.deepEqual((await api('GET', '/api/v1/leases?active=yes')).body.leases.map((l: { ip: string }) => l.ip), ['10.0.0.100']);

  const t0 = 1_700_000_000_000;
  const evs = [
    { time: t0, mac: 'aa:bb:cc:00:00:01', node: 'n0000', kind: 'dhcp.discover' },
    { time: t0 + 10, mac: 'aa:bb:cc:00:00:01', node: 'n0000', kind: 'dhcp.offer', detail: { ip: '10.0.0.100' } },
    { time: t0 + 20, kind: 'tftp.done', detail: { file: 'undionly.kpxe', bytes: 1000 } },
    { time: t0 + 30, mac: 'aa:bb:cc:00:00:01', node: 'n0000', kind: 'http.ipxe' },
    { time: t0 + 40, mac: 'aa:bb:cc:00:00:02', node: 'n0001', kind: 'dhcp.discover' },
  ];
  for (const e of evs) f.store.events.record(e);
  const all = await api('GET', '/api/v1/events');
  assert.equal(all.body.events.length, 5);
  assert.equal(all.body.events[0].kind, 'dhcp.discover', 'newest first');
  assert.equal(all.body.events[0].node, 'n0001');
  assert.deepEqual(Object.keys(all.body.events[0]), ['id', 'time', 'mac', 'node', 'kind', 'detail']);
  const kinds = (r: Answer) => r.body.events.map((e: { kind: string }) => e.kind);
  assert.deepEqual(kinds(await api('GET', '/api/v1/events?node=n0000&order=asc')), ['dhcp.discover', 'dhcp.offer', 'http.ipxe']);
  assert.deepEqual(kinds(await api('GET', '/api/v1/events?mac=AA-BB-CC-00-00-02')), ['dhcp.discover']);
  assert.deepEqual(kinds(await api('GET', '/api/v1/events?kind=dhcp&order=asc')), ['dhcp.discover', 'dhcp.offer', 'dhcp.discover']);
  assert.deepEqual(kinds(await api('GET', '/api/v1/events?kind=dhcp.offer')), ['dhcp.offer']);
  assert.deepEqual(kinds(await api('GET', `/api/v1/events?since=${t0 + 10}&until=${new Date(t0 + 30).toISOString()}&order=asc`)), ['dhcp.offer', 'tftp.done', 'http.ipxe']);
  assert.deepEqual(kinds(await api('GET', '/api/v1/events?limit=2&order=asc')), ['dhcp.discover', 'dhcp.offer']);
  for (const [qs, field] of [
    ['mac=zz', 'mac'],
    ['since=yesterday', 'since'],
    ['until=nope', 'until'],
    ['limit=0', 'limit'],
    ['limit=abc', 'limit'],
    ['order=up', 'order'],
    ['kind=DROP%20TABLE', 'kind'],
  ]) {
    const r = await api('GET', `/api/v1/events?${qs}`);
    assert.equal(r.status, 400, qs);
    assert.equal(r.body.field, field, qs);
  }
  const c = await curl(['-H', `Authorization: Bearer ${f.tokens.readonly}`, `${f.base}/api/v1/events?kind=tftp`]);
  assert.equal(c.status, 200);
  assert.equal(JSON.parse(c.body).events[0].detail.bytes, 1000);
});

test('the event stream sends each new boot event as server-sent events, filtered', async (t) => {
  const f = await withAdmin(t);
  const ac = new AbortController();
  t.after(() => ac.abort());
  const r = await fetch(`${f.base}/api/v1/events/stream?kind=dhcp`, { headers: { authorization: `Bearer ${f.tokens.readonly}` }, signal: ac.signal });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type')!, /^text\/event-stream/);
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let got = '';
  const readUntil = async (re: RegExp) => {
    const deadline = Date.now() + 5000;
    while (!re.test(got)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; got ${got}`);
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      got += dec.decode(value);
    }
  };
  await readUntil(/retry: 3000/);
  f.store.events.record({ kind: 'tftp.done', detail: { bytes: 1 } });
  f.store.events.record({ kind: 'dhcp.ack', mac: 'aa:bb:cc:00:00:09', node: 'n9', detail: { ip: '10.0.0.9' } });
  await readUntil(/event: boot\ndata: .*dhcp\.ack.*\n\n/);
  const frame = /data: (.*)\n/.exec(got.slice(got.indexOf('event: boot')))![1]!;
  const ev = JSON.parse(frame);
  assert.equal(ev.kind, 'dhcp.ack');
  assert.equal(ev.mac, 'aa:bb:cc:00:00:09');
  assert.equal(ev.detail.ip, '10.0.0.9');
  assert.doesNotMatch(got, /tftp\.done/, 'the kind filter holds back other protocols');
  await readUntil(/: keep-alive/);
  const bad = await client(f)('GET', '/api/v1/events/stream?mac=bad');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.field, 'mac');
});

test('script list/render and explain answer 501 until wired, then call the injected functions with validated input', async (t) => {
  const bare = await withAdmin(t);
  const api0 = client(bare);
  await api0('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:01' });
  for (const url of ['/api/v1/nodes/n0000/scripts', '/api/v1/nodes/n0000/script', '/api/v1/explain/aa:bb:cc:00:00:01']) {
    const r = await api0('GET', url);
    assert.equal(r.status, 501, url);
    assert.match(r.body.error, /not available in this server/);
  }
  await bare.close();

  const calls: unknown[] = [];
  const f = await withAdmin(t, {
    scripts: {
      list: (n: Node, state: string) => (calls.push(['list', n.name, state]), { node: n.name, state, order: ['00-init'], skipped: [] }),
      render: async (n: Node, state: string) => (calls.push(['render', n.name, state]), `# NODESCRIPT START\necho ${n.name}\n# NODESCRIPT END\n`),
    },
    explain: (mac: string, opts: unknown) => (calls.push(['explain', mac, opts]), { mac, reply: 'OFFER' }),
  });
  const api = client(f);
  await api('POST', '/api/v1/nodes', { mac: 'aa:bb:cc:00:00:01' });
  assert.deepEqual((await api('GET', '/api/v1/nodes/n0000/scripts')).body, { node: 'n0000', state: 'init', order: ['00-init'], skipped: [] });
  const rendered = await api('GET', '/api/v1/nodes/aa:bb:cc:00:00:01/script?state=ready');
  assert.equal(rendered.body.text, '# NODESCRIPT START\necho n0000\n# NODESCRIPT END\n');
  assert.equal(rendered.body.state, 'ready');
  const badState = await api('GET', '/api/v1/nodes/n0000/scripts?state=../../etc');
  assert.equal(badState.status, 400);
  assert.equal(badState.body.field, 'state');
  assert.equal((await api('GET', '/api/v1/nodes/ghost/scripts')).status, 404);
  const ex = await api('GET', '/api/v1/explain/AA-BB-CC-00-00-01?arch=7&ipxe=yes');
  assert.deepEqual(ex.body, { mac: 'aa:bb:cc:00:00:01', reply: 'OFFER' });
  assert.equal((await api('GET', '/api/v1/explain/nonsense')).body.field, 'mac');
  assert.equal((await api('GET', '/api/v1/explain/aa:bb:cc:00:00:01?arch=x86')).body.field, 'arch');
  assert.deepEqual(calls, [
    ['list', 'n0000', 'init'],
    ['render', 'n0000', 'ready'],
    ['explain', 'aa:bb:cc:00:00:01', { arch: 7, ipxe: true, proxy: false, httpClient: false }],
  ]);
});

test('unknown API routes are JSON 404s and the admin token file holds the token the API accepts', async (t) => {
  const f = await withAdmin(t);
  const api = client(f);
  const r = await api('GET', '/api/v1/nothing');
  assert.equal(r.status, 404);
  assert.match(r.body.error, /no API route GET \/api\/v1\/nothing/);
  assert.equal((await api('GET', '/api/v2/nodes')).status, 404);
  const fileToken = fs.readFileSync(path.join(f.dir, 'admin.token'), 'utf8').trim();
  assert.equal((await client(f, fileToken)('GET', '/api/v1/nodes')).status, 200);
  assert.equal(fs.statSync(path.join(f.dir, 'admin.token')).mode & 0o777, 0o600);
});

test('close() ends open event streams so the admin listener can shut down', async (t) => {
  const http = await import('node:http');
  const { Store } = await import('../../src/store/store.js');
  const { NodeService } = await import('../../src/nodes/service.js');
  const { parseConfig } = await import('../../src/config/load.js');
  const { createAdminApp } = await import('../../src/admin/index.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-admin-close-'));
  const store = Store.open(dir);
  t.after(() => {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const tokens = { admin: 'a'.repeat(43), readonly: 'r'.repeat(43) };
  const admin = createAdminApp({ store, service: new NodeService(store, parseConfig({ statedir: dir }, dir)), tokens });
  const server = http.createServer(admin.handler);
  await new Promise<void>((resolve) => server.listen(18230, '127.0.0.1', () => resolve()));
  const r = await fetch('http://127.0.0.1:18230/api/v1/events/stream', { headers: { authorization: `Bearer ${tokens.admin}`, connection: 'close' } });
  assert.equal(r.status, 200);
  const reader = r.body!.getReader();
  await reader.read();
  const closed = new Promise<string>((resolve) => server.close(() => resolve('closed')));
  admin.close();
  const outcome = await Promise.race([closed, new Promise<string>((resolve) => setTimeout(() => resolve('still open after 3 s'), 3000))]);
  assert.equal(outcome, 'closed');
  assert.equal((await reader.read()).done, true, 'the client sees the stream end');
});
