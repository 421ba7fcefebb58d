/**
 * Fuzzed DHCP and TFTP datagrams at a running server. Runs inside the client namespace (the
 * reliability test and `bench/storm-reliability.ts` start it with `ip netns exec`):
 *
 *   node --import tsx bench/storm-fuzz.ts '{"server":"10.85.0.1","count":1000000,"seed":1}'
 *
 * Half the datagrams go to DHCP port 67, half to TFTP port 69 and to the transfer ports (TIDs)
 * the server answered from. Kinds, in roughly equal parts:
 *  - purely random bytes of random length (0..1500);
 *  - real captures (test/fixtures/dhcp/*.hex) with bytes flipped, truncated, extended, or an
 *    option length lied about;
 *  - well-formed packets built with the codecs (src/dhcp/codec.ts, src/tftp/codec.ts) carrying
 *    random message types, vendor classes, architectures, user classes, hostnames, and
 *    TFTP RRQs with hostile filenames and out-of-range options, ACKs/ERRORs for random blocks.
 * Deterministic for a given seed. Paced by sync requests (see below) so the server reads the
 * datagrams instead of the kernel dropping them. Prints "SENT n REPLIES m SYNCS s SYNC_TIMEOUTS t".
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { emptyPacket, encode as encodeDhcp } from '../src/dhcp/codec.js';
import { encode as encodeTftp } from '../src/tftp/codec.js';

export interface FuzzJob {
  server: string;
  count: number;
  seed: number;
  /** Datagrams in flight before waiting for the kernel to take them. */
  window?: number;
}

/** xorshift32: fast, seeded, good enough for fuzzing. */
function rng(seed: number) {
  let s = seed >>> 0 || 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  return {
    u32: next,
    int: (n: number) => next() % Math.max(1, n),
    bytes(n: number): Buffer {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
    pick<T>(a: readonly T[]): T {
      return a[next() % a.length]!;
    },
  };
}
type Rng = ReturnType<typeof rng>;

const HOSTILE_NAMES = [
  '../../../../etc/passwd',
  '/etc/shadow',
  '..\\..\\windows\\win.ini',
  'pxelinux.cfg/../../../etc/hosts',
  '%2e%2e/%2e%2e/etc/passwd',
  'undionly.kpxe\0../../etc/passwd',
  '....//....//etc/passwd',
  'a'.repeat(600),
  '',
  '.',
  '/',
  '//',
  'undionly.kpxe',
  'ipxe.efi',
  'pxelinux.cfg/01-02-00-00-00-00-01',
  'boot/02-00-00-00-00-01.ipxe',
  '\u00ff\u00fe',
  'nul\u0001byte',
];

function seeds(): Buffer[] {
  const dir = path.resolve(import.meta.dirname, '..', 'test', 'fixtures', 'dhcp');
  try {
    return fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.hex'))
      .map((f) => Buffer.from(fs.readFileSync(path.join(dir, f), 'utf8').replace(/\s+/g, ''), 'hex'))
      .filter((b) => b.length >= 240 && b[0] === 1);
  } catch {
    return [];
  }
}

function mutate(r: Rng, src: Buffer): Buffer {
  let b = Buffer.from(src);
  const k = r.int(5);
  if (k === 0) {
    for (let i = 0, n = 1 + r.int(8); i < n; i++) b[r.int(b.length)] = r.u32() & 0xff;
  } else if (k === 1) {
    b = b.subarray(0, r.int(b.length + 1));
  } else if (k === 2) {
    b = Buffer.concat([b, r.bytes(r.int(400))]);
  } else if (k === 3 && b.length > 242) {
    // Lie about an option length somewhere in the options area.
    const at = 240 + r.int(b.length - 241);
    b[at + 1] = r.u32() & 0xff;
  } else {
    // Splice a random run of bytes in the middle.
    const at = r.int(b.length);
    r.bytes(Math.min(b.length - at, 1 + r.int(32))).copy(b, at);
  }
  return b;
}

function structuredDhcp(r: Rng): Buffer {
  const p = emptyPacket(1);
  p.xid = r.u32();
  p.flags = r.int(2) ? 0x8000 : r.u32() & 0xffff;
  p.hlen = r.int(8) ? 6 : r.int(20);
  p.hops = r.int(10) ? 0 : r.int(256);
  p.ciaddr = r.int(4) ? '0.0.0.0' : `10.85.${r.int(256)}.${r.int(256)}`;
  p.giaddr = r.int(10) ? '0.0.0.0' : `10.${r.int(256)}.${r.int(256)}.1`;
  p.chaddr = Buffer.concat([Buffer.from([0x02, 0xf2]), r.bytes(14)]);
  p.options.set(53, Buffer.from([r.int(12) ? 1 + r.int(8) : r.u32() & 0xff]));
  const n = r.int(12);
  for (let i = 0; i < n; i++) {
    const code = r.pick([12, 50, 54, 55, 57, 60, 61, 77, 82, 93, 94, 97, 175, 43, 81, 119, r.int(254) + 1]);
    let v: Buffer;
    if (code === 60) v = Buffer.from(r.pick(['PXEClient:Arch:00000:UNDI:002001', 'PXEClient:Arch:00007:UNDI:003016', 'HTTPClient:Arch:00016', 'PXEClient:Arch:99999', 'PXEClient', 'MSFT 5.0', 'x'.repeat(255)]));
    else if (code === 93) v = r.int(3) ? Buffer.from([0, r.pick([0, 6, 7, 9, 10, 11, 15, 16, 19, 255])]) : r.bytes(r.int(9));
    else if (code === 77) v = r.int(2) ? Buffer.from('\x04iPXE') : r.bytes(r.int(40));
    else if (code === 12) v = Buffer.from(r.pick(['../../etc', 'n0001', 'a b', '\u0000x', 'x'.repeat(200), '-rf', '$(reboot)']), 'latin1');
    else if (code === 57) v = r.int(2) ? Buffer.from([r.u32() & 0xff, r.u32() & 0xff]) : r.bytes(r.int(4));
    else v = r.bytes(r.int(r.int(8) ? 20 : 300));
    p.options.set(code, v);
  }
  return encodeDhcp(p, { maxSize: r.int(4) ? 576 : 1500 });
}

function structuredTftp(r: Rng): Buffer {
  const k = r.int(6);
  if (k <= 2) {
    const options: Record<string, string> = {};
    const order: string[] = [];
    for (let i = 0, n = r.int(5); i < n; i++) {
      const name = r.pick(['blksize', 'tsize', 'timeout', 'windowsize', 'rollover', 'utimeout', 'x'.repeat(r.int(80))]);
      const value = r.pick(['0', '1', '7', '8', '512', '1468', '65464', '65465', '99999999999', '-1', 'abc', '', String(r.u32())]);
      if (!(name in options)) order.push(name);
      options[name] = value;
    }
    return encodeTftp({ op: r.int(8) ? 'rrq' : 'wrq', filename: r.pick(HOSTILE_NAMES), mode: r.pick(['octet', 'netascii', 'mail', 'OCTET', 'binary', '']), options, optionOrder: order });
  }
  if (k === 3) return encodeTftp({ op: 'ack', block: r.int(70000) });
  if (k === 4) return encodeTftp({ op: 'error', code: r.int(10), message: 'fuzz' });
  return encodeTftp({ op: 'data', block: r.int(65536), data: r.bytes(r.int(600)) });
}

export async function runFuzz(job: FuzzJob): Promise<{ sent: number; replies: number; syncs: number; syncTimeouts: number }> {
  const r = rng(job.seed);
  const seedPkts = seeds();
  const rrqSeed = encodeTftp({ op: 'rrq', filename: 'undionly.kpxe', mode: 'octet', options: { blksize: '1468', tsize: '0' }, optionOrder: ['blksize', 'tsize'] });
  // A few client sockets, so server-side transfers have several peers; their TIDs are fuzzed too.
  const socks = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((res) => s.bind(0, res));
      return s;
    }),
  );
  const tids: { port: number; sock: dgram.Socket }[] = [];
  let replies = 0;
  for (const s of socks) {
    s.on('message', (_m, rinfo) => {
      replies++;
      if (rinfo.port !== 69 && rinfo.port !== 67 && tids.length < 256) tids.push({ port: rinfo.port, sock: s });
    });
  }
  // Pacing: after every `window` datagrams, one well-formed request per protocol whose answer
  // we wait for. The server handles a socket's datagrams in order, so the answer means the
  // fuzz before it was read (not dropped by a full receive buffer). A sync that gets no answer
  // in 2 s is counted and the fuzz goes on.
  const syncDhcp = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((res) => syncDhcp.bind(68, '0.0.0.0', res));
  syncDhcp.setBroadcast(true);
  const syncTftp = dgram.createSocket('udp4');
  await new Promise<void>((res) => syncTftp.bind(0, res));
  let syncTimeouts = 0;
  let syncs = 0;
  let xid = 0x5eed0000;
  const waitReply = (sock: dgram.Socket, send: () => void, match: (m: Buffer) => boolean) =>
    new Promise<void>((res) => {
      const t = setTimeout(() => {
        syncTimeouts++;
        sock.off('message', on);
        res();
      }, 2000);
      const on = (m: Buffer) => {
        if (!match(m)) return;
        clearTimeout(t);
        sock.off('message', on);
        res();
      };
      sock.on('message', on);
      send();
    });
  const sync = async () => {
    syncs++;
    const p = emptyPacket(1);
    p.xid = ++xid;
    p.flags = 0x8000;
    p.chaddr = Buffer.from([0x02, 0xf3, 0, 0, 0, 1, ...Array(10).fill(0)]);
    p.options.set(53, Buffer.from([1]));
    p.options.set(60, Buffer.from('PXEClient:Arch:00000:UNDI:002001'));
    const want = p.xid;
    await Promise.all([
      waitReply(syncDhcp, () => syncDhcp.send(encodeDhcp(p), 67, '255.255.255.255'), (m) => m.length > 8 && m.readUInt32BE(4) === want),
      waitReply(syncTftp, () => syncTftp.send(encodeTftp({ op: 'rrq', filename: `phrel-sync-${syncs}`, mode: 'octet', options: {}, optionOrder: [] }), 69, job.server), (m) => m.length >= 4 && m.readUInt16BE(0) === 5),
    ]);
  };
  const window = job.window ?? 64;
  let inflight = 0;
  let wake: (() => void) | undefined;
  const done = () => {
    inflight--;
    if (wake && inflight < window / 2) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  for (let i = 0; i < job.count; i++) {
    let buf: Buffer;
    let port: number;
    let sock = socks[i & 3]!;
    if (i % 2 === 0) {
      port = 67;
      const k = r.int(3);
      buf = k === 0 ? r.bytes(r.int(1500)) : k === 1 && seedPkts.length ? mutate(r, r.pick(seedPkts)) : structuredDhcp(r);
    } else {
      port = 69;
      const k = r.int(4);
      buf = k === 0 ? r.bytes(r.int(700)) : k === 1 ? mutate(r, rrqSeed) : structuredTftp(r);
      // A share goes to the transfer ports the server opened for us.
      if (tids.length && r.int(4) === 0) {
        const t = r.pick(tids);
        port = t.port;
        sock = t.sock;
        buf = r.int(2) ? encodeTftp({ op: 'ack', block: r.int(70000) }) : r.int(2) ? r.bytes(r.int(40)) : encodeTftp({ op: 'error', code: r.int(10), message: 'fuzz' });
      }
      if (tids.length > 200) tids.splice(0, 100);
    }
    inflight++;
    sock.send(buf, port, job.server, done);
    if (inflight >= window) await new Promise<void>((res) => (wake = res));
    if (i % (2 * window) === 2 * window - 1) await sync();
  }
  while (inflight > 0) await new Promise((res) => setTimeout(res, 5));
  await new Promise((res) => setTimeout(res, 300));
  for (const s of socks) s.close();
  syncDhcp.close();
  syncTftp.close();
  return { sent: job.count, replies, syncs, syncTimeouts };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const job = JSON.parse(process.argv[2] ?? '{}') as FuzzJob;
  runFuzz(job).then(
    (r) => {
      process.stdout.write(`SENT ${r.sent} REPLIES ${r.replies} SYNCS ${r.syncs} SYNC_TIMEOUTS ${r.syncTimeouts}\n`);
      process.exit(0);
    },
    (e) => {
      process.stderr.write(`storm-fuzz: ${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
