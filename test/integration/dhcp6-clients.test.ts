/**
 * IPv6 netboot with real clients in an IPv6-only namespace lab (br0 holds fd00:76::1/64 and no
 * IPv4 address): `pxeherd serve` with dhcp6 full; ISC `dhclient -6` gets an address and the
 * boot-file URL (RFC 5970 option 59) and keeps them in its lease file; then the same client
 * fetches that URL over TFTP (curl, tftp-hpa), the loader over HTTP (curl -6), and its init
 * nodescripts over the Perceus provisiond protocol (busybox nc) from its DHCPv6 address, which
 * is how provisiond finds the node. A Release frees the lease. The master's records tell it all.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createLab, labUnavailable, run, sh, tmpDir, waitFor, writeDhclient6Script, type Lab } from '../lab/lab.js';
import { CLI } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import type { ChildProcess } from 'node:child_process';

const skip = labUnavailable(['dhclient', 'curl', 'tftp', 'busybox']);
const MAC = '02:76:00:00:00:01';
const PREFIX = 'fd00:76::';
let lab: Lab;
let dir: string;
let statedir: string;
let server: ChildProcess;
let serverLog: string;

before(async () => {
  if (skip) return;
  dir = tmpDir('pxeherd-dhcp6-');
  statedir = path.join(dir, 'var');
  lab = createLab({ name: 'phv6c', ipv6: { prefix: PREFIX }, ipv4: false, clientMac: MAC });
  const config = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(
    config,
    `statedir: ${statedir}
interface: br0
address: 10.76.0.1
dhcp: { mode: off }
dhcp6: { mode: full, prefix: '${PREFIX}/64', range: ['${PREFIX}1000', '${PREFIX}10ff'], dns: ['${PREFIX}1'], lease_seconds: 600, slaac: false }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 987 }
admin: { port: 0 }
security: { node_tokens: false }
log: { level: debug }
`,
  );
  const script = path.join(statedir, 'nodescripts', 'init', 'all', '50-v6');
  fs.mkdirSync(path.dirname(script), { recursive: true });
  fs.writeFileSync(script, '#!/bin/sh\necho "echo v6-node $NODENAME"\n', { mode: 0o755 });
  serverLog = path.join(dir, 'server.log');
  server = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log: serverLog });
  await waitFor('pxeherd to listen (dhcp6, tftp, http, provisiond)', 30_000, () => {
    const t = fs.existsSync(serverLog) ? fs.readFileSync(serverLog, 'utf8') : '';
    if (server.exitCode !== null) throw new Error(`pxeherd serve exited: ${t}`);
    return /dhcp6 listening/.test(t) && /tftp listening/.test(t) && /http listening/.test(t) && /provisiond listening/.test(t);
  });
  // dhclient sends from its link-local address: wait until duplicate address detection is done.
  await waitFor('the client link-local address', 10_000, () => {
    const a = sh('ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'], { ns: lab.clientNs });
    return /inet6 fe80/.test(a) && !/tentative/.test(a);
  });
});

after(async () => {
  if (skip) return;
  lab?.destroy();
  if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(dir, { recursive: true, force: true });
});

function withStore<T>(fn: (s: Store) => T): T {
  const s = Store.open(statedir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

test('dhclient -6 gets an address from dhcp6.range and the boot-file URL; TFTP, HTTP and provisiond answer over IPv6', { skip, timeout: 120_000 }, async () => {
  const conf = path.join(dir, 'dhclient6.conf');
  // A UEFI x64 PXE client as far as DHCPv6 goes: architecture 7 (option 61), asking for 59.
  fs.writeFileSync(
    conf,
    `option dhcp6.bootfile-url code 59 = string;
option dhcp6.client-arch-type code 61 = unsigned integer 16;
send dhcp6.client-arch-type 7;
also request dhcp6.bootfile-url;
`,
  );
  const leases = path.join(dir, 'dhclient6.leases');
  const pid = path.join(dir, 'dhclient6.pid');
  const r = await run('dhclient', ['-6', '-1', '-v', '-cf', conf, '-sf', writeDhclient6Script(dir), '-lf', leases, '-pf', pid, 'eth0'], { ns: lab.clientNs, timeoutMs: 60_000 });
  const lease = fs.readFileSync(leases, 'utf8');
  const addr = /iaaddr ([0-9a-f:]+)/.exec(lease)?.[1];
  assert.ok(addr, `an address in the lease file:\n${lease}\n${r.stderr}`);
  assert.ok(addr.startsWith('fd00:76::10'), `from dhcp6.range (${addr})`);
  assert.match(lease, /option dhcp6\.bootfile-url "tftp:\/\/\[fd00:76::1\]\/ipxe\.efi"/, 'the boot-file URL for a UEFI x64 PXE client');
  assert.match(lease, /option dhcp6\.name-servers fd00:76::1/);
  assert.match(sh('ip', ['-6', 'addr', 'show', 'dev', 'eth0'], { ns: lab.clientNs }), new RegExp(`inet6 ${addr}/`), 'dhclient-script configured it');
  // Until duplicate address detection passes, the new address is not a source: the clients
  // below would speak from their link-local address first and switch mid-transfer.
  await waitFor('the DHCPv6 address to leave DAD', 10_000, () => !/tentative/.test(sh('ip', ['-6', 'addr', 'show', 'dev', 'eth0'], { ns: lab.clientNs })));

  // The URL, fetched over IPv6 by two TFTP clients and by HTTP.
  const shipped = fs.readFileSync(path.join(statedir, 'tftproot', 'ipxe.efi'));
  const viaCurl = path.join(dir, 'ipxe-curl.efi');
  await run('curl', ['-sSf', '--tftp-blksize', '1428', '-o', viaCurl, 'tftp://[fd00:76::1]/ipxe.efi'], { ns: lab.clientNs, timeoutMs: 30_000 });
  assert.ok(fs.readFileSync(viaCurl).equals(shipped), 'curl tftp:// over IPv6');
  const viaHpa = path.join(dir, 'ipxe-hpa.efi');
  const hpa = await run('tftp', ['-v', '-6', 'fd00:76::1', '-m', 'binary', '-c', 'get', 'ipxe.efi', viaHpa], { ns: lab.clientNs, timeoutMs: 30_000 });
  assert.ok(fs.readFileSync(viaHpa).equals(shipped), `tftp-hpa -6 (it exits 0 on errors too): ${hpa.stdout}`);
  const viaHttp = path.join(dir, 'ipxe-http.efi');
  await run('curl', ['-6', '-sSf', '-o', viaHttp, 'http://[fd00:76::1]:8080/tftp/ipxe.efi'], { ns: lab.clientNs, timeoutMs: 30_000 });
  assert.ok(fs.readFileSync(viaHttp).equals(shipped), 'curl -6 over HTTP');
  // provisiond finds the node by its DHCPv6 address (no nodeid= in the request).
  const pd = await run('sh', ['-c', `printf 'init\\n' | busybox nc ${addr} 987 2>&1; printf 'init\\n' | busybox nc fd00:76::1 987`], { ns: lab.clientNs, timeoutMs: 20_000 });
  assert.match(pd.stdout, /# PERCEUSD START\n# NODESCRIPT START\n[\s\S]*echo v6-node n0000\n[\s\S]*# PROVISIOND END/);

  // The master's records: the node registered by its MAC (from the DUID), its lease, its timeline.
  const since = 0;
  await waitFor('events on disk', 10_000, () => withStore((s) => s.events.query({ mac: MAC, since, kind: 'provision.end', limit: 10 }).length > 0));
  withStore((s) => {
    const node = s.nodes.byMac(MAC);
    assert.equal(node?.name, 'n0000', 'auto-registered');
    const l = s.leases6.byMac(MAC);
    assert.equal(l?.ip, addr);
    assert.equal(l?.state, 'bound');
    const kinds = s.events.query({ mac: MAC, since, order: 'asc', limit: 1000 }).map((e) => e.kind);
    for (const k of ['node.register', 'dhcp6.solicit', 'dhcp6.advertise', 'dhcp6.request', 'dhcp6.reply', 'tftp.done', 'http.file', 'provision.start', 'provision.end']) {
      assert.ok(kinds.includes(k), `timeline has ${k} (has ${[...new Set(kinds)].join(' ')})`);
    }
  });

  // Release: the lease is kept as released (the client gets the same address when it returns).
  await run('dhclient', ['-6', '-r', '-cf', conf, '-sf', writeDhclient6Script(dir), '-lf', leases, '-pf', pid, 'eth0'], { ns: lab.clientNs, timeoutMs: 30_000 });
  await waitFor('the release on disk', 10_000, () => withStore((s) => s.leases6.byMac(MAC)?.state === 'released'));
});

test('dhclient -6 -S (stateless, Information-request) gets the configuration and the boot-file URL, no address', { skip, timeout: 60_000 }, async () => {
  const conf = path.join(dir, 'dhclient6.conf');
  // A stateless client writes no lease: its script gets the answer in its environment.
  const envFile = path.join(dir, 'inform.env');
  const script = path.join(dir, 'inform.sh');
  fs.writeFileSync(script, `#!/bin/sh\necho "reason=$reason" >> ${envFile}\nenv | grep '^new_' >> ${envFile}\nexit 0\n`, { mode: 0o755 });
  const dh = await run('dhclient', ['-6', '-S', '-1', '-v', '-cf', conf, '-sf', script, '-lf', path.join(dir, 'dhclient6-info.leases'), '-pf', path.join(dir, 'dhclient6-info.pid'), 'eth0'], { ns: lab.clientNs, timeoutMs: 45_000 });
  const lease = await waitFor(`the answer in the script's environment (dhclient said: ${dh.stderr})`, 20_000, () => fs.existsSync(envFile) && /new_dhcp6_name_servers/.test(fs.readFileSync(envFile, 'utf8')) && fs.readFileSync(envFile, 'utf8'));
  assert.match(lease, /new_dhcp6_name_servers=fd00:76::1/);
  assert.match(lease, /new_dhcp6_bootfile_url=tftp:\/\/\[fd00:76::1\]\/ipxe\.efi/);
  assert.doesNotMatch(lease, /new_ip6_address/, 'an Information-request binds no address');
  await waitFor('the inform event', 10_000, () =>
    withStore((s) => s.events.query({ mac: MAC, kind: 'dhcp6.reply', limit: 100 }).some((e) => (e.detail as { to?: string }).to === 'information-request')),
  );
});
