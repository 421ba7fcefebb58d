import type { EventSink, Node } from '../nodes/types.js';
import { InvalidInput } from '../nodes/mac.js';
import { ensureKey, type KeyPair } from '../remote/keys.js';
import { Redactor } from '../remote/secrets.js';
import { sshRun, SshError, type SshRunner } from '../remote/ssh.js';
import { runLocal, type LocalRunner } from './local.js';
import { httpsRequest, type HttpsRequester } from './https.js';
import { DRIVERS, parsePowerState } from './drivers.js';
import { POWER_DRIVERS, type PowerAction, type PowerDriverName, type PowerOutcome } from './types.js';

export interface PowerBackend {
  attrsFor(node: Node): Record<string, string>;
  events: EventSink;
}

export interface PowerOptions {
  statedir: string;
  backend: PowerBackend;
  timeoutMs?: number;
  ssh?: SshRunner;
  local?: LocalRunner;
  https?: HttpsRequester;
  /** Shared key loader (the CLI makes one per run). */
  key?: () => KeyPair;
}

/** Attribute names that may hold secret material: never template values, never echoed. */
const SECRETISH = /pass|secret|token|key_data/i;

export function templateVars(node: Node, attrs: Record<string, string>, action: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (!SECRETISH.test(k)) vars[k] = v;
  return {
    ...vars,
    node: node.name,
    name: node.name,
    mac: node.mac,
    ip: node.ip,
    group: node.group,
    action,
    bmc_host: attrs.bmc_host ?? '',
    bmc_port: attrs.bmc_port ?? '',
    bmc_user: attrs.bmc_user || 'root',
  };
}

/**
 * Power control by node: the driver comes from the merged attribute `power`. Every outcome,
 * good or bad, becomes one `power.<action>` event; nothing a driver read from a secret file
 * survives into the outcome or the event.
 */
export class PowerService {
  private readonly timeoutMs: number;
  private readonly ssh: SshRunner;
  private readonly local: LocalRunner;
  private readonly https: HttpsRequester;
  private readonly key: () => KeyPair;

  constructor(private readonly o: PowerOptions) {
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.ssh = o.ssh ?? sshRun;
    this.local = o.local ?? runLocal;
    this.https = o.https ?? httpsRequest;
    let cached: KeyPair | undefined;
    this.key = o.key ?? (() => (cached ??= ensureKey(o.statedir)));
  }

  /**
   * For reinstall: a power cycle, or power on when the cycle fails because the node is
   * off (many BMCs refuse to cycle a machine that is off).
   */
  async cycleOrOn(node: Node): Promise<PowerOutcome> {
    const cycle = await this.run(node, 'cycle');
    if (cycle.ok) return cycle;
    const st = await this.run(node, 'status');
    if (!st.ok || st.power !== 'off') return cycle;
    const on = await this.run(node, 'on');
    return on.ok ? { ...on, output: `was off: ${on.output}`.trim() } : { ...on, error: `power cycle failed (${cycle.error}); node is off and power on failed: ${on.error}` };
  }

  async run(node: Node, action: PowerAction): Promise<PowerOutcome> {
    const t0 = Date.now();
    const attrs = this.o.backend.attrsFor(node);
    const driver = attrs.power ?? '';
    const redactor = new Redactor();
    let outcome: PowerOutcome;
    try {
      if (!driver) throw new InvalidInput(`no power driver: set attr power=${POWER_DRIVERS.join('|')} on the node or its group`, 'power');
      if (!(POWER_DRIVERS as readonly string[]).includes(driver)) throw new InvalidInput(`unknown power driver "${driver}": use ${POWER_DRIVERS.join(', ')}`, 'power');
      const r = await DRIVERS[driver as PowerDriverName]({
        node,
        attrs,
        action,
        vars: templateVars(node, attrs, action),
        timeoutMs: this.timeoutMs,
        statedir: this.o.statedir,
        key: this.key,
        ssh: this.ssh,
        local: this.local,
        https: this.https,
        redactor,
      });
      const output = redactor.redact(r.output).slice(0, 4000);
      outcome = { node: node.name, action, driver, ok: r.ok, output, ms: Date.now() - t0 };
      if (r.error) outcome.error = redactor.redact(r.error);
      if (r.skipped) outcome.skipped = true;
      if (r.ok && action === 'status') outcome.power = r.power ?? parsePowerState(output);
    } catch (e) {
      const known = e instanceof InvalidInput || e instanceof SshError;
      const msg = known ? (e as Error).message : `unexpected error: ${(e as Error).message}`;
      outcome = { node: node.name, action, driver: driver || '-', ok: false, output: '', error: redactor.redact(msg), ms: Date.now() - t0 };
    }
    // A failure is its own event kind (`power.fail`, shown as a failure on the timeline).
    this.o.backend.events.record({
      mac: node.mac,
      node: node.name,
      kind: outcome.ok ? `power.${action}` : 'power.fail',
      detail: { action, driver: outcome.driver, ok: outcome.ok, power: outcome.power ?? null, error: outcome.error ?? null, skipped: outcome.skipped ?? false, ms: outcome.ms },
    });
    return outcome;
  }
}
