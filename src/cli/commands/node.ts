import fs from 'node:fs';
import { json } from '../options.js';
import { Command } from 'commander';
import type { CliContext } from '../context.js';
import { table, ago } from '../context.js';
import { nodeJson } from '../../nodes/json.js';
import { shownValue } from '../../security/secrets.js';
import { InvalidInput } from '../../nodes/mac.js';
import type { Node } from '../../nodes/types.js';
import { formatFromName, type NodeFormat } from '../../nodes/io.js';
import { NODE_FIELDS } from '../../store/nodes.js';
import type { CommandFactory, Run } from '../main.js';
import { nodeExtras } from '../../inventory/context.js';
import { isStale } from '../../inventory/inventory.js';

function parseKv(list: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new InvalidInput(`--set takes KEY=VALUE, not "${kv}"`, 'set');
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

type Extras = ReturnType<typeof nodeExtras>;

/** "5m ago", or "2h ago (stale)" when the node missed three check-ins. */
function contact(n: Node, x: Extras): string {
  return ago(n.lastContact) + (x.stale ? ' (stale)' : '');
}

function nodeTable(nodes: Node[], extras: Extras[]): string {
  if (nodes.length === 0) return 'no nodes\n';
  return table(
    ['NAME', 'MAC', 'GROUP', 'VNFS', 'STATE', 'IP', 'LAST CONTACT', 'BOOT', 'ENABLED'],
    nodes.map((n, i) => [n.name, n.mac, n.group || '-', n.vnfs || '-', n.state || '-', n.ip || '-', contact(n, extras[i]!), n.boot, n.enabled ? 'yes' : 'no']),
  );
}

const gb = (bytes: number) => `${Math.round(bytes / 1e8) / 10} GB`;

/** The hardware and health part of `node show`. */
function hardwareDetail(x: Extras): string[] {
  const lines: string[] = [];
  if ('health' in x && x.health) {
    const h = x.health;
    lines.push(`health:       uptime ${h.uptime ?? '-'} s, load ${h.load ?? '-'}, free memory ${h.memfree_kb ?? '-'} kB (${h.time})`);
  }
  if (!('hardware' in x)) return lines;
  const hw = x.hardware;
  if (!hw) {
    lines.push('hardware:     not reported yet (the stage-one image reports it at discovery)');
    return lines;
  }
  const r = hw.report;
  const f = hw.facts;
  lines.push(`hardware:     version ${hw.version}, reported ${hw.reported}${hw.previous ? ` (previous: version ${hw.previous.version}, ${hw.previous.reported})` : ''}`);
  lines.push(`  cpu:        ${r.cpu.count} x ${r.cpu.model || '?'}`);
  lines.push(`  memory:     ${f.mem_gb} GiB`);
  lines.push(`  firmware:   ${r.firmware}`);
  if (r.dmi.vendor || r.dmi.product) lines.push(`  system:     ${[r.dmi.vendor, r.dmi.product].filter(Boolean).join(' ')}${r.dmi.serial ? `, serial ${r.dmi.serial}` : ''}${r.dmi.uuid ? `, uuid ${r.dmi.uuid}` : ''}`);
  for (const d of r.disks) lines.push(`  disk:       ${d.name} ${gb(d.size_bytes)}${d.model ? ` ${d.model}` : ''}${d.serial ? ` (serial ${d.serial})` : ''}`);
  for (const n of r.nics) lines.push(`  nic:        ${n.name} ${n.mac}${n.driver ? ` ${n.driver}` : ''}${n.speed_mbps ? ` ${n.speed_mbps} Mb/s` : ''}`);
  return lines;
}

function nodeDetail(n: Node, x: Extras): string {
  const lines = [
    `name:         ${n.name}`,
    `mac:          ${n.mac}`,
    `group:        ${n.group || '-'}`,
    `vnfs:         ${n.vnfs || '-'}`,
    `enabled:      ${n.enabled ? 'yes' : 'no'}`,
    `debug:        ${n.debug ? 'yes' : 'no'}`,
    `boot:         ${n.boot}`,
    `state:        ${n.state || '-'}`,
    `ip:           ${n.ip || '-'}`,
    `last contact: ${n.lastContact === null ? 'never' : `${new Date(n.lastContact).toISOString()} (${ago(n.lastContact)})`}${x.stale ? ' STALE: missed three check-ins' : ''}`,
    ...hardwareDetail(x),
    ...('rootPassword' in x ? [`root password: ${x.rootPassword === 'set' ? 'set (the hash is hidden)' : 'unset'}`] : []),
  ];
  const keys = Object.keys(n.attrs).sort();
  if (keys.length) {
    lines.push('attributes:');
    for (const k of keys) lines.push(`  ${k} = ${shownValue(k, n.attrs[k]!)}`);
  }
  return lines.join('\n') + '\n';
}

function format(opt: string | undefined, file: string): NodeFormat {
  const f = (opt as NodeFormat | undefined) ?? formatFromName(file);
  if (!f) throw new InvalidInput(`cannot tell the format of "${file}" from its name: use --format csv|json|ethers`, 'format');
  return f;
}

/**
 * The node subcommands defined in modules of their own (power and SSH, disk installs, the
 * timeline: some 30 modules). main.ts loads them only when the command line does not name one
 * of nodeCommand's own subcommands, so `pxeherd node list` starts without them.
 */
export async function loadNodeExtras(): Promise<CommandFactory[]> {
  const [remote, install, timeline] = await Promise.all([import('./remote.js'), import('./install.js'), import('./timeline.js')]);
  return [remote.nodeReinstallCommand, remote.nodeLocateCommand, install.nodePlanCommand, install.nodeReleaseCommand, timeline.nodeTimelineCommand, remote.nodeRollbackCommand];
}

/** `extras`: loadNodeExtras' subcommands (absent: only the ones defined here). */
export function nodeCommand(run: Run, extras: CommandFactory[] = []): Command {
  const node = new Command('node').description('register, list and change nodes');
  
  node
    .command('add')
    .description('register a node by MAC (name from the naming pattern unless given)')
    .argument('<MAC>', 'aa:bb:cc:dd:ee:ff, AA-BB-..., aabb.ccdd.eeff')
    .argument('[NAME]', 'node name (default: next free name of nodes.name_pattern)')
    .option('--group <G>', 'group (default: nodes.default_group)')
    .option('--vnfs <V>', 'VNFS (default: nodes.default_vnfs)')
    .option('--ip <IP>', 'fixed IPv4 address (DHCP reservation)')
    .option('--boot <MODE>', 'provision | local | once | disabled')
    .option('--set <KEY=VALUE>', 'attribute (repeatable)', collect)
    .addOption(json())
    .action(
      run((ctx, mac: string, name: string | undefined, o: { group?: string; vnfs?: string; ip?: string; boot?: string; set?: string[] }) => {
        const n = ctx.nodes.add({ mac, name, group: o.group, vnfs: o.vnfs, ip: o.ip, boot: o.boot as never, attrs: parseKv(o.set) });
        ctx.print(nodeJson(n), () => `added ${n.name} (${n.mac})`);
      }),
    );

  for (const [cmd, desc] of [
    ['list', 'list nodes (all, or those matching NODES)'],
    ['status', 'state and last contact of nodes'],
  ] as const) {
    node
      .command(cmd)
      .description(desc)
      .argument('[NODES...]', 'names, globs (n00*), ranges (n00[00-15]) or a query (group:compute and not state:ready)')
      .addOption(json())
      .action(
        run((ctx, args: string[]) => {
          // A table shows no attributes: read only the one the stale flag needs.
          const nodes = ctx.nodes.list(args, ctx.opts.json ? {} : { attrKeys: ['checkin_interval'] });
          const now = Date.now();
          // nodeExtras' stale flag, with each group's attributes read once, not once per node.
          const groupAttrs = new Map<string, Record<string, string>>();
          const ofGroup = (g: string) => groupAttrs.get(g) ?? groupAttrs.set(g, ctx.store.groups.attrsOf(g)).get(g)!;
          const extras: Extras[] = nodes.map((n) => ({ stale: isStale(n.lastContact, { ...ofGroup(n.group), ...n.attrs }, now) }));
          // The JSON shape only for --json: a table of 8 000 nodes should not build it too.
          ctx.print(ctx.opts.json ? { nodes: nodes.map((n, i) => nodeJson(n, extras[i])) } : undefined, () =>
            cmd === 'status'
              ? nodes.length === 0
                ? 'no nodes\n'
                : table(
                    ['NAME', 'STATE', 'IP', 'LAST CONTACT', 'BOOT'],
                    nodes.map((n, i) => [n.name, n.state || '-', n.ip || '-', contact(n, extras[i]!), n.boot]),
                  )
              : nodeTable(nodes, extras),
          );
        }),
      );
  }

  node
    .command('show')
    .description('everything known about nodes')
    .argument('<NODES...>', 'names, MACs, globs, ranges or a query')
    .addOption(json())
    .action(
      run((ctx, args: string[]) => {
        const nodes = ctx.nodes.select(args, { requireAll: true });
        const now = Date.now();
        const extras = nodes.map((n) => nodeExtras(ctx.store, n, { detail: true, now }));
        ctx.print({ nodes: nodes.map((n, i) => nodeJson(n, extras[i])) }, () => (nodes.length ? nodes.map((n, i) => nodeDetail(n, extras[i]!)).join('\n') : 'no nodes\n'));
      }),
    );

  node
    .command('set')
    .description(`change a field or attribute of nodes (Perceus order: KEY VALUE NODES; KEY=VALUE NODES also works). Fields: ${NODE_FIELDS.join(', ')}; attributes: attr.KEY (empty value removes it)`)
    .argument('<KEY>', 'field, attr.KEY, or KEY=VALUE')
    .argument('[VALUE_AND_NODES...]', 'value followed by NODES')
    .addOption(json())
    .action(
      run((ctx, key: string, rest: string[]) => {
        let value: string;
        let targets: string[];
        const eq = key.indexOf('=');
        if (eq > 0) {
          value = key.slice(eq + 1);
          key = key.slice(0, eq);
          targets = rest;
        } else {
          if (rest.length === 0) throw new InvalidInput(`node set ${key}: missing VALUE and NODES`, 'value');
          value = rest[0]!;
          targets = rest.slice(1);
        }
        if (targets.length === 0) throw new InvalidInput(`node set ${key}: name the nodes to change`, 'nodes');
        const nodes = ctx.nodes.set(key, value, targets);
        ctx.print({ nodes: nodes.map((n) => nodeJson(n)) }, () => `set ${key}=${shownValue(key, value)} on ${nodes.length} node(s): ${nodes.map((n) => n.name).join(' ')}`);
      }),
    );

  node
    .command('delete')
    .description('remove nodes from the database')
    .argument('<NODES...>')
    .addOption(json())
    .action(
      run((ctx, args: string[]) => {
        const nodes = ctx.nodes.delete(args);
        ctx.print({ deleted: nodes.map((n) => n.name) }, () => `deleted ${nodes.length} node(s)${nodes.length ? ': ' + nodes.map((n) => n.name).join(' ') : ''}`);
      }),
    );

  for (const [cmd, value] of [
    ['enable', 'yes'],
    ['disable', 'no'],
  ] as const) {
    node
      .command(cmd)
      .description(`${cmd} nodes (a disabled node is refused provisioning)`)
      .argument('<NODES...>')
      .addOption(json())
      .action(
        run((ctx, args: string[]) => {
          const nodes = ctx.nodes.set('enabled', value, args);
          ctx.print({ nodes: nodes.map((n) => nodeJson(n)) }, () => `${cmd}d ${nodes.length} node(s): ${nodes.map((n) => n.name).join(' ')}`);
        }),
      );
  }

  node
    .command('replace')
    .description('new hardware for a node: keep name, group, VNFS and attributes, take the new MAC')
    .argument('<OLD-NODE>', 'node name or MAC')
    .argument('<NEW-MAC>')
    .addOption(json())
    .action(
      run((ctx, old: string, mac: string) => {
        const n = ctx.nodes.replace(old, mac);
        ctx.print(nodeJson(n), () => `${n.name} now has MAC ${n.mac}`);
      }),
    );

  node
    .command('import')
    .description('add nodes from a CSV (header: mac,name,group,vnfs,ip,enabled,debug,boot,attr.KEY...), JSON or ethers file; all or nothing')
    .argument('<FILE>', "file, or - for standard input (then --format is required)")
    .option('--format <F>', 'csv | json | ethers (default: from the file name)')
    .addOption(json())
    .action(
      run((ctx, file: string, o: { format?: string }) => {
        const f = format(o.format, file === '-' ? '' : file);
        if (!['csv', 'json', 'ethers'].includes(f)) throw new InvalidInput(`--format must be csv, json or ethers, not "${f}"`, 'format');
        let text: string;
        try {
          text = ctx.readInput(file);
        } catch (e) {
          throw new InvalidInput(`cannot read ${file}: ${(e as Error).message}`, 'file');
        }
        const nodes = ctx.nodes.importText(text, f);
        ctx.print({ imported: nodes.length, nodes: nodes.map((n) => n.name) }, () => `imported ${nodes.length} node(s)`);
      }),
    );

  node
    .command('export')
    .description('write nodes to a CSV, JSON or ethers file')
    .argument('<FILE>', 'file, or - for standard output (then --format is required)')
    .argument('[NODES...]', 'which nodes (default: all)')
    .option('--format <F>', 'csv | json | ethers (default: from the file name)')
    .action(
      run((ctx, file: string, args: string[], o: { format?: string }) => {
        const f = format(o.format, file === '-' ? '' : file);
        if (!['csv', 'json', 'ethers'].includes(f)) throw new InvalidInput(`--format must be csv, json or ethers, not "${f}"`, 'format');
        const text = ctx.nodes.exportText(args, f);
        if (file === '-') ctx.io.out(text);
        else {
          const tmp = `${file}.tmp-${process.pid}`;
          fs.writeFileSync(tmp, text);
          fs.renameSync(tmp, file);
          ctx.io.err(`exported to ${file}\n`);
        }
      }),
    );

  for (const extra of extras) node.addCommand(extra(run));
  return node;
}
