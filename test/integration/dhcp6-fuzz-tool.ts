/**
 * DHCPv6 fuzzer for the namespace tests (run with `ip netns exec NS node --import tsx`):
 *   {to:{address,port}, count, seed}: sends `count` datagrams and prints SENT <n>.
 * Kinds, in turn: random bytes; a valid header with random options; real-shaped messages
 * (Solicit/Request/Renew/Rebind/Release/Decline/Confirm/Information-request, relayed ones)
 * with random clients, flipped bytes, truncations, and TLV-aware mutations (option lengths
 * and nested IA options that lie about their size).
 */
import dgram from 'node:dgram';
import { encode, type Dhcp6Option } from '../../src/dhcp6/codec.js';
import { enc6, iaAddrOption, iaNaOption, Opt6 } from '../../src/dhcp6/options.js';

const arg = JSON.parse(process.argv[2] ?? '{}');
let x = arg.seed >>> 0 || 1;
const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) & 0xffff;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rnd() & 255));

function shaped(): Buffer {
  const type = [1, 3, 4, 5, 6, 8, 9, 11, 12, 2, 7][rnd() % 11]!;
  const mac = Buffer.from([0x52, 0x54, rnd() & 255, rnd() & 255, rnd() & 255, rnd() & 255]);
  const duidKind = rnd() % 4;
  const duid =
    duidKind === 0 ? Buffer.concat([Buffer.from([0, 3, 0, 1]), mac]) : duidKind === 1 ? Buffer.concat([Buffer.from([0, 1, 0, 1]), bytes(4), mac]) : duidKind === 2 ? Buffer.concat([Buffer.from([0, 4]), bytes(16)]) : bytes(2 + (rnd() % 20));
  const opts: Dhcp6Option[] = [{ code: Opt6.ClientId, data: duid }];
  if (rnd() % 3 === 0) opts.push({ code: Opt6.ServerId, data: Buffer.concat([Buffer.from([0, 3, 0, 1]), bytes(6)]) });
  const ias = rnd() % 3;
  for (let i = 0; i < ias; i++) opts.push(iaNaOption(rnd(), rnd(), rnd(), rnd() % 2 ? [iaAddrOption(`fd00:75::${(rnd() % 0x3000).toString(16)}`, rnd(), rnd())] : []));
  if (rnd() % 2) opts.push({ code: Opt6.Oro, data: Buffer.concat([23, 24, 59, 60, rnd()].map(enc6.u16)) });
  if (rnd() % 2) opts.push({ code: Opt6.ClientArchType, data: enc6.u16([0, 7, 9, 11, 16, rnd()][rnd() % 6]!) });
  if (rnd() % 2) opts.push({ code: Opt6.VendorClass, data: Buffer.concat([enc6.u32(343), enc6.opaqueList([['PXEClient:Arch:00007:UNDI:003016', 'HTTPClient:Arch:00016:UNDI:003016', 'x'][rnd() % 3]!])]) });
  if (rnd() % 3 === 0) opts.push({ code: Opt6.UserClass, data: rnd() % 2 ? enc6.opaqueList(['iPXE']) : bytes(rnd() % 12) });
  if (rnd() % 4 === 0) opts.push({ code: Opt6.RapidCommit, data: Buffer.alloc(0) });
  if (rnd() % 8 === 0) opts.push({ code: rnd(), data: bytes(rnd() % 40) });
  if (type === 12) {
    const inner = encode({ type: 1, xid: rnd(), options: opts });
    return encode({ type: 12, hopCount: rnd() & 255, linkAddress: bytes(16), peerAddress: bytes(16), options: [{ code: Opt6.RelayMsg, data: inner }] });
  }
  return encode({ type, xid: (rnd() << 8) | (rnd() & 255), options: opts });
}

function datagram(i: number): Buffer {
  switch (i % 6) {
    case 0:
      return bytes(rnd() % 600);
    case 1: {
      const b = bytes(4 + (rnd() % 300));
      b[0] = 1 + (rnd() % 13);
      return b;
    }
    case 2:
      return shaped();
    case 3: {
      const b = shaped();
      for (let k = rnd() % 6; k >= 0; k--) b[rnd() % b.length] = rnd() & 255;
      return b;
    }
    case 4: {
      const b = shaped();
      return b.subarray(0, rnd() % b.length);
    }
    default: {
      // Lie about an option length somewhere in the TLV chain.
      const b = Buffer.from(shaped());
      const off = 6 + 2 * (rnd() % Math.max(1, Math.floor((b.length - 8) / 2)));
      if (off + 2 <= b.length) b.writeUInt16BE(rnd(), off);
      return b;
    }
  }
}

async function main() {
  const s = dgram.createSocket({ type: 'udp6' });
  await new Promise<void>((r) => s.bind({ port: 0 }, () => r()));
  let sent = 0;
  let inflight = 0;
  for (let i = 0; i < arg.count; i++) {
    inflight++;
    s.send(datagram(i), arg.to.port, arg.to.address, () => {
      inflight--;
      sent++;
    });
    if (inflight > 64) await new Promise((r) => setImmediate(r));
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 5));
  }
  while (inflight > 0) await new Promise((r) => setImmediate(r));
  process.stdout.write(`SENT ${sent}\n`);
  s.close();
}

main().catch((e) => {
  process.stdout.write(`ERROR ${(e as Error).message}\n`);
  process.exit(1);
});
