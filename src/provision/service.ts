import type { Node } from '../nodes/types.js';
import { parseMac, InvalidInput } from '../nodes/mac.js';
import { nameError, stateError } from '../nodes/names.js';
import type { ChunkWriter, NodescriptEngine, RunSummary, ScriptFailure, ScriptListing } from '../nodescripts/engine.js';
import type { ProvisionBackend } from './backend.js';
import type { Health } from '../inventory/inventory.js';
import { peerIp } from '../util/net.js';

/**
 * "Provision state S for node N", independent of the protocol that asked (HTTP or the
 * provisiond TCP protocol). Two steps so a protocol can refuse before sending anything:
 * resolve() finds (or registers) the node, provision() records the contact and streams.
 */
export interface ProvisionRequest {
  state: string;
  /** MAC as sent by the client (any accepted spelling, optional 01: prefix). */
  mac?: string;
  /** Requested name for a new node (provisiond nodename=). */
  nodename?: string;
  /** Peer address of the connection. */
  ip?: string;
  /** Which protocol asked, for events. */
  via: 'http' | 'tcp';
}

export type Resolved =
  | { ok: true; node: Node; registered: boolean; state: string; ip?: string }
  | { ok: false; status: 400 | 403 | 404; reason: string };

export class ProvisionService {
  constructor(
    readonly backend: ProvisionBackend,
    readonly engine: NodescriptEngine,
  ) {}

  resolve(req: ProvisionRequest): Resolved {
    const sErr = stateError(req.state);
    if (sErr) return { ok: false, status: 400, reason: sErr };
    const ip = peerIp(req.ip);
    let mac: string | undefined;
    if (req.mac !== undefined && req.mac !== '') {
      const m = parseMac(req.mac);
      if (!m.ok) return { ok: false, status: 400, reason: m.error };
      mac = m.mac;
    } else if (ip) {
      mac = this.backend.macForIp(ip);
      if (!mac) {
        return { ok: false, status: 404, reason: `no MAC given and none known for address ${ip} (no lease, not in the ARP table): send mac=<MAC>` };
      }
    } else {
      return { ok: false, status: 400, reason: 'no MAC given: send mac=<MAC>' };
    }
    const known = this.backend.byMac(mac);
    if (known) return { ok: true, node: known, registered: false, state: req.state, ip };
    if (req.state !== 'init') {
      return { ok: false, status: 404, reason: `unknown node ${mac}: only state "init" registers new nodes (or add it: pxeherd node add ${mac})` };
    }
    const name = req.nodename && !nameError('node', req.nodename) && !this.backend.byName(req.nodename) ? req.nodename : undefined;
    try {
      const node = this.backend.register(mac, { name, ip });
      this.backend.events.record({ mac, node: node.name, kind: 'node.register', detail: { via: req.via, requestedName: req.nodename ?? null, ip: ip ?? null } });
      return { ok: true, node, registered: true, state: req.state, ip };
    } catch (e) {
      if (e instanceof InvalidInput) return { ok: false, status: 403, reason: `unknown node ${mac} not registered: ${e.message}` };
      throw e;
    }
  }

  /** Record the contact, run the scripts and stream them; start/end events around it. */
  async provision(
    r: Extract<Resolved, { ok: true }>,
    write: ChunkWriter,
    opts: { via: 'http' | 'tcp'; signal?: AbortSignal; health?: Health; healthInvalid?: string[] },
  ): Promise<RunSummary> {
    const { node, state, ip } = r;
    this.backend.touch(node.mac, state, ip);
    if (opts.health) this.backend.recordHealth?.(node.mac, opts.health);
    // Re-read after touch so IPADDR and the rest reflect what was just recorded.
    const current = this.backend.byMac(node.mac) ?? node;
    const base = { mac: current.mac, node: current.name };
    this.backend.events.record({ ...base, kind: 'provision.start', detail: {
        state,
        via: opts.via,
        ip: ip ?? null,
        registered: r.registered,
        ...(opts.health ? { health: opts.health } : {}),
        ...(opts.healthInvalid?.length ? { health_invalid: opts.healthInvalid } : {}),
      },
    });
    let summary: RunSummary | undefined;
    try {
      summary = await this.engine.run(current, state, write, {
        ip: ip ?? current.ip,
        attrs: this.backend.attrsFor(current),
        signal: opts.signal,
        token: this.backend.issueToken?.(current.mac),
      });
      return summary;
    } finally {
      this.backend.events.record({
        ...base,
        kind: 'provision.end',
        detail: {
          state,
          via: opts.via,
          durationMs: summary?.durationMs ?? null,
          scripts: summary?.scripts ?? 0,
          ok: summary?.ok ?? false,
          failed: summary?.failures.map((f) => f.script) ?? [],
          aborted: summary?.aborted ?? true,
        },
      });
    }
  }

  /** For `pxeherd script list`. */
  listScripts(node: Node, state: string): Promise<ScriptListing> {
    return this.engine.listScripts(node, state);
  }

  /** For `pxeherd script render`: the bytes the node would receive (scripts run on the master). */
  renderScript(node: Node, state: string): Promise<{ text: string; ok: boolean; failure?: ScriptFailure; summary: RunSummary }> {
    return this.engine.renderScript(node, state, { attrs: this.backend.attrsFor(node), ip: node.ip });
  }
}
