/**
 * Runs the DHCP server inside a network namespace for the integration tests and the bench:
 *   ip netns exec NS node --import tsx test/integration/dhcp-runner.ts '<json>'
 * json: { dhcp: <partial dhcp config>, serverAddress, httpPort?, statedir? (SQLite leases via the
 * store; else in memory), nodes?: [{mac, ip?, name?}], autoRegister? }
 * Prints "READY" or "ERROR <message>"; on SIGTERM prints "COUNTERS <json>" and exits.
 */
import { configSchema } from '../../src/config/schema.js';
import { Store } from '../../src/store/store.js';
import { MemoryDhcpBackend } from '../../src/dhcp/memory-backend.js';
import { DhcpServer } from '../../src/dhcp/server.js';
import { loadBindToDevice } from '../../src/dhcp/bindtodevice.js';
import type { DhcpBackend } from '../../src/dhcp/backend.js';

const arg = JSON.parse(process.argv[2] ?? '{}') as {
  dhcp?: Record<string, unknown>;
  serverAddress: string;
  httpPort?: number;
  statedir?: string;
  nodes?: Array<{ mac: string; ip?: string; name?: string }>;
  autoRegister?: boolean;
  /** Answer on this interface only (needs the native addon). */
  interface?: string;
  printEvents?: boolean;
  /** 'store': the production backend (src/server/backends.ts: nodes, registration and events in SQLite; needs statedir). */
  backend?: 'memory' | 'store';
  /** `nodes:` config section (naming pattern for registrations). */
  nodesConfig?: Record<string, unknown>;
};

const cfg = configSchema.parse({ dhcp: arg.dhcp ?? {}, nodes: { auto_register: arg.autoRegister ?? true, ...arg.nodesConfig } });
const store = arg.statedir ? Store.open(arg.statedir) : undefined;
// As `pxeherd serve` (src/server/server.ts): WAL checkpoints on a worker thread.
if (arg.backend === 'store') store?.checkpointInBackground((m) => console.error(m));
const memory = new MemoryDhcpBackend({ autoRegister: arg.autoRegister ?? true, nodes: arg.nodes, leases: store?.leases });
let backend: DhcpBackend = memory;
if (arg.backend === 'store') {
  if (!store) throw new Error('backend "store" needs statedir');
  // Imported only here so the tests do not depend on the wiring module.
  const { dhcpBackend, eventSink } = await import('../../src/server/backends.js');
  backend = dhcpBackend(store, cfg, eventSink(store));
}
const server = new DhcpServer({
  config: cfg.dhcp,
  serverAddress: arg.serverAddress,
  httpPort: arg.httpPort ?? 8080,
  backend,
  interface: arg.interface,
  bindToDevice: arg.interface ? loadBindToDevice() : undefined,
  logger: { info: (m) => console.error(m), warn: (m) => console.error(m), error: (m) => console.error(m) },
});

const finish = () => {
  server.stop();
  store?.close();
  process.stdout.write(`COUNTERS ${JSON.stringify({ ...server.counters, shed: Object.values(server.shed).reduce((a, b) => a + b, 0) })}\n`);
  // Events only when asked (tests read them); the bench's 100 000 would just be noise.
  const events = arg.printEvents === false ? [] : memory.events.list.slice(-200);
  process.stdout.write(`EVENTS ${JSON.stringify(events)}\n`, () => process.exit(0));
};
process.on('SIGTERM', finish);
process.on('SIGINT', finish);

server.start().then(
  () => process.stdout.write('READY\n'),
  (e: Error) => {
    process.stdout.write(`ERROR ${e.message}\n`, () => process.exit(1));
  },
);
