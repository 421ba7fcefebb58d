import { InvalidInput } from '../nodes/mac.js';
import { readSecret } from '../remote/secrets.js';
import { renderArgv, renderShell } from '../remote/template.js';
import { parsePort } from '../remote/target.js';
import type { SshTarget } from '../remote/ssh.js';
import type { LocalResult } from './local.js';
import type { DriverCall, DriverResult, PowerAction, PowerDriver, PowerDriverName } from './types.js';

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

/**
 * `ipmi`: ipmitool with `ipmi_args` (default `-I lanplus -H {{bmc_host}} -p {{bmc_port}} -U
 * {{bmc_user}} -E`) followed by `power_<action>_cmd` (default `chassis power <action>`). The
 * password travels in IPMI_PASSWORD (-E), never on the command line where `ps` shows it.
 */
const ipmiDriver: PowerDriver = async (c) => {
  bmcHost(c);
  const pw = password(c);
  if (pw === undefined) throw new InvalidInput(`node ${c.node.name}: power=ipmi needs attr bmc_password_file (a file in <statedir>/secrets/)`, 'bmc_password_file');
  const vars = { ...c.vars, bmc_port: c.attrs.bmc_port || '623' };
  const argv = [
    c.attrs.ipmitool || 'ipmitool',
    ...renderArgv(c.attrs.ipmi_args ?? '-I lanplus -H {{bmc_host}} -p {{bmc_port}} -U {{bmc_user}} -E', vars, 'ipmi_args'),
    ...renderArgv(c.attrs[cmdAttr(c.action)] ?? `chassis power ${c.action}`, vars, cmdAttr(c.action)),
  ];
  const r = await c.local(argv, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', IPMI_PASSWORD: pw }, timeoutMs: c.timeoutMs });
  const output = (r.stdout + r.stderr).trim();
  const err = localFailure(r, 'ipmitool', c.timeoutMs);
  return err ? { ok: false, output, error: err } : { ok: true, output };
};

/**
 * `command`: a local program from `power_<action>_cmd`, split into words and run without a
 * shell. It gets PXEHERD_NODE, PXEHERD_MAC, PXEHERD_ACTION, and PXEHERD_BMC_PASSWORD when
 * bmc_password_file is set.
 */
const commandDriver: PowerDriver = async (c) => {
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

export const DRIVERS: Record<PowerDriverName, PowerDriver> = { ssh: sshDriver, ipmi: ipmiDriver, command: commandDriver };

/** "Chassis Power is on" -> on. The last on/off word wins ("was off, now on"). */
export function parsePowerState(output: string): 'on' | 'off' | 'unknown' {
  const m = [...output.toLowerCase().matchAll(/\b(on|off)\b/g)];
  return m.length ? (m[m.length - 1]![1] as 'on' | 'off') : 'unknown';
}

export type { DriverResult };
