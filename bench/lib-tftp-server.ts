/**
 * Runs pxeherd's TFTP server alone, for benchmarks and for tests that need it in another
 * process (e.g. inside a network namespace):
 *   node --import tsx bench/lib-tftp-server.ts --root DIR [--address 127.0.0.1] [--port 69]
 *        [--max-windowsize N] [--max-window-bytes N] [--timeout-ms N] [--threads N] [--engine auto|native|js]
 * Prints "READY <port>" once listening; on SIGTERM/SIGINT prints the stats as JSON and exits.
 */
import { parseArgs } from 'node:util';
import { TftpServer } from '../src/tftp/server.js';

const { values } = parseArgs({
  options: {
    root: { type: 'string' },
    address: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '69' },
    'max-windowsize': { type: 'string' },
    'max-window-bytes': { type: 'string' },
    'timeout-ms': { type: 'string' },
    threads: { type: 'string' },
    engine: { type: 'string', default: 'auto' },
  },
});
if (!values.root) {
  console.error('usage: lib-tftp-server.ts --root DIR [--address A] [--port P]');
  process.exit(2);
}
const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
const server = new TftpServer({
  root: values.root,
  address: values.address,
  port: Number(values.port),
  maxWindowsize: num(values['max-windowsize']),
  maxWindowBytes: num(values['max-window-bytes']),
  timeoutMs: num(values['timeout-ms']),
  threads: num(values.threads),
  engine: values.engine as 'auto' | 'native' | 'js',
  // The start line says which engine pumps DATA; nothing per transfer.
  logger: { info: (_o, m) => { if (m?.startsWith('tftp: DATA')) console.error(m); }, warn: (o, m) => console.error(m ?? '', JSON.stringify(o)) },
});
const { port } = await server.start();
console.log(`READY ${port}`);
const stop = async (): Promise<void> => {
  console.error(JSON.stringify(server.stats()));
  await server.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
