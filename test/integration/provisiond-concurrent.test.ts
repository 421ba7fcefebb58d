import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import express from 'express';
import { MemoryProvisionBackend } from '../../src/provision/memory-backend.js';
import { ProvisionService } from '../../src/provision/service.js';
import { provisionRouter } from '../../src/provision/http.js';
import { NodescriptEngine } from '../../src/nodescripts/engine.js';
import { createSpawner } from '../../src/nodescripts/helper-spawner.js';
import { ProvisiondServer } from '../../src/provisiond/server.js';

const HTTP_PORT = 19874;
const TCP_PORT = 19875;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-conc-'));
const NODES = 50;

function write(rel: string, body: string) {
  const p = path.join(tmp, 'ns', rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, body);
  chmodSync(p, 0o755);
}
write('init/all/10-id', `#!/bin/sh\necho "echo $NODENAME $NODEID $GROUPNAME rack=$ATTR_RACK ip=$IPADDR"\n`);
write('init/all/20-work', `#!/bin/sh\nsleep 0.0$(( $(printf %d 0x\${NODEID##*:}) % 5 ))\necho "N_$NODENAME=1"\n`);
write('init/all/30-group', `#!/bin/sh\necho "echo all-30"\n`);
for (const g of ['g0', 'g1', 'g2']) write(`init/group/${g}/30-group`, `#!/bin/sh\necho "echo group ${g} overrides"\n`);
write('init/node/n0007/40-only7', `#!/bin/sh\necho "echo only for n0007"\n`);
write('init/all/50-big', `#!/bin/sh\ni=0; while [ $i -lt 200 ]; do echo "# filler $i for $NODENAME"; i=$((i+1)); done\n`);

let backend: MemoryProvisionBackend;
let engine: NodescriptEngine;
let http: Server;
let pd: ProvisiondServer;
const macOf = (i: number) => `52:54:00:10:00:${i.toString(16).padStart(2, '0')}`;

before(async () => {
  backend = new MemoryProvisionBackend();
  for (let i = 0; i < NODES; i++) {
    backend.add({ mac: macOf(i), name: `n${String(i).padStart(4, '0')}`, group: i % 4 === 3 ? 'other' : `g${i % 4}`, attrs: { rack: `r${i % 7}` } });
  }
  backend.groupAttrs.set('g1', { rack: 'group-rack', extra: 'x' });
  engine = new NodescriptEngine({ dir: path.join(tmp, 'ns'), statedir: tmp, events: backend.events, spawner: createSpawner({ log: () => {} }), maxParallel: 8 });
  const service = new ProvisionService(backend, engine);
  const app = express();
  app.use(provisionRouter(service));
  await new Promise<void>((r) => {
    http = app.listen(HTTP_PORT, '127.0.0.1', () => r());
  });
  pd = new ProvisiondServer(service, { port: TCP_PORT, listen: '127.0.0.1' });
  await pd.start();
});
after(async () => {
  await pd.stop();
  await new Promise((r) => http.close(r));
  await engine.close();
  rmSync(tmp, { recursive: true, force: true });
});

function client(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 24 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${err.message} ${stderr}`)) : resolve(stdout)));
    p.stdin!.end(input ?? '');
  });
}

test('200 concurrent requests over HTTP (curl) and TCP (busybox nc): each response is byte-identical to renderScript for its node', async () => {
  const jobs = Array.from({ length: 200 }, (_, k) => {
    const i = (k * 7) % NODES;
    const mac = macOf(i);
    if (k % 2 === 0) return { i, via: 'http' as const, p: client('curl', ['-sS', '--fail', `http://127.0.0.1:${HTTP_PORT}/provision/init?mac=${mac}`]) };
    return { i, via: 'tcp' as const, p: client('busybox', ['nc', '127.0.0.1', String(TCP_PORT)], `init nodeid=${mac}\n`) };
  });
  const outs = await Promise.all(jobs.map((j) => j.p));
  const expected = new Map<number, string>();
  for (const j of jobs) {
    if (!expected.has(j.i)) {
      const n = backend.byMac(macOf(j.i))!;
      const r = await engine.renderScript(n, 'init', { attrs: backend.attrsFor(n) });
      assert.equal(r.ok, true);
      expected.set(j.i, r.text);
    }
  }
  let checked = 0;
  jobs.forEach((j, k) => {
    const want = expected.get(j.i)!;
    const got = outs[k]!;
    if (j.via === 'http') assert.equal(got, want, `http response ${k} for node ${j.i}`);
    else assert.equal(got, `# PERCEUSD START\n${want}# PROVISIOND END\n`, `tcp response ${k} for node ${j.i}`);
    checked++;
  });
  assert.equal(checked, 200);
  // the responses really differ per node (group override, node script, attributes)
  assert.match(expected.get(7)!, /echo only for n0007/);
  assert.match(expected.get(1)!, /echo group g1 overrides/);
  assert.match(expected.get(1)!, /rack=r1 /);
  assert.match(expected.get(3)!, /echo all-30/);
  const ends = backend.log.filter((e) => e.kind === 'provision.end');
  assert.equal(ends.length, 200);
  assert.ok(ends.every((e) => e.detail!.ok === true));
  assert.deepEqual(backend.log.filter((e) => e.kind === 'nodescript.fail'), []);
});
