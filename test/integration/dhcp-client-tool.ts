/**
 * A scriptable DHCP peer for the namespace tests (run with `ip netns exec NS node --import tsx`):
 *   send: {mode:'send', local?, port, to:{address,port}, packets:[hex], waitMs}
 *         -> prints REPLIES [{from, port, hex}] received on `port` within waitMs
 *   fuzz: {mode:'fuzz', local?, to:{address,port}, count, seeds:[hex], seed}
 *         -> sends `count` random and mutated datagrams, prints SENT <n>
 * `local` (an address of this namespace) is used as the source of sends, so limited broadcasts
 * leave through the interface that holds it; a second socket on 0.0.0.0 hears broadcasts.
 */
import dgram from 'node:dgram';

const MAGIC = 0x63825363;
const arg = JSON.parse(process.argv[2] ?? '{}');

function open(address: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    s.once('error', reject);
    s.bind({ address, port }, () => {
      s.setBroadcast(true);
      resolve(s);
    });
  });
}

async function send() {
  const replies: Array<{ from: string; port: number; hex: string }> = [];
  const rx = await open('0.0.0.0', arg.port);
  const tx = arg.local ? await open(arg.local, arg.port) : rx;
  for (const s of new Set([rx, tx])) s.on('message', (m, r) => replies.push({ from: r.address, port: r.port, hex: m.toString('hex') }));
  for (const hex of arg.packets as string[]) {
    await new Promise<void>((res, rej) => tx.send(Buffer.from(hex, 'hex'), arg.to.port, arg.to.address, (e) => (e ? rej(e) : res())));
  }
  await new Promise((r) => setTimeout(r, arg.waitMs ?? 1500));
  process.stdout.write(`REPLIES ${JSON.stringify(replies)}\n`);
  rx.close();
  if (tx !== rx) tx.close();
}

async function fuzz() {
  const s = await open(arg.local ?? '0.0.0.0', 0);
  const seeds = (arg.seeds as string[]).map((h) => Buffer.from(h, 'hex'));
  let x = arg.seed >>> 0 || 1;
  const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) & 0xffff;
  let sent = 0;
  let inflight = 0;
  for (let i = 0; i < arg.count; i++) {
    let b: Buffer;
    const kind = i % 5;
    if (kind === 0) {
      b = Buffer.alloc(rnd() % 1000);
      for (let j = 0; j < b.length; j++) b[j] = rnd() & 255;
    } else if (kind === 1) {
      // Header-valid, options random: exercises the option walker and overload paths.
      b = Buffer.from(seeds[i % seeds.length]!);
      b[0] = 1;
      b.writeUInt32BE(MAGIC, 236);
      for (let j = 240; j < b.length; j++) b[j] = rnd() & 255;
    } else {
      b = Buffer.from(seeds[i % seeds.length]!);
      for (let k = rnd() % 6; k >= 0; k--) b[rnd() % b.length] = rnd() & 255;
      if (kind === 4) b = b.subarray(0, rnd() % b.length);
    }
    inflight++;
    s.send(b, arg.to.port, arg.to.address, () => {
      inflight--;
      sent++;
    });
    if (inflight > 64) await new Promise((r) => setImmediate(r));
    // Pace (`perMs` datagrams per millisecond) so the server, not its socket buffer, sees them.
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 100 / (arg.perMs ?? 20)));
  }
  while (inflight > 0) await new Promise((r) => setImmediate(r));
  process.stdout.write(`SENT ${sent}\n`);
  s.close();
}

(arg.mode === 'fuzz' ? fuzz() : send()).catch((e) => {
  process.stdout.write(`ERROR ${(e as Error).message}\n`);
  process.exit(1);
});
