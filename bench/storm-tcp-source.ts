/**
 * The raw-TCP side of the storm's link measurement: listens on HOST:PORT and sends BYTES to
 * each connection (a 1 MiB buffer, honouring backpressure), then closes it. No HTTP, no file:
 * what the namespace link carries when nothing but TCP is in the way. Started in the server
 * namespace by bench/storm.ts; the storm clients read with mode "tcp".
 *   node --import tsx bench/storm-tcp-source.ts HOST PORT BYTES
 */
import net from 'node:net';

const [host, port, bytesArg] = process.argv.slice(2);
const BYTES = Number(bytesArg);
const block = Buffer.alloc(1 << 20, 0x5a);

const server = net.createServer((s) => {
  let left = BYTES;
  s.on('error', () => s.destroy());
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, block.length);
      left -= n;
      if (!s.write(n === block.length ? block : block.subarray(0, n))) return void s.once('drain', pump);
    }
    s.end();
  };
  pump();
});
server.listen({ host, port: Number(port), backlog: 4096 }, () => process.stdout.write('LISTENING\n'));
