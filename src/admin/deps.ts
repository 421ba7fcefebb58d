import type { Store } from '../store/store.js';
import type { NodeService } from '../nodes/service.js';
import type { Node } from '../nodes/types.js';
import type { AdminTokens } from './tokens.js';
import { ImageService } from '../images/service.js';
import { PowerService } from '../power/service.js';
import { pinInStore, planRollbacks, rollbackNodes, RollbackRefused, storeRollbackLookups, type RollbackOutcome } from '../install/rollback.js';
import { storeReinstallBackend } from '../lifecycle/backend.js';
import { ensureKey } from '../remote/keys.js';
import { HttpError } from './errors.js';
import type { LiveEvents } from './sse.js';
import type { WriteThrough } from '../store/pg/writer.js';

/** `pxeherd script list/render` behind the API (src/nodescripts provides them). */
export interface ScriptsApi {
  list(node: Node, state: string): unknown | Promise<unknown>;
  render(node: Node, state: string): unknown | Promise<unknown>;
}

export interface ExplainOptions {
  arch?: number;
  ipxe?: boolean;
  proxy?: boolean;
  httpClient?: boolean;
}

export interface AdminWriteThrough {
  /** The replica caught up with PostgreSQL (at once while it is unreachable: a change then fails with 503). */
  catchUp(): Promise<void>;
  writer: Pick<WriteThrough, 'tagged' | 'settle'>;
}

export interface AdminDeps {
  store: Store;
  /** The same service the CLI uses: one set of validation rules and messages. */
  service: NodeService;
  tokens: AdminTokens;
  /** GET /metrics renders this (createMetrics(store)); absent: /metrics answers 404. */
  metrics?: { render(): Promise<string> };
  /**
   * /metrics without a token (default true): it carries only aggregate counts (no node
   * names, MACs or attributes) and Prometheus then needs no secret. false: a token
   * (read-only is enough) is required.
   */
  metricsPublic?: boolean;
  scripts?: ScriptsApi;
  explain?: (mac: string, opts: ExplainOptions) => unknown | Promise<unknown>;
  /** VNFS revisions and rollback (default: an ImageService over store and the service's state directory). */
  images?: ImageService;
  /** Where the handlebars pages are (default: the package's templates/ui). */
  templatesDir?: string;
  now?: () => number;
  /** Power control for rollbacks (default: a PowerService over the store and the state directory). */
  power?: PowerService;
  /**
   * A server on PostgreSQL: the store is its local replica, and what a request writes goes to
   * PostgreSQL before the answer leaves (src/store/pg/writer.ts; app.ts wires it).
   */
  writeThrough?: AdminWriteThrough;
  /** SSE keep-alive comment interval (default 15 s). */
  heartbeatMs?: number;
  /** Where GET /events, timelines and live streams read events (default store.events; PostgreSQL: every server's, src/store/pg/event-feed.ts). */
  events?: LiveEvents;
}

/** The image service the API and UI use: the one given, or one over the store (rollback and listings need no templates). */
export function imagesOf(deps: AdminDeps): ImageService {
  return (deps.images ??= new ImageService({ store: deps.store, statedir: deps.service.statedir, templatesDirs: [], events: deps.store.events }));
}

/** The power service the API and UI use: the one given, or one over the store and the state directory. */
export function powerOf(deps: AdminDeps): PowerService {
  const { store } = deps;
  return (deps.power ??= new PowerService({ statedir: deps.service.statedir, backend: { attrsFor: (n) => store.attrsFor(n), events: store.events } }));
}

/** What a reinstall (or rollback) started from the API drives: the store, the power service, pxeherd's SSH key. */
export function reinstallBackendOf(deps: AdminDeps) {
  const statedir = deps.service.statedir;
  return storeReinstallBackend({ store: deps.store, statedir, power: powerOf(deps), key: () => ensureKey(statedir) });
}

/**
 * `node rollback NODE` without --wait, for the API and the UI: refusals (RollbackRefused) are
 * 409s naming what to do; the outcome says whether the power cycle happened.
 */
export async function startRollback(deps: AdminDeps, node: Node): Promise<RollbackOutcome> {
  const { store } = deps;
  const statedir = deps.service.statedir;
  let plans;
  try {
    plans = planRollbacks([node], storeRollbackLookups(store, imagesOf(deps)));
  } catch (e) {
    if (e instanceof RollbackRefused) throw new HttpError(409, e.message, 'node');
    throw e;
  }
  const backend = reinstallBackendOf(deps);
  const [out] = await rollbackNodes(plans, { ...backend, pin: (ps) => pinInStore(store, ps), install: (mac) => store.installs.get(mac) }, { wait: false, timeoutMs: 0, parallel: 1 });
  return out!;
}
