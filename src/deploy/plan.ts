import { InvalidInput } from '../nodes/mac.js';
import type { Node } from '../nodes/types.js';
import { renderPlain, renderShell } from '../remote/template.js';
import type { SwitchKind } from './kinds.js';
import { resolveSwitch, type SwitchDef, type SwitchesFile } from './switches.js';

export interface Machine {
  mac: string;
  ip: string;
  name: string;
}

export interface SwitchPlan {
  switch: SwitchDef;
  kind: SwitchKind;
  ports: { node: string; port: string }[];
  /** Exactly what will be sent, in order. */
  commands: string[];
}

export interface DeployPlan {
  group: string;
  vlan: number;
  switches: SwitchPlan[];
  machines: Machine[];
  /** Group members left out of the switch configuration, with the reason. */
  skipped: { node: string; reason: string }[];
  headNode?: string;
}

export interface PlanInput {
  group: string;
  groupAttrs: Record<string, string>;
  /** Members of the group with their merged attributes. */
  members: { node: Node; attrs: Record<string, string> }[];
  switches: SwitchesFile;
  kinds: Record<string, SwitchKind>;
  switchesLabel?: string;
}

export function parseVlan(v: string | undefined, group: string): number {
  if (v === undefined || v === '') throw new InvalidInput(`group ${group} has no vlan attribute: pxeherd group set ${group} vlan <1-4094>`, 'vlan');
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 4094) throw new InvalidInput(`group ${group}: vlan must be 1-4094, not "${v}"`, 'vlan');
  return n;
}

/** Port names travel to switch consoles unquoted: keep them to what switches name ports with. */
const PORT_RE = /^[A-Za-z0-9][A-Za-z0-9/._:-]{0,63}$/;

/**
 * The switch configuration and machine list for a group (pure: no disk, no network), so
 * `--dry-run` prints exactly what a real deploy sends.
 */
export function planDeploy(p: PlanInput): DeployPlan {
  const vlan = parseVlan(p.groupAttrs.vlan, p.group);
  const bySwitch = new Map<string, SwitchPlan>();
  const skipped: DeployPlan['skipped'] = [];
  const taken = new Map<string, string>();
  const members = [...p.members].sort((a, b) => (a.node.name < b.node.name ? -1 : a.node.name > b.node.name ? 1 : 0));
  for (const { node, attrs } of members) {
    const sw = attrs.switch;
    const port = attrs.port;
    if (!sw) {
      skipped.push({ node: node.name, reason: 'no switch attribute' });
      continue;
    }
    if (!port) {
      skipped.push({ node: node.name, reason: `switch ${sw} but no port attribute` });
      continue;
    }
    if (!PORT_RE.test(port)) throw new InvalidInput(`node ${node.name}: port "${port}" is not a switch port name (letters, digits, / . _ : -)`, 'port');
    const where = `${sw} ${port}`;
    const other = taken.get(where);
    if (other) throw new InvalidInput(`nodes ${other} and ${node.name} both say they are on switch ${sw} port ${port}`, 'port');
    taken.set(where, node.name);
    let plan = bySwitch.get(sw);
    if (!plan) {
      const def = resolveSwitch(sw, p.switches, attrs, p.switchesLabel);
      const kind = p.kinds[def.kind];
      if (!kind) throw new InvalidInput(`switch ${sw}: unknown kind "${def.kind}" (known: ${Object.keys(p.kinds).sort().join(', ')})`, 'switch_kind');
      plan = { switch: def, kind, ports: [], commands: [] };
      bySwitch.set(sw, plan);
    }
    plan.ports.push({ node: node.name, port });
  }
  const switches = [...bySwitch.values()].sort((a, b) => (a.switch.name < b.switch.name ? -1 : 1));
  for (const s of switches) {
    const render = s.kind.mode === 'shell' ? renderPlain : renderShell;
    const base = { vlan: String(vlan), group: p.group, switch: s.switch.name };
    const what = `switch kind ${s.kind.name}`;
    s.commands.push(...s.kind.begin.map((c) => render(c, base, what)));
    for (const port of s.ports) {
      const m = members.find((x) => x.node.name === port.node)!.node;
      const vars = { ...base, port: port.port, node: m.name, mac: m.mac };
      s.commands.push(...s.kind.port.map((c) => render(c, vars, what)));
    }
    s.commands.push(...s.kind.end.map((c) => render(c, base, what)));
  }
  const machines = members.map(({ node }) => ({ mac: node.mac, ip: node.ip, name: node.name }));
  return { group: p.group, vlan, switches, machines, skipped, headNode: p.groupAttrs.head_node || undefined };
}

/** The head node's machine list: "MAC IP NAME" per line ('-' for no address), sorted by name. */
export function machinesText(plan: Pick<DeployPlan, 'group' | 'vlan' | 'machines'>): string {
  return (
    `# pxeherd machine list for group ${plan.group} (vlan ${plan.vlan}): MAC IP NAME\n` +
    plan.machines.map((m) => `${m.mac} ${m.ip || '-'} ${m.name}\n`).join('')
  );
}
