/**
 * The HTTP side of pxeherd for the stage-one QEMU boot test, run inside the test's network
 * namespace: boot scripts, VNFS files and /provision with node tokens, over an in-memory
 * node table. Prints LISTENING, then one JSON line per event.
 * Usage: node --import tsx stage1-lab-server.ts ADDRESS PORT STATEDIR
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { BootEvent } from '../../src/nodes/types.js';
import { createHttpApp } from '../../src/http/app.js';
import { bootRouter } from '../../src/http/boot.js';
import { vnfsRouter } from '../../src/http/vnfs.js';
import { provisionRouter } from '../../src/provision/http.js';
import { ProvisionService } from '../../src/provision/service.js';
import { MemoryProvisionBackend } from '../../src/provision/memory-backend.js';
import { NodescriptEngine } from '../../src/nodescripts/engine.js';
import { DEFAULT_NODESCRIPTS_SRC } from '../../src/nodescripts/install.js';
import { BootService, repoTemplatesDir } from '../../src/boot/service.js';
import { TemplateStore } from '../../src/boot/templates.js';
import { NodeTokens } from '../../src/security/tokens.js';
import { httpAuthorizer } from '../../src/security/authorize.js';

const [address, portS, statedir] = process.argv.slice(2) as [string, string, string];
const port = Number(portS);
const sink = { record: (e: BootEvent) => void process.stdout.write(JSON.stringify({ time: Date.now(), ...e }) + '\n') };
const backend = new MemoryProvisionBackend({ defaultVnfs: 'stage1' });
(backend as { events: typeof sink }).events = sink;
const tokens = new NodeTokens({ key: Buffer.alloc(32, 5), ttlSeconds: 600 });
const stage1 = JSON.parse(fs.readFileSync(path.join(statedir, 'vnfs', 'stage1', 'vnfs.json'), 'utf8'));
const boot = new BootService({
  backend: {
    nodeByMac: (mac) => backend.byMac(mac),
    attrsFor: (n) => backend.attrsFor(n),
    vnfs: (name) => (name === 'stage1' ? { ...stage1, attrs: {}, createdAt: 0 } : undefined),
    setBootMode: (mac, mode) => void (backend.byMac(mac)!.boot = mode),
  },
  templates: new TemplateStore([repoTemplatesDir()]),
  server: { address, httpPort: port },
  tokens,
  autoRegister: true,
  defaultVnfs: 'stage1',
  events: sink,
});
const engine = new NodescriptEngine({ dir: DEFAULT_NODESCRIPTS_SRC, statedir, events: sink, attrsFor: (n) => backend.attrsFor(n) });
const app = createHttpApp({
  routers: [
    bootRouter({ boot, events: sink }),
    vnfsRouter({ vnfsRoot: path.join(statedir, 'vnfs'), events: sink, backend: { vnfs: (n) => (n === 'stage1' ? stage1 : undefined), nodeName: (m) => backend.byMac(m)?.name } }),
    provisionRouter(new ProvisionService(backend, engine), { authorize: httpAuthorizer({ enabled: true, tokens, events: sink }) }),
  ],
});
const server = http.createServer(app);
server.listen(port, address, () => process.stdout.write('LISTENING\n'));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
