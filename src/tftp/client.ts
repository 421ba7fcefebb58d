/**
 * A small TFTP read client (RFC 1350 + options, windowsize). It exists to check the
 * server from the outside: integration tests use its fault injection (dropped DATA or
 * ACKs, ending negotiation with error 8 like UEFI firmware), and diagnostics can use it
 * to fetch a file the way a booting machine would. Not on any hot path.
 */
import dgram from 'node:dgram';
import { ackPacket, decode, encode, errorPacket, type Options } from './codec.js';

export interface GetOptions {
  host: string;
  port: number;
  file: string;
  mode?: 'octet' | 'netascii';
  /** Options to request, e.g. { blksize: '1468', tsize: '0', windowsize: '16' }. */
  options?: Record<string, string>;
  /** Wait for the next packet before re-sending our last one. */
  timeoutMs?: number;
  retries?: number;
  /** Fault injection: return true to drop this incoming DATA (block = wire number). */
  dropData?: (block: number) => boolean;
  /** Fault injection: return true to "lose" this ACK instead of sending it. */
  dropAck?: (block: number) => boolean;
  /** Answer the OACK with ERROR 8 and stop (UEFI's tsize probe). */
  refuseOack?: boolean;
  /** Hard limit for the whole transfer. */
  deadlineMs?: number;
}

export interface GetResult {
  data: Buffer;
  /** Options from the server's OACK (undefined when it answered with DATA directly). */
  oack?: Options;
  /** Every DATA datagram received, including duplicates and dropped ones. */
  dataPackets: number;
  duplicates: number;
  acksSent: number;
  /** Port the transfer came from (the server's TID). */
  serverPort: number;
}

export class TftpClientError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'TftpClientError';
  }
}

export async function tftpGet(o: GetOptions): Promise<GetResult> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, undefined, resolve));
  const timeoutMs = o.timeoutMs ?? 500;
  const retries = o.retries ?? 10;
  const rrq = encode({
    op: 'rrq',
    filename: o.file,
    mode: o.mode ?? 'octet',
    options: o.options ?? {},
    optionOrder: Object.keys(o.options ?? {}),
  });
  return await new Promise<GetResult>((resolve, reject) => {
    let blksize = 512;
    let windowsize = 1;
    let serverPort = 0;
    let expected = 1; // absolute number of the next block we need
    let inWindow = 0;
    let gapAcked = false;
    let last: Buffer = rrq;
    let lastTo = o.port;
    let tries = 0;
    let oack: Options | undefined;
    const chunks: Buffer[] = [];
    const res = { dataPackets: 0, duplicates: 0, acksSent: 0 };
    let timer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => finish(new Error(`transfer of ${o.file} exceeded ${o.deadlineMs ?? 60_000} ms`)), o.deadlineMs ?? 60_000);

    // dgram sends to a host name go out on a later tick: closing right after the final
    // ACK or ERROR would silently drop it, so close once every send has completed.
    let inflight = 0;
    let closing = false;
    const send = (buf: Buffer, port: number): void => {
      inflight++;
      sock.send(buf, port, o.host, () => {
        if (--inflight === 0 && closing) sock.close();
      });
    };
    const finish = (err?: Error, result?: GetResult): void => {
      // After a dally the promise is already resolved; resolving again is a no-op.
      if (closing) return;
      closing = true;
      clearTimeout(deadline);
      if (timer) clearTimeout(timer);
      sock.removeAllListeners('message');
      if (inflight === 0) sock.close();
      if (err) reject(err);
      else resolve(result!);
    };
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        if (++tries > retries) return finish(new Error(`timed out waiting for ${o.file} (block ${expected})`));
        send(last, lastTo);
        arm();
      }, timeoutMs);
    };
    const sendAck = (abs: number): void => {
      last = ackPacket(abs & 0xffff);
      lastTo = serverPort;
      if (o.dropAck?.(abs & 0xffff)) return;
      res.acksSent++;
      send(last, serverPort);
    };

    sock.on('message', (msg, rinfo) => {
      if (serverPort === 0) serverPort = rinfo.port;
      else if (rinfo.port !== serverPort) {
        // A packet from another TID: RFC 1350 says answer error 5 and carry on.
        send(errorPacket(5, 'unknown transfer ID'), rinfo.port);
        return;
      }
      const d = decode(msg);
      if (!d.ok) return;
      const p = d.packet;
      if (p.op === 'error') return finish(new TftpClientError(p.code, p.message));
      if (p.op === 'oack') {
        if (expected !== 1 || chunks.length) return; // late duplicate
        oack = p.options;
        if (o.refuseOack) {
          send(errorPacket(8, 'options refused (probe)'), serverPort);
          return finish(undefined, { data: Buffer.alloc(0), oack, serverPort, ...res });
        }
        if (p.options.blksize) blksize = Number(p.options.blksize);
        if (p.options.windowsize) windowsize = Number(p.options.windowsize);
        tries = 0;
        sendAck(0);
        arm();
        return;
      }
      if (p.op !== 'data') return;
      res.dataPackets++;
      if (o.dropData?.(p.block)) return;
      if (p.block !== (expected & 0xffff)) {
        res.duplicates++;
        // Out of order or a repeat: tell the sender where we are, once per gap.
        if (!gapAcked) {
          gapAcked = true;
          // The sender restarts its window at `expected`: count from there.
          inWindow = 0;
          sendAck(expected - 1);
        }
        return;
      }
      chunks.push(Buffer.from(p.data));
      expected++;
      inWindow++;
      gapAcked = false;
      tries = 0;
      if (p.data.length < blksize) {
        sendAck(expected - 1);
        const result = { data: Buffer.concat(chunks), oack, serverPort, ...res };
        // Dally (RFC 1350 section 6): if our final ACK is lost the server resends the last
        // DATA; answer it for a while instead of leaving the server to time out.
        const finalAck = last;
        clearTimeout(deadline);
        if (timer) clearTimeout(timer);
        sock.removeAllListeners('message');
        sock.on('message', (_m, r) => {
          if (r.port === serverPort) send(finalAck, serverPort);
        });
        setTimeout(() => finish(undefined, result), 3 * timeoutMs);
        resolve(result);
        return;
      }
      if (inWindow >= windowsize) {
        inWindow = 0;
        sendAck(expected - 1);
      }
      arm();
    });
    send(rrq, o.port);
    arm();
  });
}
