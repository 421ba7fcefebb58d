/**
 * DMTF Redfish power control (DSP0266; schema ComputerSystem v1.x): power state from
 * `PowerState`, power actions through the `#ComputerSystem.Reset` action, and a one-time
 * network boot by PATCHing `Boot` {BootSourceOverrideEnabled: Once, BootSourceOverrideTarget: Pxe}.
 *
 * The pure parts (what to send for an action given the ComputerSystem resource, how to read
 * an answer or an error) are separate from the client that sends it, so each can be tested
 * on its own.
 */
import type { HttpsRequester, HttpsResponse, TlsPolicy } from './https.js';
import { TlsError } from './https.js';
import type { PowerAction } from './types.js';

type Json = Record<string, unknown>;

export const RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'ForceOn', 'PushPowerButton', 'PowerCycle'] as const;
export type ResetType = (typeof RESET_TYPES)[number];

export class RedfishError extends Error {
  constructor(
    message: string,
    readonly kind: 'auth' | 'unreachable' | 'tls' | 'protocol' | 'refused',
  ) {
    super(message);
  }
}

/** One step the client performs. */
export interface RedfishRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  body?: Json;
  headers?: Record<string, string>;
}

export type Power = 'on' | 'off' | 'unknown';

/** PowerState (Resource.PowerState): On, Off, PoweringOn, PoweringOff, Paused. */
export function powerOf(system: Json): Power {
  switch (system.PowerState) {
    case 'On':
    case 'PoweringOn':
    case 'Paused':
      return 'on';
    case 'Off':
    case 'PoweringOff':
      return 'off';
    default:
      return 'unknown';
  }
}

function odataId(system: Json): string {
  const id = system['@odata.id'];
  if (typeof id !== 'string' || !id.startsWith('/')) throw new RedfishError('the ComputerSystem has no @odata.id: not a Redfish ComputerSystem resource', 'protocol');
  return id;
}

/** The Reset action's target and the reset types the BMC says it allows (undefined: it does not say). */
export function resetAction(system: Json): { target: string; allowed?: string[] } {
  const actions = (system.Actions ?? {}) as Json;
  const reset = actions['#ComputerSystem.Reset'] as Json | undefined;
  const target = typeof reset?.target === 'string' ? reset.target : `${odataId(system)}/Actions/ComputerSystem.Reset`;
  const allowed = reset?.['ResetType@Redfish.AllowableValues'];
  return { target, allowed: Array.isArray(allowed) ? allowed.map(String) : undefined };
}

function reset(system: Json, type: ResetType): RedfishRequest {
  const a = resetAction(system);
  if (a.allowed && !a.allowed.includes(type)) {
    throw new RedfishError(`the BMC does not offer ResetType ${type} (it allows ${a.allowed.join(', ')})`, 'refused');
  }
  return { method: 'POST', path: a.target, body: { ResetType: type } };
}

/** The first of `prefs` the BMC allows (all are assumed allowed when it does not say). */
function firstAllowed(system: Json, prefs: ResetType[]): ResetType | undefined {
  const a = resetAction(system).allowed;
  return prefs.find((p) => !a || a.includes(p));
}

export interface ActionPlan {
  requests: RedfishRequest[];
  /** What is said when nothing needs doing (already on / already off). */
  note?: string;
}

/**
 * What to send for `action`, given the ComputerSystem as the BMC just returned it. Power
 * actions are idempotent (on when on sends nothing: many BMCs answer 409 to it); cycle of a
 * machine that is off powers it on.
 */
export function planAction(action: PowerAction, system: Json, opts: { offType?: ResetType; bootMode?: 'UEFI' | 'Legacy' } = {}): ActionPlan {
  const power = powerOf(system);
  switch (action) {
    case 'status':
      return { requests: [] };
    case 'on':
      return power === 'on' ? { requests: [], note: 'already on' } : { requests: [reset(system, 'On')] };
    case 'off':
      return power === 'off' ? { requests: [], note: 'already off' } : { requests: [reset(system, opts.offType ?? 'ForceOff')] };
    case 'cycle': {
      if (power === 'off') return { requests: [reset(system, 'On')], note: 'was off: powered on' };
      const t = firstAllowed(system, ['ForceRestart', 'PowerCycle']);
      if (!t) return { requests: [reset(system, 'ForceOff'), reset(system, 'On')] };
      return { requests: [reset(system, t)] };
    }
    case 'pxe': {
      const boot = (system.Boot ?? {}) as Json;
      const targets = boot['BootSourceOverrideTarget@Redfish.AllowableValues'];
      if (Array.isArray(targets) && !targets.includes('Pxe')) {
        throw new RedfishError(`the BMC does not offer boot override target Pxe (it allows ${targets.join(', ')})`, 'refused');
      }
      const headers: Record<string, string> = {};
      // Some BMCs refuse a PATCH without the resource's ETag (412 Precondition Failed).
      if (typeof system['@odata.etag'] === 'string') headers['If-Match'] = system['@odata.etag'];
      const override: Json = { BootSourceOverrideEnabled: 'Once', BootSourceOverrideTarget: 'Pxe' };
      // Some BMCs boot a UEFI machine in legacy mode unless told (BootSourceOverrideMode, schema v1.1+).
      if (opts.bootMode) override.BootSourceOverrideMode = opts.bootMode;
      return { requests: [{ method: 'PATCH', path: odataId(system), body: { Boot: override }, headers }] };
    }
  }
}

/** The Redfish error object (`error.message` and `@Message.ExtendedInfo[].Message`) in one line. */
export function errorText(status: number, body: string): string {
  let msg = '';
  try {
    const j = JSON.parse(body) as Json;
    const e = (j.error ?? {}) as Json;
    const ext = Array.isArray(e['@Message.ExtendedInfo']) ? (e['@Message.ExtendedInfo'] as Json[]).map((x) => x.Message).filter((m) => typeof m === 'string') : [];
    msg = [typeof e.message === 'string' ? e.message : '', ...(ext as string[])].filter(Boolean).join('; ');
  } catch {
    msg = body.trim().split('\n')[0]?.slice(0, 200) ?? '';
  }
  return `HTTP ${status}${msg ? `: ${msg}` : ''}`;
}

export interface RedfishTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  /** `session` (SessionService login, X-Auth-Token; the default) or `basic` (HTTP Basic on every request). */
  auth: 'session' | 'basic';
  tls: TlsPolicy;
  /** Path of the ComputerSystem, e.g. /redfish/v1/Systems/1; found from the Systems collection when unset. */
  system?: string;
  offType?: ResetType;
  /** BootSourceOverrideMode sent with the PXE override (attribute redfish_boot_mode). */
  bootMode?: 'UEFI' | 'Legacy';
  timeoutMs: number;
}

/** "host:port" as it appears in messages. */
export function bmcLabel(t: { host: string; port: number }): string {
  return t.port === 443 ? t.host : `${t.host}:${t.port}`;
}

/** A Redfish session with one BMC; `close()` logs out (deletes the session). */
export class RedfishClient {
  private token?: string;
  private session?: string;
  constructor(
    private readonly t: RedfishTarget,
    private readonly http: HttpsRequester,
  ) {}

  private async send(r: RedfishRequest): Promise<HttpsResponse> {
    const headers: Record<string, string> = { Accept: 'application/json', 'OData-Version': '4.0', ...r.headers };
    if (r.body) headers['Content-Type'] = 'application/json';
    if (this.t.auth === 'basic') headers.Authorization = `Basic ${Buffer.from(`${this.t.user}:${this.t.password}`).toString('base64')}`;
    else if (this.token) headers['X-Auth-Token'] = this.token;
    try {
      return await this.http({ method: r.method, host: this.t.host, port: this.t.port, path: r.path, headers, body: r.body ? JSON.stringify(r.body) : undefined, tls: this.t.tls, timeoutMs: this.t.timeoutMs });
    } catch (e) {
      throw transportError(e as NodeJS.ErrnoException, this.t);
    }
  }

  /** Send, and turn 401/403 and other failures into errors that say what to do. */
  async request(r: RedfishRequest): Promise<{ status: number; json: Json; headers: Record<string, string> }> {
    const res = await this.send(r);
    if (res.status === 401 || res.status === 403) {
      throw new RedfishError(`BMC ${bmcLabel(this.t)} refused user ${this.t.user} (${errorText(res.status, res.body)}): check bmc_user and the password in bmc_password_file`, 'auth');
    }
    if (res.status >= 400) throw new RedfishError(`BMC ${bmcLabel(this.t)}: ${r.method} ${r.path} failed: ${errorText(res.status, res.body)}`, 'refused');
    let json: Json = {};
    if (res.body.trim()) {
      try {
        json = JSON.parse(res.body) as Json;
      } catch {
        throw new RedfishError(`BMC ${bmcLabel(this.t)}: ${r.method} ${r.path} answered with something that is not JSON: is this a Redfish service (bmc_port)?`, 'protocol');
      }
    }
    return { status: res.status, json, headers: res.headers };
  }

  async login(): Promise<void> {
    if (this.t.auth !== 'session') return;
    const r = await this.request({ method: 'POST', path: '/redfish/v1/SessionService/Sessions', body: { UserName: this.t.user, Password: this.t.password } });
    const token = r.headers['x-auth-token'];
    if (!token) throw new RedfishError(`BMC ${bmcLabel(this.t)} created a session but sent no X-Auth-Token: try redfish_auth=basic`, 'protocol');
    this.token = token;
    this.session = sessionPath(r.headers.location, r.json);
  }

  async close(): Promise<void> {
    if (!this.session) return;
    const s = this.session;
    this.session = undefined;
    // Logging out frees one of the BMC's few session slots; a failure here changes nothing done.
    await this.send({ method: 'DELETE', path: s }).catch(() => undefined);
  }

  /** The ComputerSystem: the configured one, or the only member of /redfish/v1/Systems. */
  async system(): Promise<Json> {
    let path = this.t.system;
    if (!path) {
      const c = await this.request({ method: 'GET', path: '/redfish/v1/Systems' });
      path = pickSystem(c.json, bmcLabel(this.t));
    }
    return (await this.request({ method: 'GET', path })).json;
  }
}

/** Session resource path from the Location header (absolute URL or path) or the body's @odata.id. */
export function sessionPath(location: string | undefined, body: Json): string | undefined {
  if (location) {
    try {
      return new URL(location, 'https://bmc').pathname;
    } catch {
      /* fall through */
    }
  }
  return typeof body['@odata.id'] === 'string' ? body['@odata.id'] : undefined;
}

/** The one system of a Systems collection; several: the admin must say which (redfish_system). */
export function pickSystem(collection: Json, bmc: string): string {
  const members = Array.isArray(collection.Members) ? (collection.Members as Json[]).map((m) => m['@odata.id']).filter((x): x is string => typeof x === 'string') : [];
  if (members.length === 1) return members[0]!;
  if (members.length === 0) throw new RedfishError(`BMC ${bmc} lists no ComputerSystem under /redfish/v1/Systems: set redfish_system to its path`, 'protocol');
  throw new RedfishError(`BMC ${bmc} manages ${members.length} systems (${members.join(', ')}): set attr redfish_system to the one for this node`, 'refused');
}

function transportError(e: NodeJS.ErrnoException, t: RedfishTarget): RedfishError {
  const where = `BMC ${bmcLabel(t)}`;
  if (e instanceof TlsError) return new RedfishError(`${where}: ${e.message}`, 'tls');
  const code = e.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME|ALTNAME/.test(code) || /certificate/i.test(e.message)) {
    return new RedfishError(`${where}: TLS certificate not trusted (${code || e.message}): set bmc_ca_file to the CA that signed it, or bmc_fingerprint to its SHA-256 fingerprint (bmc_insecure=yes turns checking off)`, 'tls');
  }
  if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ECONNRESET/.test(code) || /no answer within/.test(e.message)) {
    return new RedfishError(`${where} did not answer (${code || e.message}): check bmc_host and bmc_port, and that the BMC's Redfish service is on`, 'unreachable');
  }
  return new RedfishError(`${where}: ${e.message}`, 'protocol');
}

/** Run one power action against a BMC: log in, read the system, send the plan, log out. */
export async function redfishAction(t: RedfishTarget, action: PowerAction, http: HttpsRequester): Promise<{ power: Power; output: string }> {
  const c = new RedfishClient(t, http);
  try {
    await c.login();
    const system = await c.system();
    const plan = planAction(action, system, { offType: t.offType, bootMode: t.bootMode });
    for (const r of plan.requests) await c.request(r);
    const power = powerOf(system);
    const id = typeof system.Id === 'string' ? system.Id : odataId(system);
    const done = plan.requests.map((r) => (r.body && 'ResetType' in r.body ? `Reset ${String(r.body.ResetType)}` : r.method === 'PATCH' ? 'boot override Pxe once' : `${r.method} ${r.path}`));
    const output = action === 'status' ? `PowerState ${String(system.PowerState ?? 'unknown')} (system ${id})` : `${[...done, plan.note].filter(Boolean).join(', ') || 'nothing to do'} (system ${id}, was ${String(system.PowerState ?? 'unknown')})`;
    return { power, output };
  } finally {
    await c.close();
  }
}
