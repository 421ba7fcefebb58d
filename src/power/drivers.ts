import { InvalidInput } from '../nodes/mac.js';
import { readSecret } from '../remote/secrets.js';
import { renderArgv, renderShell } from '../remote/template.js';
import { parsePort } from '../remote/target.js';
import type { SshTarget } from '../remote/ssh.js';
import type { LocalResult } from './local.js';
import type { DriverCall, DriverResult, PowerAction, PowerDriver, PowerDriverName } from './types.js';
import { normalizeFingerprint, type TlsPolicy } from './https.js';
import { RedfishError, redfishAction, type RedfishTarget } from './redfish.js';

/** The attribute holding an action's command template. */
export function cmdAttr(action: PowerAction): string {
  return `power_${action}_cmd`;
}

function bmcHost(c: DriverCall): string {
  const h = c.attrs.bmc_host;
  if (!h) throw new InvalidInput(`node ${c.node.name}: power=${c.attrs.power} needs attr bmc_host`, 'bmc_host');
  return h;
}

function password(c: DriverCall): string | undefined {
  const f = c.attrs.bmc_password_file;
  if (!f) return undefined;
  const p = readSecret(c.statedir, f, 'bmc_password_file');
  c.redactor.add(p);
  return p;
}

/** ssh and command drivers know no boot device unless told how (power_pxe_cmd). */
function noPxe(c: DriverCall): DriverResult {
  return { ok: true, skipped: true, output: `power=${c.attrs.power} has no power_pxe_cmd: the next boot device is left to the firmware's boot order` };
}

function localFailure(r: LocalResult, what: string, timeoutMs: number): string | undefined {
  if (r.spawnError) return `${what}: cannot run ${r.spawnError}`;
  if (r.timedOut) return `${what}: timed out after ${timeoutMs / 1000} s`;
  if (r.signal) return `${what}: killed by ${r.signal}`;
  if (r.exit !== 0) {
    const why = (r.stderr.trim() || r.stdout.trim()).split('\n').pop() ?? '';
    return `${what}: exit code ${r.exit}${why ? `: ${why}` : ''}`;
  }
  return undefined;
}

/**
 * `ssh`: log in to a BMC or PDU and run `power_<action>_cmd` there (default
 * `power {{action}}`). Credential: bmc_password_file, else bmc_key_file, else the pxeherd key
 * (both files inside <statedir>/secrets/ or <statedir>/ssh/).
 */
const sshDriver: PowerDriver = async (c) => {
  const host = bmcHost(c);
  if (c.action === 'pxe' && !c.attrs[cmdAttr('pxe')]) return noPxe(c);
  const command = renderShell(c.attrs[cmdAttr(c.action)] ?? 'power {{action}}', c.vars, cmdAttr(c.action));
  const pw = password(c);
  const t: SshTarget = { host, port: parsePort(c.attrs.bmc_port, 'bmc_port', 22), user: c.attrs.bmc_user || 'root' };
  if (pw !== undefined) {
    t.password = pw;
    t.credential = `password from bmc_password_file ${c.attrs.bmc_password_file}`;
  } else if (c.attrs.bmc_key_file) {
    t.privateKey = readSecret(c.statedir, c.attrs.bmc_key_file, 'bmc_key_file');
    c.redactor.add(String(t.privateKey));
    t.credential = `key ${c.attrs.bmc_key_file}`;
  } else {
    const k = c.key();
    t.privateKey = k.privateKey;
    t.credential = `key ${k.privatePath}`;
  }
  const r = await c.ssh(t, command, { timeoutMs: c.timeoutMs, maxOutput: 64 << 10 });
  const output = (r.stdout + r.stderr).trim();
  if (r.exit === 0) return { ok: true, output };
  const why = (r.stderr.trim() || r.stdout.trim()).split('\n').pop() ?? '';
  return { ok: false, output, error: `"${command}" on ${host} ${r.exit === null ? `ended without a status${r.signal ? ` (${r.signal})` : ''}` : `exit code ${r.exit}`}${why ? `: ${why}` : ''}` };
};

/** The ipmitool argv for a call (pure): connection arguments, then the action's command. */
export function ipmiArgv(c: Pick<DriverCall, 'attrs' | 'vars' | 'action'>): string[] {
  const vars = { ...c.vars, bmc_port: c.attrs.bmc_port || '623' };
  const conn = renderArgv(c.attrs.ipmi_args ?? '-I lanplus -H {{bmc_host}} -p {{bmc_port}} -U {{bmc_user}} -E', vars, 'ipmi_args');
  const cipher = c.attrs.ipmi_cipher;
  if (cipher !== undefined && cipher !== '') {
    if (!/^\d{1,2}$/.test(cipher)) throw new InvalidInput(`ipmi_cipher must be a cipher suite number such as 3 or 17, not "${cipher}"`, 'ipmi_cipher');
    conn.push('-C', cipher);
  }
  // -v puts the reason of a failed login (RAKP errors) on stderr; stdout is unchanged.
  return [c.attrs.ipmitool || 'ipmitool', ...conn, '-v', ...renderArgv(c.attrs[cmdAttr(c.action)] ?? IPMI_COMMANDS[c.action], vars, cmdAttr(c.action))];
}

const IPMI_COMMANDS: Record<PowerAction, string> = {
  on: 'chassis power on',
  off: 'chassis power off',
  cycle: 'chassis power cycle',
  status: 'chassis power status',
  // IPMI boot flags without options=persistent apply to the next boot only.
  pxe: 'chassis bootdev pxe',
};

/**
 * What went wrong with an ipmitool run, in words that say what to do (pure). Login failures
 * are told apart from a BMC that does not answer by the RAKP messages ipmitool -v prints.
 */
export function ipmiFailure(r: LocalResult, o: { host: string; port: string; user: string; passwordFile: string; timeoutMs: number }): string | undefined {
  const bmc = `BMC ${o.host}:${o.port}`;
  if (r.spawnError) return `ipmitool: cannot run ${r.spawnError} (apt-get install ipmitool)`;
  if (r.timedOut) return `${bmc} did not answer within ${o.timeoutMs / 1000} s: check bmc_host and bmc_port, that the BMC is reachable from this server and that IPMI over LAN is enabled on it`;
  if (r.exit === 0 && !r.signal) return undefined;
  if (r.signal) return `ipmitool killed by ${r.signal}`;
  const err = r.stderr;
  const auth = err.match(/RAKP \d HMAC is invalid|unauthorized name|invalid (user ?name|password)|Authentication type .* not supported|insufficient privilege|Invalid session|Activate Session error/i);
  if (auth) {
    const what = /unauthorized name|invalid user/i.test(auth[0]) ? `no user "${o.user}" on it` : /privilege/i.test(auth[0]) ? `user "${o.user}" lacks the privilege` : 'wrong password';
    return `${bmc} refused the login for user ${o.user} (${what}: ipmitool says "${auth[0]}"): check bmc_user and the password in <statedir>/secrets/${o.passwordFile}`;
  }
  if (/Unable to establish IPMI v2|No response|Get Auth Capabilities error|Get Session Challenge command failed|timeout/i.test(err)) {
    return `${bmc} did not answer (ipmitool: ${lastLine(err)}): check bmc_host and bmc_port, that the BMC is reachable and IPMI over LAN is enabled (ipmi_cipher selects the cipher suite)`;
  }
  const why = lastLine(err) || lastLine(r.stdout);
  return `ipmitool: exit code ${r.exit}${why ? `: ${why}` : ''}`;
}

const CHATTER = /^(Loading IANA PEN Registry|Running Get VSO Capabilities|Discovered IPMB address|Invalid completion code received: Invalid command)/;

function withoutChatter(text: string): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !CHATTER.test(l)).join('\n');
}

/** The last line that is not ipmitool -v chatter. */
function lastLine(text: string): string {
  return withoutChatter(text).split('\n').pop() ?? '';
}

/**
 * `ipmi`: ipmitool with `ipmi_args` (default `-I lanplus -H {{bmc_host}} -p {{bmc_port}} -U
 * {{bmc_user}} -E`, plus `-C {{ipmi_cipher}}` when set) followed by `power_<action>_cmd`
 * (default `chassis power <action>`, `chassis bootdev pxe` for pxe). The password travels in
 * IPMI_PASSWORD (-E), never on the command line where `ps` shows it.
 */
const ipmiDriver: PowerDriver = async (c) => {
  const host = bmcHost(c);
  const pw = password(c);
  if (pw === undefined) throw new InvalidInput(`node ${c.node.name}: power=ipmi needs attr bmc_password_file (a file in <statedir>/secrets/)`, 'bmc_password_file');
  const argv = ipmiArgv(c);
  const r = await c.local(argv, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', IPMI_PASSWORD: pw }, timeoutMs: c.timeoutMs });
  const err = ipmiFailure(r, { host, port: c.attrs.bmc_port || '623', user: c.vars.bmc_user ?? 'root', passwordFile: c.attrs.bmc_password_file ?? '', timeoutMs: c.timeoutMs });
  // stderr carries -v chatter: what the BMC said is on stdout.
  const output = err ? withoutChatter(r.stdout + '\n' + r.stderr) : r.stdout.trim();
  return err ? { ok: false, output, error: err } : { ok: true, output };
};

/**
 * `redfish`: DMTF Redfish over HTTPS (src/power/redfish.ts). Attributes: bmc_host, bmc_port
 * (443), bmc_user, bmc_password_file, redfish_auth (session|basic), redfish_system (path of
 * the ComputerSystem when the BMC has several), redfish_off (ForceOff|GracefulShutdown),
 * redfish_boot_mode (UEFI|Legacy, sent with the PXE override), and
 * for TLS bmc_ca_file (PEM in <statedir>/secrets/) or bmc_fingerprint (SHA-256 of the BMC's
 * certificate); bmc_insecure=yes turns certificate checks off.
 */
const redfishDriver: PowerDriver = async (c) => {
  const t = redfishTarget(c);
  try {
    const r = await redfishAction(t, c.action, c.https);
    return { ok: true, output: r.output, power: c.action === 'status' ? r.power : undefined };
  } catch (e) {
    if (e instanceof RedfishError) return { ok: false, output: '', error: e.message };
    throw e;
  }
};

/** The redfish target from a node's attributes (pure apart from reading the secret files). */
export function redfishTarget(c: Pick<DriverCall, 'attrs' | 'node' | 'statedir' | 'redactor' | 'timeoutMs' | 'vars'>): RedfishTarget {
  const host = bmcHost(c as DriverCall);
  const pw = password(c as DriverCall);
  if (pw === undefined) throw new InvalidInput(`node ${c.node.name}: power=redfish needs attr bmc_password_file (a file in <statedir>/secrets/)`, 'bmc_password_file');
  const a = c.attrs;
  const auth = a.redfish_auth || 'session';
  if (auth !== 'session' && auth !== 'basic') throw new InvalidInput(`redfish_auth must be session or basic, not "${auth}"`, 'redfish_auth');
  const offType = a.redfish_off || 'ForceOff';
  if (offType !== 'ForceOff' && offType !== 'GracefulShutdown') throw new InvalidInput(`redfish_off must be ForceOff or GracefulShutdown, not "${offType}"`, 'redfish_off');
  if (a.redfish_system !== undefined && a.redfish_system !== '' && !/^\/redfish\/v1\/Systems\/[^/?#\s]+$/.test(a.redfish_system)) {
    throw new InvalidInput(`redfish_system must be a path like /redfish/v1/Systems/1, not "${a.redfish_system}"`, 'redfish_system');
  }
  const bootMode = a.redfish_boot_mode || undefined;
  if (bootMode !== undefined && bootMode !== 'UEFI' && bootMode !== 'Legacy') throw new InvalidInput(`redfish_boot_mode must be UEFI or Legacy, not "${bootMode}"`, 'redfish_boot_mode');
  const tls: TlsPolicy = {};
  const insecure = (a.bmc_insecure ?? '').toLowerCase();
  if (insecure && !['yes', 'no', 'true', 'false', '1', '0'].includes(insecure)) throw new InvalidInput(`bmc_insecure must be yes or no, not "${a.bmc_insecure}"`, 'bmc_insecure');
  if (['yes', 'true', '1'].includes(insecure)) tls.insecure = true;
  if (a.bmc_fingerprint) {
    const fp = normalizeFingerprint(a.bmc_fingerprint);
    if (!fp) throw new InvalidInput(`bmc_fingerprint must be the certificate's SHA-256 fingerprint (64 hex digits, colons allowed; openssl x509 -noout -fingerprint -sha256), not "${a.bmc_fingerprint}"`, 'bmc_fingerprint');
    tls.fingerprint = fp;
  }
  if (a.bmc_ca_file) tls.ca = readSecret(c.statedir, a.bmc_ca_file, 'bmc_ca_file');
  return {
    host,
    port: parsePort(a.bmc_port, 'bmc_port', 443),
    user: c.vars.bmc_user || 'root',
    password: pw,
    auth,
    tls,
    system: a.redfish_system || undefined,
    offType,
    bootMode,
    timeoutMs: c.timeoutMs,
  };
}

/**
 * `command`: a local program from `power_<action>_cmd`, split into words and run without a
 * shell. It gets PXEHERD_NODE, PXEHERD_MAC, PXEHERD_ACTION, and PXEHERD_BMC_PASSWORD when
 * bmc_password_file is set.
 */
const commandDriver: PowerDriver = async (c) => {
  if (c.action === 'pxe' && !c.attrs[cmdAttr('pxe')]) return noPxe(c);
  const tpl = c.attrs[cmdAttr(c.action)];
  if (!tpl) throw new InvalidInput(`node ${c.node.name}: power=command needs attr ${cmdAttr(c.action)}`, cmdAttr(c.action));
  const argv = renderArgv(tpl, c.vars, cmdAttr(c.action));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    PXEHERD_NODE: c.node.name,
    PXEHERD_MAC: c.node.mac,
    PXEHERD_ACTION: c.action,
  };
  const pw = password(c);
  if (pw !== undefined) env.PXEHERD_BMC_PASSWORD = pw;
  const r = await c.local(argv, { env, timeoutMs: c.timeoutMs });
  const output = (r.stdout + r.stderr).trim();
  const err = localFailure(r, argv[0]!, c.timeoutMs);
  return err ? { ok: false, output, error: err } : { ok: true, output };
};

export const DRIVERS: Record<PowerDriverName, PowerDriver> = { ssh: sshDriver, ipmi: ipmiDriver, command: commandDriver, redfish: redfishDriver };

/** "Chassis Power is on" -> on. The last on/off word wins ("was off, now on"). */
export function parsePowerState(output: string): 'on' | 'off' | 'unknown' {
  const m = [...output.toLowerCase().matchAll(/\b(on|off)\b/g)];
  return m.length ? (m[m.length - 1]![1] as 'on' | 'off') : 'unknown';
}

export type { DriverResult };
