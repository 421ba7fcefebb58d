/**
 * Reliability (4): a machine presenting another node's MAC without that node's token gets
 * nothing — over HTTP /provision and over the provisiond TCP protocol, for `init`, `ready`
 * and any other state. "Nothing" is checked where it matters: a nodescript that touches a
 * marker file on the master for every (node, state) it runs for. The legitimate node, with
 * its own token from its own address, does get its scripts (so the marker check can fail).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pxeherdCli, registerSyntheticVnfs, reliabilityFixture, runProbes, stormUnavailable, writeStormConfig } from '../../bench/storm-lab.js';
import { parseIpxeScript } from '../../bench/storm-clients.js';
import type { Probe } from '../../bench/storm-probe.js';

const why = stormUnavailable();

const VICTIM = { mac: '02:85:00:00:00:0a', hy: '02-85-00-00-00-0a', name: 'victim', ip: '10.85.4.10' };
const OTHER = { mac: '02:85:00:00:00:0b', hy: '02-85-00-00-00-0b', name: 'other', ip: '10.85.4.20' };

const rel = reliabilityFixture({ why, dirPrefix: 'phrel-spoof-', poolSize: 40 });
before(rel.setUp);
after(rel.tearDown);

test("another node's MAC without its token gets a refusal over HTTP and provisiond, and no nodescript runs", { skip: why, timeout: 120_000 }, async () => {
  const { lab, dir } = rel;
  const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: 4096, initrdBytes: 4096 });
  registerSyntheticVnfs(dir, config, 4096, 4096);
  for (const n of [VICTIM, OTHER]) assert.equal(pxeherdCli(['node', 'add', n.mac, n.name, '--ip', n.ip], config).code, 0);
  const markers = path.join(dir, 'markers');
  fs.mkdirSync(markers);
  // A nodescript for every state used below: it leaves <node>-<state> behind when it runs.
  for (const state of ['init', 'ready', 'custom']) {
    const f = path.join(statedir, 'nodescripts', state, 'all', '05-marker');
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, `#!/bin/sh\ntouch "${markers}/$NODENAME-$STATE"\necho "echo ran"\n`, { mode: 0o755 });
  }
  await rel.serve(config, path.join(dir, 'pxeherd.log'));
  const S = lab.serverIp;

  // The other node boots legitimately: its token comes in its iPXE script.
  const [otherScript, victimScript] = await runProbes(lab, [
    { kind: 'http', host: S, port: 8080, path: `/boot/${OTHER.hy}.ipxe`, local: OTHER.ip },
    { kind: 'http', host: S, port: 8080, path: `/boot/${VICTIM.hy}.ipxe`, local: OTHER.ip },
  ]);
  const otherToken = parseIpxeScript(otherScript!.body)?.token;
  const victimToken = parseIpxeScript(victimScript!.body)?.token;
  assert.ok(otherToken && victimToken, 'scripts carry pxeherd.token=');

  const h = (p: string, local = OTHER.ip): Probe => ({ kind: 'http', host: S, port: 8080, path: p, local });
  const t = (line: string, local = OTHER.ip): Probe => ({ kind: 'tcp', host: S, port: 987, line, local });
  const attacks: Probe[] = [];
  for (const state of ['init', 'ready', 'custom']) {
    for (const macForm of [VICTIM.hy, VICTIM.mac, VICTIM.mac.toUpperCase(), VICTIM.hy.replace(/-/g, ''), `01-${VICTIM.hy}`]) {
      attacks.push(h(`/provision/${state}?mac=${encodeURIComponent(macForm)}`));
      attacks.push(h(`/provision/${state}?mac=${encodeURIComponent(macForm)}&token=`));
      attacks.push(h(`/provision/${state}?mac=${encodeURIComponent(macForm)}&token=${otherToken}`));
      attacks.push(h(`/provision/${state}?nodeid=${encodeURIComponent(macForm)}&token=AAAA.BBBB`));
    }
    attacks.push(h(`/provision/${state}?mac=${VICTIM.hy}&token=${otherToken}&token=${victimToken}`));
    attacks.push(h(`/provision/${state}?mac=${VICTIM.hy}&mac=${OTHER.hy}&token=${otherToken}`));
    // The victim's MAC from the victim's own address, but without (or with a wrong) token.
    attacks.push(h(`/provision/${state}?mac=${VICTIM.hy}`, VICTIM.ip));
    attacks.push(h(`/provision/${state}?mac=${VICTIM.hy}&token=${otherToken}`, VICTIM.ip));
    // The victim's real token (anyone can fetch /boot/<mac>.ipxe) from the wrong address.
    attacks.push(h(`/provision/${state}?mac=${VICTIM.hy}&token=${victimToken}`));
    for (const line of [
      `${state} nodeid=${VICTIM.mac}\n`,
      `${state} nodeid=01:${VICTIM.mac}\n`,
      `${state} nodeid=${VICTIM.mac.toUpperCase()}\n`,
      `${state} nodeid=${VICTIM.mac} token=${otherToken}\n`,
      `${state} nodeid=${VICTIM.mac} token=AAAA.BBBB\n`,
      `${state} nodename=${VICTIM.name}\n`,
      `${state} nodeid=${VICTIM.mac} token=${victimToken}\n`,
    ]) {
      attacks.push(t(line));
      if (!line.includes(victimToken)) attacks.push(t(line, VICTIM.ip));
    }
  }
  const results = await runProbes(lab, attacks);
  for (const r of results) {
    const what = r.probe.kind === 'http' ? `GET ${r.probe.path} from ${r.probe.local}` : r.probe.kind === 'tcp' ? `provisiond "${r.probe.line.trim()}" from ${r.probe.local}` : '';
    if (r.probe.kind === 'http') assert.ok(r.status === 403 || r.status === 400, `${what}: refused (got ${r.status}: ${r.body.slice(0, 200)})`);
    assert.doesNotMatch(r.body, /NODESCRIPT START|echo ran/, `${what}: no nodescript output`);
    // provisiond refuses with shell that prints the reason and exits non-zero.
    if (r.probe.kind === 'tcp') assert.match(r.body, /^echo '?pxeherd: [^\n]*\nexit 1\n/m, `${what}: a refusal is sent (${r.body.slice(0, 200)})`);
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(fs.readdirSync(markers).filter((f) => f.startsWith(`${VICTIM.name}-`)), [], `no nodescript ran for ${VICTIM.name} (${results.length} attempts)`);

  // Control: the victim itself, with its token, from its address, does get its scripts.
  const [ok] = await runProbes(lab, [h(`/provision/init?mac=${VICTIM.hy}&token=${victimToken}`, VICTIM.ip)]);
  assert.equal(ok!.status, 200);
  assert.match(ok!.body, /echo ran/);
  assert.ok(fs.existsSync(path.join(markers, `${VICTIM.name}-init`)), 'the marker appears when the script does run');
  process.stderr.write(`# reliability spoof: ${results.length} attempts with ${VICTIM.name}'s MAC refused, no script ran\n`);
});
