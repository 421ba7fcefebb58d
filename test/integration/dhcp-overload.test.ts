/**
 * `pxeherd serve` flooded past what it can answer (ISC perfdhcp offering 10 000 DORA/s from a
 * million MACs, each registered as a node) must still answer a known node's own DHCP client (busybox
 * udhcpc) and its admin API, and report its queue and what it shed in /metrics. Nothing here
 * is timed: how many of the flood's exchanges complete depends on the machine.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, labUnavailable, nsExec, sh, writeEnvScript, eventEnv, type Lab } from './dhcp-lab.js';
import { spawnIn, tmpDir, waitFor, run } from '../lab/lab.js';
import { CLI } from '../helpers/cli.js';

const KNOWN = '02:79:00:00:00:aa';
const ADMIN = 'http://127.0.0.1:18281';
const skip = labUnavailable(['perfdhcp', 'busybox', 'curl']) ?? (fs.existsSync(CLI) ? undefined : 'dist/cli.js not built (npm run build)');
let lab: Lab;
let dir: string;
let server: ChildProcess;
let log: string;
let token: string;

before(async () => {
  if (skip) return;
  dir = tmpDir('pxeherd-dhcp-overload-');
  lab = await createLab('ov', { clientMac: KNOWN });
  // One /16 for the link (the pool and perfdhcp acting as a relay at 10.79.0.2), as bench/dhcp.ts.
  await sh('ip', ['-n', lab.server, 'addr', 'flush', 'dev', 'br0']);
  await sh('ip', ['-n', lab.server, 'addr', 'add', '10.79.0.1/16', 'dev', 'br0']);
  await sh('ip', ['-n', lab.client, 'addr', 'add', '10.79.0.2/16', 'dev', 'eth0']);
  const config = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(
    config,
    `statedir: ${path.join(dir, 'var')}
interface: br0
address: 10.79.0.1
dhcp: { mode: full, range: [10.79.1.0, 10.79.255.254], netmask: 255.255.0.0 }
tftp: { port: 0 }
http: { port: 0 }
provisiond: { port: 0 }
admin: { listen: 127.0.0.1, port: 18281 }
nodes: { name_pattern: 'n######' }
log: { level: warn }
`,
  );
  await run(process.execPath, [CLI, 'node', 'add', KNOWN, 'known0', '--config', config], { timeoutMs: 60_000 });
  log = path.join(dir, 'server.log');
  server = spawnIn(lab.server, process.execPath, [CLI, 'serve', '--config', config], { log });
  await waitFor('pxeherd serve to listen on 67 and the admin port', 30_000, async () => {
    if (server.exitCode !== null) throw new Error(`pxeherd serve exited: ${fs.readFileSync(log, 'utf8')}`);
    const ss = (await nsExec(lab.server, 'ss', ['-Hlntup']).catch(() => ({ stdout: '' }))).stdout;
    return /:67 /.test(ss) && /:18281 /.test(ss);
  });
  token = fs.readFileSync(path.join(dir, 'var', 'admin.token'), 'utf8').trim();
});

after(async () => {
  if (skip) return;
  server?.kill('SIGTERM');
  await new Promise((r) => (server?.exitCode !== null ? r(undefined) : server.once('exit', r)));
  await lab?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function admin(route: string): Promise<{ status: number; body: string }> {
  const { stdout } = await nsExec(lab.server, 'curl', ['-s', '-m', '20', '-w', '\n%{http_code}', '-H', `Authorization: Bearer ${token}`, `${ADMIN}${route}`], 30_000);
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}

test('while perfdhcp floods it with 10 000 new clients a second, serve answers a known node and its admin API, and counts what it sheds', { skip, timeout: 180_000 }, async () => {
  let flooding = true;
  const flood = nsExec(lab.client, 'perfdhcp', ['-4', '-l', 'eth0', '-r', '10000', '-R', '1000000', '-p', '20', '10.79.0.1'], 60_000)
    .catch((e: { stdout?: string }) => ({ stdout: String(e.stdout ?? ''), stderr: '' }))
    .finally(() => (flooding = false));
  // Until the server is behind: its queue holds datagrams, or it has shed some.
  await waitFor('the DHCP queue to fill', 10_000, async () => {
    const m = await admin('/metrics');
    return /^pxeherd_dhcp_queue_length [1-9]/m.test(m.body) || /^pxeherd_dhcp_shed_total\{[^}]*\} [1-9]/m.test(m.body);
  }, 100);

  // Past saturation datagrams are lost at random (the kernel's buffer overflows, the server sheds
  // what aged): a known node's REQUEST can be among them. udhcpc -n gives up after 3 unanswered
  // REQUESTs where a netbooting client starts over; so does this one, up to 4 runs, and the
  // lease must come while the flood still runs.
  const script = writeEnvScript(dir);
  const failedRuns: string[] = [];
  let env: ReturnType<typeof eventEnv> = undefined;
  let boundDuringFlood = false;
  for (let i = 0; i < 4 && !env; i++) {
    const out = await nsExec(lab.client, 'busybox', ['udhcpc', '-f', '-q', '-n', '-t', '8', '-T', '1', '-i', 'eth0', '-s', script], 60_000).then(
      (r) => r.stdout,
      (e: Error) => {
        failedRuns.push(e.message.split('\n').slice(-3).join(' / '));
        return '';
      },
    );
    env = eventEnv(out, 'bound');
    boundDuringFlood = !!env && flooding;
  }
  assert.ok(env?.ip?.startsWith('10.79.'), `the known node got an address during the flood (runs that failed: ${failedRuns.join('; ') || 'none'}): ${JSON.stringify(env)}`);
  assert.ok(boundDuringFlood, `the known node's lease came while perfdhcp was still flooding (udhcpc runs that failed first: ${failedRuns.length})`);

  const node = await admin('/api/v1/nodes/known0');
  assert.equal(node.status, 200, node.body);
  assert.equal(JSON.parse(node.body).mac, KNOWN);

  const out = await flood;
  assert.match(out.stdout, /REQUEST-ACK/, 'perfdhcp ran to its end');
  const metrics = (await admin('/metrics')).body;
  const shed = [...metrics.matchAll(/^pxeherd_dhcp_shed_total\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
  assert.ok(shed > 0, 'past saturation stale datagrams were shed and counted');
  assert.equal(server.exitCode, null, 'server still running');
});
