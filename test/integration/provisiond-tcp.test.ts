import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, existsSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MemoryProvisionBackend } from '../../src/provision/memory-backend.js';
import { ProvisionService } from '../../src/provision/service.js';
import { NodescriptEngine } from '../../src/nodescripts/engine.js';
import { createSpawner } from '../../src/nodescripts/helper-spawner.js';
import { ProvisiondServer } from '../../src/provisiond/server.js';

const PORT = 19873;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-tcp-'));
const MAC1 = '52:54:00:00:01:01';

function write(rel: string, body: string, mode = 0o755) {
  const p = path.join(tmp, 'ns', rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, body);
  chmodSync(p, mode);
}
write('init/all/10-hello', `#!/bin/sh\necho "echo hello $NODENAME $NODEID $IPADDR"\ntouch ${tmp}/ran-$NODENAME\n`);
write('init/all/90-last', `#!/bin/sh\necho 'echo last'\n`);
write('ready/all/00-ready', `#!/bin/sh\necho "echo ready $NODENAME"\n`);

let backend: MemoryProvisionBackend;
let engine: NodescriptEngine;
let pd: ProvisiondServer;

before(async () => {
  backend = new MemoryProvisionBackend();
  backend.add({ mac: MAC1, name: 'c01', group: 'compute' });
  engine = new NodescriptEngine({ dir: path.join(tmp, 'ns'), statedir: tmp, events: backend.events, spawner: createSpawner({ log: () => {} }) });
  pd = new ProvisiondServer(new ProvisionService(backend, engine), { port: PORT, listen: '127.0.0.1', readTimeoutMs: 500, maxLineBytes: 4096 });
  await pd.start();
});
after(async () => {
  await pd.stop();
  await engine.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A real client: printf '<request>' | busybox nc 127.0.0.1 PORT */
function nc(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = execFile('busybox', ['nc', '127.0.0.1', String(PORT)], { encoding: 'latin1', timeout: 15_000 }, (err, stdout) =>
      err && !stdout ? reject(err) : resolve(stdout),
    );
    p.stdin!.end(Buffer.from(request, 'latin1'));
  });
}

/** Raw socket for what nc cannot do (slow senders, resets). */
function raw(send: (s: net.Socket) => void): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(PORT, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('close', () => resolve(out));
    s.on('error', () => {});
    s.on('connect', () => send(s));
  });
}

const frame = (body: string) => `# PERCEUSD START\n${body}# PROVISIOND END\n`;

test('state request with nodeid (01: prefix): PERCEUSD frame around the nodescript stream', async () => {
  const out = await nc('init nodeid=01:52:54:00:00:01:01\n');
  const n = backend.byMac(MAC1)!;
  const r = await engine.renderScript(n, 'init', { attrs: backend.attrsFor(n) });
  assert.equal(out, frame(r.text));
  assert.equal(out, frame(`# NODESCRIPT START\necho hello c01 ${MAC1} 127.0.0.1\necho last\n# NODESCRIPT END\n`));
  assert.equal(n.state, 'init');
  assert.equal(n.ip, '127.0.0.1');
  const end = [...backend.log].reverse().find((e) => e.kind === 'provision.end')!;
  assert.equal(end.detail!.via, 'tcp');
  assert.equal(end.detail!.scripts, 2);
});

test('without nodeid the node is found by its peer address (lease/ARP lookup in the backend)', async () => {
  backend.ipToMac.set('127.0.0.1', MAC1);
  const out = await nc('ready\n');
  backend.ipToMac.clear();
  assert.equal(out, frame('# NODESCRIPT START\necho ready c01\n# NODESCRIPT END\n'));
  const unknown = await nc('ready\n');
  assert.match(unknown, /^# PERCEUSD START\n# pxeherd: no MAC given and none known for address 127\.0\.0\.1/);
  assert.match(unknown, /\nexit 1\n# PROVISIOND END\n$/);
});

test('registration: a requested nodename is used only if valid and free', async () => {
  await nc('init nodeid=52:54:00:00:01:02 nodename=rack1-n07\n');
  assert.equal(backend.byMac('52:54:00:00:01:02')!.name, 'rack1-n07');
  await nc('init nodeid=52:54:00:00:01:03 nodename=rack1-n07\n'); // taken
  assert.equal(backend.byMac('52:54:00:00:01:03')!.name, 'n0000');
  await nc('init nodeid=52:54:00:00:01:04 nodename=../../etc\n'); // invalid
  assert.equal(backend.byMac('52:54:00:00:01:04')!.name, 'n0001');
  const out = await nc('init nodeid=52:54:00:00:01:05 nodename=$(reboot);x\n');
  assert.equal(backend.byMac('52:54:00:00:01:05')!.name, 'n0002');
  assert.match(out, /echo hello n0002 /);
  await nc(`init nodeid=52:54:00:00:01:06 nodename=${'n'.repeat(64)}\n`); // too long
  assert.equal(backend.byMac('52:54:00:00:01:06')!.name, 'n0003');
});

test('unknown node asking for another state gets a comment line and a failing shell, nothing runs', async () => {
  const out = await nc('ready nodeid=52:54:00:00:01:99\n');
  assert.equal(
    out,
    frame(
      "# pxeherd: unknown node 52:54:00:00:01:99: only state \"init\" registers new nodes (or add it: pxeherd node add 52:54:00:00:01:99)\necho 'pxeherd: unknown node 52:54:00:00:01:99: only state \"init\" registers new nodes (or add it: pxeherd node add 52:54:00:00:01:99)' >&2\nexit 1\n",
    ),
  );
  assert.equal(backend.byMac('52:54:00:00:01:99'), undefined);
});

test('ping echoes the token; log records an event', async () => {
  assert.equal(await nc('ping 8f2a-xyz\n'), '8f2a-xyz\n');
  await nc('log disk /dev/sda missing\n');
  const ev = [...backend.log].reverse().find((e) => e.kind === 'provision.log')!;
  assert.equal(ev.detail!.message, 'disk /dev/sda missing');
  assert.equal(ev.detail!.ip, '127.0.0.1');
});

test('hostile requests get one error line, run nothing, and never take the server down', async () => {
  rmSync(path.join(tmp, 'ran-c01'), { force: true });
  const hostile: [string, RegExp][] = [
    [`../../bin nodeid=${MAC1}\n`, /^# pxeherd: state "..\/..\/bin" is not allowed/],
    [`INIT nodeid=${MAC1}\n`, /is not allowed/],
    [`init;reboot nodeid=${MAC1}\n`, /is not allowed/],
    [`init nodeid=${MAC1} nodeid=${MAC1}\n`, /given twice/],
    [`init nodeid=$(reboot)\n`, /^# PERCEUSD START\n# pxeherd: invalid MAC address/],
    [`init nodeid=${MAC1} garbage\n`, /expected key=value/],
    ['\x00\x01\x02\xff\xfe\n', /control or non-ASCII/],
    ['\n', /empty request/],
    [`${'A'.repeat(5000)}\n`, /longer than 4096 bytes/],
    [`init nodeid=${MAC1}${' x=y'.repeat(2000)}\n`, /longer than 4096 bytes/],
  ];
  for (const [req, re] of hostile) {
    const out = await nc(req);
    assert.match(out, re, JSON.stringify(req.slice(0, 40)));
    assert.ok(!out.includes('NODESCRIPT START'), 'nothing may run');
  }
  // a line that never ends is cut at the limit, not buffered forever
  const endless = await raw((s) => s.write('a'.repeat(70_000)));
  assert.match(endless, /longer than 4096 bytes/);
  // a client that sends nothing is dropped after the read timeout
  const t0 = Date.now();
  const silent = await raw(() => {});
  assert.match(silent, /no request line within 0.5 s/);
  assert.ok(Date.now() - t0 < 3000);
  // clients that reset or vanish mid-request
  for (let i = 0; i < 20; i++) {
    await raw((s) => {
      s.write('init node');
      s.resetAndDestroy();
    });
  }
  assert.equal(existsSync(path.join(tmp, 'ran-c01')), false);
  assert.ok(pd.badRequests >= hostile.length);
  // still serving
  assert.match(await nc(`init nodeid=${MAC1}\n`), /echo hello c01/);
});

test('a request without the final newline (half-closed) is still answered', async () => {
  const out = await raw((s) => s.end('ping last-word'));
  assert.equal(out, 'last-word\n');
});

test('a port that cannot be bound is a clear error from start()', async () => {
  const other = new ProvisiondServer(new ProvisionService(backend, engine), { port: PORT, listen: '127.0.0.1' });
  await assert.rejects(other.start(), /provisiond: cannot listen on 127\.0\.0\.1:19873: EADDRINUSE \(another process listens there/);
  await other.stop();
});
