/**
 * Real DHCP clients (busybox udhcpc, ISC dhclient) against the server running inside a network
 * namespace. Needs root, iproute2, busybox and isc-dhcp-client; skips with a reason otherwise.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLab, eventEnv, labUnavailable, nsExec, ROOT, startServer, writeEnvScript, type Lab, type RunningServer } from './dhcp-lab.js';
import { emptyPacket, encode, decode } from '../../src/dhcp/codec.js';
import { enc, getIp, messageType, MessageType, Opt } from '../../src/dhcp/options.js';
import { macToBuffer } from '../../src/nodes/mac.js';

const skip = labUnavailable(['busybox', 'dhclient']);
const CMAC = '02:79:00:00:01:01';
let lab: Lab;
let dir: string;
let envScript: string;
let dhclientScript: string;

const FULL = {
  serverAddress: '10.79.0.1',
  httpPort: 8080,
  dhcp: { mode: 'full', range: ['10.79.0.100', '10.79.0.180'], router: '10.79.0.1', dns: ['10.79.0.1'], subnets: [{ network: '10.80.0.0/24', range: ['10.80.0.50', '10.80.0.60'], router: '10.80.0.1' }] },
};

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-'));
  envScript = writeEnvScript(dir);
  // dhclient must really configure the address, or its unicast RELEASE cannot leave.
  dhclientScript = path.join(dir, 'dhclient.sh');
  writeFileSync(
    dhclientScript,
    '#!/bin/sh\necho "EVENT $reason"\nenv | sort | sed "s/^/ENV /"\ncase "$reason" in BOUND|RENEW|REBIND|REBOOT) ip addr add "$new_ip_address/24" dev "$interface" 2>/dev/null;; RELEASE|EXPIRE|STOP) ip addr flush dev "$interface";; esac\nexit 0\n',
  );
  chmodSync(dhclientScript, 0o755);
  lab = await createLab('cl', { clientMac: CMAC, relay: true });
});

after(async () => {
  if (skip) return;
  await lab?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function udhcpc(extra: string[] = []) {
  return nsExec(lab.client, 'busybox', ['udhcpc', '-f', '-q', '-n', '-t', '4', '-T', '1', '-i', 'eth0', '-s', envScript, ...extra], 30_000).then(
    (r) => r.stdout,
    (e) => String(e.stdout ?? '') + String(e.stderr ?? e.message),
  );
}

async function withServer<T>(config: object, fn: (s: RunningServer) => Promise<T>): Promise<T> {
  const s = await startServer(lab.server, config);
  try {
    return await fn(s);
  } finally {
    await s.stop();
  }
}

test('busybox udhcpc without a vendor class gets a pool address, the options, and no boot file', { skip }, async () => {
  await withServer(FULL, async () => {
    const env = eventEnv(await udhcpc(), 'bound');
    assert.ok(env, 'udhcpc bound');
    assert.match(env.ip!, /^10\.79\.0\.(1[0-7]\d|180)$/);
    assert.equal(env.serverid, '10.79.0.1');
    assert.equal(env.router, '10.79.0.1');
    assert.equal(env.subnet, '255.255.255.0');
    assert.equal(env.lease, '3600');
    assert.equal(env.boot_file, undefined);
  });
});

test('udhcpc as a BIOS PXE client gets undionly.kpxe from next-server 10.79.0.1', { skip }, async () => {
  await withServer(FULL, async () => {
    const env = eventEnv(await udhcpc(['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000']), 'bound')!;
    assert.equal(env.boot_file, 'undionly.kpxe');
    assert.equal(env.siaddr, '10.79.0.1');
  });
});

test('udhcpc as a UEFI x64 PXE client (arch 7) gets ipxe.efi', { skip }, async () => {
  await withServer(FULL, async () => {
    const env = eventEnv(await udhcpc(['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007']), 'bound')!;
    assert.equal(env.boot_file, 'ipxe.efi');
  });
});

test('udhcpc with user class iPXE gets its boot-script URL and option 175 (no-pxedhcp)', { skip }, async () => {
  await withServer(FULL, async () => {
    const env = eventEnv(await udhcpc(['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007', '-x', '0x4d:69505845']), 'bound')!;
    assert.equal(env.boot_file, `http://10.79.0.1:8080/boot/${CMAC}.ipxe`);
    assert.equal(env.opt175, 'b00101');
  });
});

test('ISC dhclient gets a lease; dhclient -r releases it and the server records the release', { skip }, async () => {
  await withServer(FULL, async (s) => {
    const args = ['-v', '-sf', dhclientScript, '-lf', path.join(dir, 'dhclient.leases'), '-pf', path.join(dir, 'dhclient.pid'), 'eth0'];
    const got = await nsExec(lab.client, 'dhclient', ['-1', ...args], 30_000);
    const env = eventEnv(got.stdout, 'BOUND');
    assert.ok(env, `dhclient bound: ${got.stderr}`);
    assert.match(env.new_ip_address!, /^10\.79\.0\.\d+$/);
    assert.equal(env.new_dhcp_server_identifier, '10.79.0.1');
    await nsExec(lab.client, 'dhclient', ['-r', ...args], 30_000);
    const { events } = await s.stop();
    assert.ok(events.some((e) => e.kind === 'dhcp.release' && e.detail?.ip === env.new_ip_address), 'release event');
  });
  await nsExec(lab.client, 'ip', ['addr', 'flush', 'dev', 'eth0']);
});

const SITE_OPTIONS = {
  'ntp-servers': ['10.79.0.1', '10.79.0.2'],
  'interface-mtu': 9000,
  'domain-search': ['cluster.example.org', 'example.org'],
  'classless-static-routes': ['10.2.0.0/16 via 10.79.0.254', '0.0.0.0/0 via 10.79.0.1'],
};

test('udhcpc gets the site options it asks for (-O), and only those', { skip }, async () => {
  await withServer({ ...FULL, dhcp: { ...FULL.dhcp, options: SITE_OPTIONS } }, async () => {
    const env = eventEnv(await udhcpc(['-O', 'ntpsrv', '-O', 'mtu', '-O', 'search', '-O', 'staticroutes']), 'bound')!;
    assert.ok(env, 'udhcpc bound');
    assert.equal(env.ntpsrv, '10.79.0.1 10.79.0.2');
    assert.equal(env.mtu, '9000');
    assert.equal(env.search, 'cluster.example.org example.org');
    assert.equal(env.staticroutes, '10.2.0.0/16 10.79.0.254 0.0.0.0/0 10.79.0.1');
    // -o: none of udhcpc's default requests (its defaults include ntpsrv), then only mtu.
    const some = eventEnv(await udhcpc(['-o', '-O', 'mtu']), 'bound')!;
    assert.equal(some.mtu, '9000');
    assert.equal(some.ntpsrv, undefined, 'not requested, not sent');
    assert.equal(some.search, undefined);
    assert.equal(some.router, '10.79.0.1', 'what pxeherd always sends still comes');
  });
});

test('ISC dhclient gets the site options its request list names', { skip }, async () => {
  const conf = path.join(dir, 'dhclient-site.conf');
  writeFileSync(
    conf,
    'option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n' +
      'request subnet-mask, routers, domain-name-servers, ntp-servers, interface-mtu, domain-search, rfc3442-classless-static-routes;\n',
  );
  await withServer({ ...FULL, dhcp: { ...FULL.dhcp, options: SITE_OPTIONS } }, async () => {
    const args = ['-v', '-cf', conf, '-sf', dhclientScript, '-lf', path.join(dir, 'dhclient-site.leases'), '-pf', path.join(dir, 'dhclient-site.pid'), 'eth0'];
    const got = await nsExec(lab.client, 'dhclient', ['-1', ...args], 30_000);
    const env = eventEnv(got.stdout, 'BOUND');
    assert.ok(env, `dhclient bound: ${got.stderr}`);
    assert.equal(env.new_ntp_servers, '10.79.0.1 10.79.0.2');
    assert.equal(env.new_interface_mtu, '9000');
    assert.match(env.new_domain_search!, /cluster\.example\.org\.?.*example\.org\.?/);
    assert.equal(env.new_rfc3442_classless_static_routes, '16 10 2 10 79 0 254 0 10 79 0 1');
    await nsExec(lab.client, 'dhclient', ['-r', ...args], 30_000);
  });
  await nsExec(lab.client, 'ip', ['addr', 'flush', 'dev', 'eth0']);
});

test('leases survive a server restart: a returning client gets its address back, others do not get it', { skip }, async () => {
  const statedir = mkdtempSync(path.join(dir, 'state-'));
  const cfg = { ...FULL, statedir };
  const first = await withServer(cfg, async () => eventEnv(await udhcpc(), 'bound')!.ip);
  assert.ok(first);
  // Another client while the first one is away, after a restart: must not get the first one's address.
  await nsExec(lab.client, 'ip', ['link', 'set', 'eth0', 'address', '02:79:00:00:01:02']);
  const other = await withServer(cfg, async () => eventEnv(await udhcpc(), 'bound')!.ip);
  assert.notEqual(other, first);
  await nsExec(lab.client, 'ip', ['link', 'set', 'eth0', 'address', CMAC]);
  const again = await withServer(cfg, async () => eventEnv(await udhcpc(), 'bound')!.ip);
  assert.equal(again, first);
});

test('a relayed DISCOVER (giaddr 10.80.0.1) is answered to the relay on port 67 from the relay subnet pool', { skip }, async () => {
  await withServer(FULL, async () => {
    const p = emptyPacket(1);
    p.xid = 0xabcdef;
    p.hops = 1;
    p.giaddr = '10.80.0.1';
    macToBuffer('02:79:00:00:01:03').copy(p.chaddr);
    p.options.set(Opt.MessageType, enc.u8(MessageType.Discover));
    const arg = { mode: 'send', local: '10.80.0.1', port: 67, to: { address: '10.79.0.1', port: 67 }, packets: [encode(p).toString('hex')], waitMs: 1500 };
    const { stdout } = await nsExec(lab.client, process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/integration/dhcp-client-tool.ts'), JSON.stringify(arg)]);
    const replies = JSON.parse(/^REPLIES (.*)$/m.exec(stdout)![1]!) as Array<{ from: string; port: number; hex: string }>;
    assert.equal(replies.length, 1, stdout);
    assert.equal(replies[0]!.port, 67, 'sent from the server port');
    const r = decode(Buffer.from(replies[0]!.hex, 'hex'));
    assert.ok(r.ok);
    if (!r.ok) return;
    assert.equal(messageType(r.packet.options), MessageType.Offer);
    assert.equal(r.packet.xid, 0xabcdef);
    assert.equal(r.packet.yiaddr, '10.80.0.50');
    assert.equal(getIp(r.packet.options, Opt.Router), '10.80.0.1');
  });
});

test('a port that cannot be bound (in use, or no privilege) is reported as one clear line by start()', { skip }, async () => {
  // Port 67 held by another socket in the namespace.
  const holder = await startServer(lab.server, FULL);
  try {
    await assert.rejects(startServer(lab.server, FULL), /ERROR DHCP: cannot listen on UDP port 67: already in use/);
  } finally {
    await holder.stop();
  }
  // Unprivileged user: permission denied, said as such.
  const r = await nsExec(lab.server, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', path.join(ROOT, 'test/integration/dhcp-runner.ts'), JSON.stringify(FULL)]).catch((e) => e);
  assert.match(String(r.stdout), /^ERROR DHCP: cannot listen on UDP port 67: permission denied \(run as root or grant CAP_NET_BIND_SERVICE/m);
});
