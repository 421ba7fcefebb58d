import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, existsSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import express from 'express';
import { MemoryProvisionBackend } from '../../src/provision/memory-backend.js';
import { ProvisionService } from '../../src/provision/service.js';
import { provisionRouter, type ProvisionRouterOptions } from '../../src/provision/http.js';
import { NodescriptEngine } from '../../src/nodescripts/engine.js';
import { createSpawner } from '../../src/nodescripts/helper-spawner.js';

const PORT = 19872;
const BASE = `http://127.0.0.1:${PORT}`;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-'));
const marker = (n: string) => path.join(tmp, `ran-${n}`);
const MAC1 = '52:54:00:00:00:01';

function write(rel: string, body: string, mode = 0o755) {
  const p = path.join(tmp, 'ns', rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, body);
  chmodSync(p, mode);
}
write('init/all/10-hello', `#!/bin/sh\necho "echo hello \\"$NODENAME\\" from $GROUPNAME at $IPADDR"\ntouch ${tmp}/ran-$NODENAME\n`);
write('init/all/20-slow', `#!/bin/sh\n[ "$ATTR_SLOW" = 1 ] && sleep 1.2\necho 'echo slow done'\n`);
write('init/all/30-fail', `#!/bin/sh\n[ "$ATTR_FAIL" = 1 ] && { echo nope >&2; exit 4; }\necho 'echo last'\ntouch ${tmp}/last-$NODENAME\n`);
write('ready/all/00-ready', `#!/bin/sh\necho "echo ready $NODENAME"\n`);

let backend: MemoryProvisionBackend;
let engine: NodescriptEngine;
let server: Server;
const auth: { fn?: ProvisionRouterOptions['authorize'] } = {};

before(async () => {
  backend = new MemoryProvisionBackend({ namePattern: 'n####', defaultGroup: 'cluster' });
  backend.add({ mac: MAC1, name: 'n0001', group: 'compute' });
  engine = new NodescriptEngine({ dir: path.join(tmp, 'ns'), statedir: tmp, events: backend.events, spawner: createSpawner({ log: () => {} }), timeoutSeconds: 10 });
  const service = new ProvisionService(backend, engine);
  const app = express();
  app.use(provisionRouter(service, { authorize: (n, req, ctx) => (auth.fn ? auth.fn(n, req, ctx) : { ok: true }) }));
  await new Promise<void>((r) => {
    server = app.listen(PORT, '127.0.0.1', () => r());
  });
});
after(async () => {
  await new Promise((r) => server.close(r));
  await engine.close();
  rmSync(tmp, { recursive: true, force: true });
});

function curl(args: string[]): Promise<{ code: number; body: string; status: number; headers: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '-g', '--path-as-is', '-D', '-', ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout) => {
      const split = stdout.indexOf('\r\n\r\n');
      const headers = stdout.slice(0, split);
      resolve({ code: err ? 1 : 0, headers, body: stdout.slice(split + 4), status: Number(headers.split(' ')[1]) });
    });
  });
}

test('known node gets its nodescripts streamed (chunked text/plain), byte-identical to renderScript', async () => {
  const r = await curl([`${BASE}/provision/init?mac=${MAC1}`]);
  assert.equal(r.status, 200);
  assert.match(r.headers, /transfer-encoding: chunked/i);
  assert.match(r.headers, /content-type: text\/plain/i);
  const n = backend.byMac(MAC1)!;
  assert.equal(n.state, 'init');
  assert.equal(n.ip, '127.0.0.1');
  assert.ok(n.lastContact && Date.now() - n.lastContact < 5000);
  const rendered = await engine.renderScript(n, 'init', { attrs: backend.attrsFor(n) });
  assert.equal(r.body, rendered.text);
  assert.equal(r.body, '# NODESCRIPT START\necho hello "n0001" from compute at 127.0.0.1\necho slow done\necho last\n# NODESCRIPT END\n');
  // nodeid= with the pxelinux 01- prefix names the same node
  const r2 = await curl([`${BASE}/provision/ready?nodeid=01-52-54-00-00-00-01`]);
  assert.equal(r2.body, '# NODESCRIPT START\necho ready n0001\n# NODESCRIPT END\n');
  assert.equal(backend.byMac(MAC1)!.state, 'ready');
});

test('start and end of every request are events, with duration, script count and outcome', async () => {
  backend.log.length = 0;
  await curl([`${BASE}/provision/init?mac=${MAC1}`]);
  const start = backend.log.find((e) => e.kind === 'provision.start')!;
  const end = backend.log.find((e) => e.kind === 'provision.end')!;
  assert.deepEqual(start.detail, { state: 'init', via: 'http', ip: '127.0.0.1', registered: false });
  assert.equal(end.mac, MAC1);
  assert.equal(end.detail!.scripts, 3);
  assert.equal(end.detail!.ok, true);
  assert.equal(typeof end.detail!.durationMs, 'number');
});

test('each script output leaves as soon as it is ready (streaming, not buffered)', async () => {
  backend.byMac(MAC1)!.attrs = { slow: '1' };
  const t0 = Date.now();
  const firstAt = await new Promise<{ first: number; end: number; body: string }>((resolve, reject) => {
    let first = 0;
    let body = '';
    http.get(`${BASE}/provision/init?mac=${MAC1}`, { agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        if (!first && body.includes('echo hello')) first = Date.now() - t0;
      });
      res.on('end', () => resolve({ first, end: Date.now() - t0, body }));
    }).on('error', reject);
  });
  backend.byMac(MAC1)!.attrs = {};
  assert.ok(firstAt.body.endsWith('# NODESCRIPT END\n'));
  assert.ok(firstAt.end - firstAt.first >= 900, `first output at ${firstAt.first} ms, end at ${firstAt.end} ms`);
});

test('a failing script: 200 with the error lines; the node shell fed by curl exits 1 naming the script', async () => {
  backend.byMac(MAC1)!.attrs = { fail: '1' };
  const r = await new Promise<{ code: number; stderr: string; stdout: string }>((resolve) =>
    execFile('sh', ['-c', `curl -sS '${BASE}/provision/init?mac=${MAC1}' | sh`], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    ),
  );
  backend.byMac(MAC1)!.attrs = {};
  assert.equal(r.code, 1);
  assert.equal(r.stdout, 'hello n0001 from compute at 127.0.0.1\nslow done\n');
  assert.equal(r.stderr, 'pxeherd: nodescript init/all/30-fail failed: exit code 4\n');
  const fail = [...backend.log].reverse().find((e) => e.kind === 'nodescript.fail')!;
  assert.equal(fail.detail!.stderr, 'nope\n');
  assert.equal([...backend.log].reverse().find((e) => e.kind === 'provision.end')!.detail!.ok, false);
});

test('unknown MAC asking for init is registered with the name pattern and default group', async () => {
  const r = await curl([`${BASE}/provision/init?mac=52-54-00-AA-00-09`]);
  assert.equal(r.status, 200);
  const n = backend.byMac('52:54:00:aa:00:09')!;
  assert.equal(n.name, 'n0000');
  assert.equal(n.group, 'cluster');
  assert.match(r.body, /echo hello "n0000" from cluster/);
  assert.ok(backend.log.some((e) => e.kind === 'node.register' && e.mac === '52:54:00:aa:00:09'));
});

test('unknown node in another state: 404 with a reason, nothing runs', async () => {
  const r = await curl([`${BASE}/provision/ready?mac=52:54:00:bb:00:01`]);
  assert.equal(r.status, 404);
  assert.match(r.body, /^# pxeherd: unknown node 52:54:00:bb:00:01: only state "init" registers new nodes/);
  assert.equal(backend.byMac('52:54:00:bb:00:01'), undefined);
});

test('auto-registration off: 403 with the reason', async () => {
  const prev = backend.opts.autoRegister;
  backend.opts.autoRegister = false;
  const r = await curl([`${BASE}/provision/init?mac=52:54:00:bb:00:02`]);
  backend.opts.autoRegister = prev;
  assert.equal(r.status, 403);
  assert.match(r.body, /auto-registration is off/);
});

test('authorize hook can refuse before anything runs', async () => {
  auth.fn = (n, _req, ctx) => (n.name === 'n0001' ? { ok: false, status: 401, reason: `token required for ${n.name} (${ctx.state})` } : { ok: true });
  rmSync(marker('n0001'), { force: true });
  const r = await curl([`${BASE}/provision/init?mac=${MAC1}`]);
  auth.fn = undefined;
  assert.equal(r.status, 401);
  assert.equal(r.body, '# pxeherd: token required for n0001 (init)\n');
  assert.equal(existsSync(marker('n0001')), false);
});

test('hostile state words, MACs and parameters are refused with 4xx; nothing runs and the server keeps serving', async () => {
  rmSync(marker('n0001'), { force: true });
  const cases: [string, number, RegExp][] = [
    [`/provision/..%2F..%2Fetc?mac=${MAC1}`, 400, /state "..\/..\/etc" is not allowed/],
    [`/provision/INIT?mac=${MAC1}`, 400, /state "INIT" is not allowed/],
    [`/provision/${'a'.repeat(40)}?mac=${MAC1}`, 400, /is not allowed/],
    [`/provision/init%0aecho?mac=${MAC1}`, 400, /is not allowed/],
    [`/provision/init%00?mac=${MAC1}`, 400, /is not allowed/],
    [`/provision/init?mac=$(reboot)`, 400, /invalid MAC address/],
    [`/provision/init?mac=${MAC1}&mac=${MAC1}`, 400, /once/],
    [`/provision/init?mac[a]=1`, 404, /no MAC given/], // simple query parser: 'mac[a]' is just another key
    [`/provision/init`, 404, /no MAC given and none known for address 127.0.0.1/],
  ];
  for (const [url, status, re] of cases) {
    const r = await curl([`${BASE}${url}`]);
    assert.equal(r.status, status, url);
    assert.match(r.body, re, url);
    assert.equal(r.body.split('\n').length, 2, `one line only for ${url}: ${JSON.stringify(r.body)}`);
  }
  // path traversal does not even reach the router with a valid-looking state
  const trav = await curl([`${BASE}/provision/../../etc/passwd?mac=${MAC1}`]);
  assert.notEqual(trav.status, 200);
  assert.equal(existsSync(marker('n0001')), false);
  // HEAD must not run scripts (express maps it to the GET route)
  const head = await curl(['-I', `${BASE}/provision/init?mac=${MAC1}`]);
  assert.equal(head.status, 405);
  assert.equal(existsSync(marker('n0001')), false);
  const ok = await curl([`${BASE}/provision/init?mac=${MAC1}`]);
  assert.equal(ok.status, 200);
});

test('a client that hangs up mid-stream stops the remaining scripts', async () => {
  backend.byMac(MAC1)!.attrs = { slow: '1' };
  rmSync(path.join(tmp, 'last-n0001'), { force: true });
  await new Promise<void>((resolve, reject) => {
    // A fresh connection (agent: false): a pooled keep-alive socket the server has just closed
    // would fail this request before it starts. Every way the request can end settles the
    // promise: a request that ends without the first script's output is a failure, not a hang.
    let body = '';
    let hungUp = false;
    const req = http.get(`${BASE}/provision/init?mac=${MAC1}`, { agent: false }, (res) => {
      res.on('data', (d: Buffer) => {
        body += d.toString();
        // hang up while 20-slow runs: 30-fail must then never start
        if (!hungUp && body.includes('echo hello')) {
          hungUp = true;
          req.destroy();
          resolve();
        }
      });
      res.on('end', () => hungUp || reject(new Error(`the response ended before the first script's output: HTTP ${res.statusCode}, body ${JSON.stringify(body)}`)));
    });
    req.on('error', (e) => hungUp || reject(new Error(`the request failed before the first script's output: ${e.message}`)));
    req.on('close', () => hungUp || reject(new Error(`the connection closed before the first script's output (body ${JSON.stringify(body)})`)));
  });
  // Wait for the request to end (the engine notices the hang-up), however loaded the machine is.
  let end: (typeof backend.log)[number] | undefined;
  for (let i = 0; i < 150 && !end?.detail?.aborted; i++) {
    await new Promise((r) => setTimeout(r, 100));
    end = [...backend.log].reverse().find((e) => e.kind === 'provision.end');
  }
  await new Promise((r) => setTimeout(r, 500));
  backend.byMac(MAC1)!.attrs = {};
  assert.equal(existsSync(path.join(tmp, 'last-n0001')), false, 'script after the hang-up ran');
  assert.ok(end, 'the request ended with provision.end');
  assert.equal(end!.detail!.aborted, true);
  assert.equal(end!.detail!.scripts, 2);
});
