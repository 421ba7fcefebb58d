import fs from 'node:fs';
import path from 'node:path';
import type { BootEvent } from '../nodes/types.js';
import type { KeyPair } from '../remote/keys.js';
import { readSecret, Redactor } from '../remote/secrets.js';
import { describe, SshError, type SshRunner, type SshTarget } from '../remote/ssh.js';
import { shellQuote } from '../remote/template.js';
import { machinesText, type DeployPlan, type SwitchPlan } from './plan.js';

export interface DeployBackend {
  statedir: string;
  ssh: SshRunner;
  shell: SshRunner;
  key: () => KeyPair;
  record(ev: BootEvent): void;
  /** The head node's SSH target when it has ssh_host, else undefined (file only). */
  headTarget(): SshTarget | undefined;
}

export interface SwitchReport {
  switch: string;
  host: string;
  kind: string;
  ok: boolean;
  /** Commands that were sent and succeeded. */
  done: string[];
  failed?: { command: string; error: string };
}

export interface DeployReport {
  group: string;
  vlan: number;
  ok: boolean;
  switches: SwitchReport[];
  machinesFile?: string;
  head?: { node: string; path: string; ok: boolean; error?: string; skipped?: string };
  /** One line for the user when !ok: which switch and command failed. */
  error?: string;
}

export function machinesFilePath(statedir: string, group: string): string {
  return path.join(statedir, 'groups', group, 'machines.txt');
}

function switchTarget(s: SwitchPlan, b: DeployBackend, red: Redactor): SshTarget {
  const d = s.switch;
  const t: SshTarget = { host: d.host, port: d.sshPort, user: d.user };
  if (d.passwordFile) {
    t.password = readSecret(b.statedir, d.passwordFile, 'password_file');
    red.add(t.password);
    t.credential = `password from ${d.passwordFile}`;
  } else if (d.keyFile) {
    t.privateKey = readSecret(b.statedir, d.keyFile, 'key_file');
    red.add(String(t.privateKey));
    t.credential = `key ${d.keyFile}`;
  } else {
    const k = b.key();
    t.privateKey = k.privateKey;
    t.credential = `key ${k.privatePath}`;
  }
  return t;
}

/** In a console transcript, the last of our commands echoed before `errorAt`. */
function commandBefore(output: string, commands: string[], errorAt: number): string {
  let cursor = 0;
  let last = '(before the first command)';
  for (const c of commands) {
    const i = output.indexOf(c, cursor);
    if (i < 0 || i > errorAt) break;
    last = c;
    cursor = i + c.length;
  }
  return last;
}

async function applySwitch(s: SwitchPlan, plan: DeployPlan, b: DeployBackend, timeoutMs: number, say: (l: string) => void): Promise<SwitchReport> {
  const red = new Redactor();
  const rep: SwitchReport = { switch: s.switch.name, host: s.switch.host, kind: s.kind.name, ok: false, done: [] };
  const ev = (kind: string, detail: Record<string, unknown>) => b.record({ kind, detail: { group: plan.group, switch: s.switch.name, ...detail } });
  const fail = (command: string, error: string) => {
    rep.failed = { command, error: red.redact(error) };
    ev('deploy.fail', { command, error: rep.failed.error });
    say(`${s.switch.name}: FAILED: ${command}: ${rep.failed.error}`);
    return rep;
  };
  let t: SshTarget;
  try {
    t = switchTarget(s, b, red);
  } catch (e) {
    return fail('(login)', (e as Error).message);
  }
  say(`${s.switch.name}: ${describe(t)} (${s.kind.name}), ${s.commands.length} command(s)`);
  if (s.kind.mode === 'exec') {
    for (const command of s.commands) {
      try {
        const r = await b.ssh(t, command, { timeoutMs, maxOutput: 64 << 10 });
        ev('deploy.command', { command, exit: r.exit });
        if (r.exit !== 0) {
          const why = (r.stderr.trim() || r.stdout.trim()).split('\n').pop() ?? '';
          return fail(command, `exit code ${r.exit ?? 'none'}${why ? `: ${why}` : ''}`);
        }
        rep.done.push(command);
      } catch (e) {
        return fail(command, (e as Error).message);
      }
    }
  } else {
    let out: string;
    try {
      const r = await b.shell(t, s.commands.join('\n') + '\n', { timeoutMs, maxOutput: 1 << 20 });
      out = r.stdout + r.stderr;
    } catch (e) {
      return fail(s.commands[0] ?? '(session)', (e as Error).message);
    }
    const m = s.kind.error?.exec(out);
    const failedCmd = m ? commandBefore(out, s.commands, m.index) : undefined;
    for (const command of s.commands) {
      if (command === failedCmd) break;
      ev('deploy.command', { command, ok: true });
      rep.done.push(command);
    }
    if (m) return fail(failedCmd!, `switch said: ${m[0].trim()}`);
  }
  rep.ok = true;
  return rep;
}

/**
 * Configure the switches one after the other, stopping at the first failure (a half-applied
 * VLAN change on one switch is easier to reason about than on several), then write the
 * machine list and copy it to the head node. Events: deploy.start, deploy.command per
 * command sent, deploy.fail naming switch and command, deploy.end.
 */
export async function applyDeploy(plan: DeployPlan, b: DeployBackend, o: { timeoutMs: number; machinesPath: string; onProgress?: (l: string) => void }): Promise<DeployReport> {
  const say = o.onProgress ?? (() => {});
  const rep: DeployReport = { group: plan.group, vlan: plan.vlan, ok: true, switches: [] };
  b.record({ kind: 'deploy.start', detail: { group: plan.group, vlan: plan.vlan, switches: plan.switches.map((s) => s.switch.name), nodes: plan.machines.length } });
  for (const s of plan.switches) {
    const r = await applySwitch(s, plan, b, o.timeoutMs, say);
    rep.switches.push(r);
    if (!r.ok) {
      rep.ok = false;
      rep.error = `switch ${r.switch} (${r.host}): "${r.failed!.command}" failed: ${r.failed!.error}`;
      break;
    }
  }
  if (rep.ok) {
    const text = machinesText(plan);
    const file = machinesFilePath(b.statedir, plan.group);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
    rep.machinesFile = file;
    say(`machine list: ${file} (${plan.machines.length} node(s))`);
    if (plan.headNode) {
      const t = b.headTarget();
      if (!t) rep.head = { node: plan.headNode, path: o.machinesPath, ok: true, skipped: 'head node has no ssh_host: file written on the master only' };
      else {
        const dir = path.posix.dirname(o.machinesPath);
        const cmd = `mkdir -p ${shellQuote(dir)} && cat > ${shellQuote(o.machinesPath)}`;
        try {
          const r = await b.ssh(t, cmd, { timeoutMs: o.timeoutMs, stdin: text });
          if (r.exit !== 0) throw new SshError(`"${cmd}" exit code ${r.exit ?? 'none'}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n').pop()}` : ''}`, 'exec');
          rep.head = { node: plan.headNode, path: o.machinesPath, ok: true };
          b.record({ node: plan.headNode, kind: 'deploy.command', detail: { group: plan.group, head: plan.headNode, command: cmd, exit: 0 } });
          say(`machine list copied to ${plan.headNode}:${o.machinesPath}`);
        } catch (e) {
          const error = (e as Error).message;
          rep.head = { node: plan.headNode, path: o.machinesPath, ok: false, error };
          rep.ok = false;
          rep.error = `head node ${plan.headNode}: copying the machine list failed: ${error}`;
          b.record({ node: plan.headNode, kind: 'deploy.fail', detail: { group: plan.group, head: plan.headNode, command: cmd, error } });
        }
      }
    }
  }
  b.record({ kind: 'deploy.end', detail: { group: plan.group, vlan: plan.vlan, ok: rep.ok, error: rep.error ?? null } });
  return rep;
}
