import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { EventSink } from '../nodes/types.js';
import { NodescriptEngine, createSpawner } from '../nodescripts/index.js';
import { ProvisionService } from '../provision/service.js';
import { provisionBackend } from './backends.js';
import { imageEnvFor } from '../images/resolve.js';
import { installEnv } from '../install/env.js';
import { planForNode } from '../install/node-plan.js';

/** The nodescript engine and provision service as configured: shared by `serve`, `script` and the API. */
export function provisionParts(
  config: Config,
  store: Store,
  events: EventSink,
  warn: (msg: string) => void,
  /** The server's node tokens (security.node_tokens on): scripts get a fresh one as NODETOKEN. */
  tokens?: { issueToken(mac: string): string },
): { engine: NodescriptEngine; provision: ProvisionService } {
  const engine = new NodescriptEngine({
    dir: config.nodescripts.dir,
    statedir: config.statedir,
    vnfs: config.vnfs,
    timeoutSeconds: config.nodescripts.timeout_seconds,
    maxParallel: config.nodescripts.max_parallel,
    onError: config.nodescripts.on_error,
    spawner: createSpawner({ log: warn }),
    events,
    attrsFor: (node) => store.attrsFor(node),
    imageFor: (node, attrs) => {
      const image = imageEnvFor((name) => store.vnfs.get(name))(node, attrs);
      return { ...image, install: installEnv(attrs, image.root, () => planForNode(store, node)) };
    },
  });
  return { engine, provision: new ProvisionService(provisionBackend(store, config, events, tokens), engine) };
}
