/**
 * ProxyDHCP beside a site DHCP server: dnsmasq (in its own namespace on the same bridge) hands
 * out addresses with no boot options; pxeherd in proxy mode supplies the boot file.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLab, eventEnv, labUnavailable, nsExec, ROOT, startServer, writeEnvScript, type Lab, type RunningServer } from './dhcp-lab.js';
import { decode, emptyPacket, encode, type DhcpPacket } from '../../src/dhcp/codec.js';
import { decodeSubOptions, enc, getString, messageType, MessageType, Opt } from '../../src/dhcp/options.js';
import { macToBuffer } from '../../src/nodes/mac.js';

const skip = labUnavailable(['busybox', 'dnsmasq']);
const CMAC = '02:79:00:00:02:01';
let lab: Lab;
let dir: string;
let dnsmasq: ChildProcess;
let server: RunningServer;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-proxy-'));
  lab = await createLab('px', { site: true, clientMac: CMAC });
  dnsmasq = lab.spawnInNs('dnsmasq', [
    '--no-daemon', '--port=0', '--interface=eth0', '--bind-interfaces',
    '--dhcp-range=10.79.0.150,10.79.0.160,255.255.255.0,1h', `--dhcp-leasefile=${path.join(dir, 'dnsmasq.leases')}`,
    '--no-resolv', '--no-hosts', '--no-ping', '--dhcp-authoritative', `--pid-file=${path.join(dir, 'dnsmasq.pid')}`, '--log-dhcp', `--log-facility=${path.join(dir, 'dnsmasq.log')}`,
  ], { ns: lab.site });
  server = await startServer(lab.server, { serverAddress: '10.79.0.1', httpPort: 8080, dhcp: { mode: 'proxy' } });
  await new Promise((r) => setTimeout(r, 500)); // dnsmasq up
});

after(async () => {
  if (skip) return;
  await server?.stop();
  dnsmasq?.kill('SIGKILL');
  await lab?.cleanup();
  if (process.env.PHDHCP_KEEP) console.log(dir); else rmSync(dir, { recursive: true, force: true });
});

function pxePacket(type: MessageType, extra: Partial<DhcpPacket> = {}, opts: Record<number, Buffer> = {}): string {
  const p = emptyPacket(1);
  p.xid = 0x5eed0000 + type;
  p.flags = 0x8000;
  macToBuffer(CMAC).copy(p.chaddr);
  p.options.set(Opt.MessageType, enc.u8(type));
  p.options.set(Opt.VendorClass, enc.str('PXEClient:Arch:00000:UNDI:002001'));
  p.options.set(Opt.ClientArch, enc.u16(0));
  p.options.set(Opt.ClientGuid, Buffer.from('00' + 'ab'.repeat(16), 'hex'));
  for (const [k, v] of Object.entries(opts)) p.options.set(Number(k), v);
  return encode(Object.assign(p, extra)).toString('hex');
}

async function exchange(arg: object): Promise<Array<{ from: string; port: number; packet: DhcpPacket }>> {
  const { stdout } = await nsExec(lab.client, process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/integration/dhcp-client-tool.ts'), JSON.stringify(arg)]);
  const raw = JSON.parse(/^REPLIES (.*)$/m.exec(stdout)![1]!) as Array<{ from: string; port: number; hex: string }>;
  return raw.flatMap((r) => {
    const d = decode(Buffer.from(r.hex, 'hex'));
    return d.ok ? [{ from: r.from, port: r.port, packet: d.packet }] : [];
  });
}

test('a PXE client sees both offers: an address from dnsmasq, the boot file from pxeherd (ProxyDHCP)', { skip }, async () => {
  // The client namespace needs a source address to broadcast from; ciaddr stays 0 as in a real DISCOVER.
  await nsExec(lab.client, 'ip', ['addr', 'add', '10.79.0.99/24', 'dev', 'eth0']);
  try {
    const replies = await exchange({ mode: 'send', local: '10.79.0.99', port: 68, to: { address: '255.255.255.255', port: 67 }, packets: [pxePacket(MessageType.Discover)], waitMs: 2500 });
    const offers = replies.filter((r) => messageType(r.packet.options) === MessageType.Offer);
    const site = offers.find((r) => r.from === '10.79.0.2');
    const proxy = offers.find((r) => r.from === '10.79.0.1');
    assert.ok(site, 'dnsmasq offered');
    assert.ok(proxy, 'pxeherd answered as ProxyDHCP');
    assert.match(site.packet.yiaddr, /^10\.79\.0\.1[56]\d$/);
    assert.equal(site.packet.file, '', 'the site server gives no boot file');
    assert.equal(proxy.packet.yiaddr, '0.0.0.0', 'ProxyDHCP hands out no address');
    assert.equal(proxy.packet.siaddr, '10.79.0.1');
    assert.equal(proxy.packet.file, 'undionly.kpxe');
    assert.equal(getString(proxy.packet.options, Opt.VendorClass), 'PXEClient');
    assert.deepEqual(decodeSubOptions(proxy.packet.options.get(Opt.VendorSpecific))!.get(6), Buffer.from([8]));
    assert.deepEqual(proxy.packet.options.get(Opt.ClientGuid), Buffer.from('00' + 'ab'.repeat(16), 'hex'));

    // Then, with its address, the client asks the boot server on port 4011.
    const acks = await exchange({
      mode: 'send', local: '10.79.0.99', port: 68, to: { address: '10.79.0.1', port: 4011 },
      packets: [pxePacket(MessageType.Request, { ciaddr: '10.79.0.99', flags: 0 }, { [Opt.VendorSpecific]: Buffer.from([71, 4, 0x80, 0, 0, 0, 255]) })], waitMs: 1500,
    });
    assert.equal(acks.length, 1);
    assert.equal(acks[0]!.port, 4011, 'answered from the ProxyDHCP port');
    assert.equal(messageType(acks[0]!.packet.options), MessageType.Ack);
    assert.equal(acks[0]!.packet.file, 'undionly.kpxe');
    assert.deepEqual(decodeSubOptions(acks[0]!.packet.options.get(Opt.VendorSpecific))!.get(71), Buffer.from([0x80, 0, 0, 0]));
  } finally {
    await nsExec(lab.client, 'ip', ['addr', 'flush', 'dev', 'eth0']);
  }
});

test('in proxy mode a plain client (udhcpc, no PXE vendor class) gets its lease from dnsmasq and nothing from pxeherd', { skip }, async () => {
  const script = writeEnvScript(dir);
  const r = await nsExec(lab.client, 'busybox', ['udhcpc', '-f', '-q', '-n', '-t', '4', '-T', '1', '-i', 'eth0', '-s', script], 30_000);
  const env = eventEnv(r.stdout, 'bound')!;
  assert.equal(env.serverid, '10.79.0.2');
  assert.match(env.ip!, /^10\.79\.0\.1[56]\d$/);
  assert.equal(env.boot_file, undefined);
});
