import { Command, Option } from 'commander';
import type { CliContext } from '../context.js';
import { afterDashDash, RuntimeFailure, table } from '../context.js';
import type { Run } from '../main.js';
import { InvalidInput } from '../../nodes/mac.js';
import { NotFound } from '../../nodes/select.js';
import type { Node } from '../../nodes/types.js';
import { ensureKey, type KeyPair } from '../../remote/keys.js';
import { LineSplitter, mapLimit } from '../../remote/fanout.js';
import { sshRun, sshShell } from '../../remote/ssh.js';
import { nodeTarget } from '../../remote/target.js';
import { PowerService } from '../../power/service.js';
import { POWER_ACTIONS, type PowerAction, type PowerOutcome } from '../../power/types.js';
import { reinstall, type NodeOutcome, type ReinstallBackend, type ReinstallOptions } from '../../lifecycle/reinstall.js';
import { storeReinstallBackend } from '../../lifecycle/backend.js';
import { reinstallOnPostgres } from './reinstall-pg.js';
import { pinInStore, pinOf, planRollbacks, rollbackNodes, storeRollbackLookups } from '../../install/rollback.js';
import { loadKinds } from '../../deploy/kinds.js';
import { loadSwitches, resolveSwitch, switchesPath } from '../../deploy/switches.js';
import { machinesFilePath, applyDeploy } from '../../deploy/apply.js';
import { machinesText, planDeploy } from '../../deploy/plan.js';
import { json, positiveInt, seconds } from '../options.js';


/** One key per command run; generated on first use. */
function keyLoader(ctx: CliContext): () => KeyPair {
  let k: KeyPair | undefined;
  return () => (k ??= ensureKey(ctx.config.statedir));
}

function powerService(ctx: CliContext, timeoutS: number, key: () => KeyPair): PowerService {
  return new PowerService({
    statedir: ctx.config.statedir,
    backend: { attrsFor: (n) => ctx.store.attrsFor(n), events: ctx.store.events },
    timeoutMs: timeoutS * 1000,
    key,
  });
}

function selectAll(ctx: CliContext, args: string[]): Node[] {
  const nodes = ctx.nodes.select(args, { requireAll: true });
  if (nodes.length === 0) throw new NotFound(`no node matches "${args.join(' ')}"`);
  return nodes;
}

function powerLine(r: PowerOutcome): string {
  if (!r.ok) return `${r.node}: FAILED: ${r.error ?? 'unknown error'}`;
  if (r.action === 'status') return `${r.node}: ${r.power ?? 'unknown'}${r.power === 'unknown' && r.output ? ` (${r.output.split('\n')[0]})` : ''}`;
  if (r.skipped) return `${r.node}: ${r.action} skipped: ${r.output}`;
  if (r.action === 'pxe') return `${r.node}: next boot from the network (once)`;
  return `${r.node}: ${r.action} ok`;
}

/** `pxeherd power on|off|cycle|status <NODES...>` */
export function powerCommand(run: Run): Command {
  const power = new Command('power').description('power nodes on, off, cycle them, ask their state, or make their next boot a network boot (driver from attribute power: ssh, ipmi, command, redfish)');
  for (const action of POWER_ACTIONS) {
    power
      .command(action)
      .description(action === 'status' ? 'ask the BMC/PDU whether nodes are on' : action === 'pxe' ? 'set the next boot (once) to the network: ipmitool chassis bootdev pxe, Redfish boot override Pxe Once' : `power ${action} nodes`)
      .argument('<NODES...>', 'names, globs, ranges or a query')
      .addOption(new Option('--parallel <N>', 'nodes handled at once').default(32).argParser(positiveInt('--parallel')))
      .addOption(new Option('--timeout <S>', 'seconds per node').default(30).argParser(seconds('--timeout')))
      .addOption(json())
      .action(
        run(async (ctx, args: string[], o: { parallel: number; timeout: number; json?: boolean }) => {
          const nodes = selectAll(ctx, args);
          const svc = powerService(ctx, o.timeout, keyLoader(ctx));
          const results = await mapLimit(nodes, o.parallel, async (n) => {
            const r = await svc.run(n, action as PowerAction);
            // A line per node as it finishes: on a 500-node rack the first answers matter.
            if (!o.json) ctx.io.out(powerLine(r) + '\n');
            return r;
          });
          if (o.json) ctx.print({ results }, () => '');
          const failed = results.filter((r) => !r.ok);
          if (failed.length) throw new RuntimeFailure(`power ${action}: ${failed.length} of ${results.length} node(s) failed: ${failed.map((r) => r.node).join(' ')}`);
          if (!o.json) ctx.io.err(`power ${action}: ${results.length} node(s) ok\n`);
        }),
      );
  }
  return power;
}

export interface ExecResult {
  node: string;
  exit: number | null;
  stdout: string;
  stderr: string;
  error: string | null;
}

/** `pxeherd exec <NODES...> -- COMMAND` */
export function execCommand(run: Run): Command {
  const cmd = new Command('exec')
    .description('run a command on nodes over SSH with the pxeherd key; output prefixed by node name')
    .usage('[options] <NODES...> -- COMMAND [ARGS...]')
    .argument('<NODES_AND_COMMAND...>', 'NODES, then -- and the command')
    .addOption(new Option('--parallel <N>', 'nodes at once').default(32).argParser(positiveInt('--parallel')))
    .addOption(new Option('--timeout <S>', 'seconds the command may run per node (default: no limit)').argParser(seconds('--timeout')))
    .addOption(new Option('--connect-timeout <S>', 'seconds to connect and log in').default(10).argParser(seconds('--connect-timeout')))
    .addOption(json());
  cmd.action(
    run(async (ctx, all: string[], o: { parallel: number; timeout?: number; connectTimeout: number; json?: boolean }) => {
      const tail = afterDashDash(cmd);
      if (!tail || tail.length === 0) throw new InvalidInput('exec: give the command after --, e.g. pxeherd exec n00* -- uptime', 'command');
      const targets = all.slice(0, all.length - tail.length);
      if (targets.length === 0) throw new InvalidInput('exec: name the nodes before --', 'nodes');
      const command = tail.join(' ');
      const nodes = selectAll(ctx, targets);
      const key = keyLoader(ctx);
      const results = await mapLimit(nodes, o.parallel, async (n): Promise<ExecResult> => {
        const out = new LineSplitter((l) => !o.json && ctx.io.out(`${n.name}: ${l}\n`));
        const err = new LineSplitter((l) => !o.json && ctx.io.err(`${n.name}: ${l}\n`));
        try {
          const t = nodeTarget(n, ctx.store.attrsFor(n), key(), ctx.config.statedir);
          const r = await sshRun(t, command, {
            timeoutMs: (o.timeout ?? 0) * 1000,
            connectTimeoutMs: o.connectTimeout * 1000,
            onStdout: (d) => out.push(d),
            onStderr: (d) => err.push(d),
          });
          out.end();
          err.end();
          const error = r.exit === null ? `ended without an exit status${r.signal ? ` (signal ${r.signal})` : ''}` : null;
          return { node: n.name, exit: r.exit, stdout: r.stdout, stderr: r.stderr, error };
        } catch (e) {
          out.end();
          err.end();
          const msg = (e as Error).message;
          if (!o.json) ctx.io.err(`${n.name}: ERROR: ${msg}\n`);
          return { node: n.name, exit: null, stdout: '', stderr: '', error: msg };
        }
      });
      if (o.json) ctx.io.out(JSON.stringify(results, null, 2) + '\n');
      const failed = results.filter((r) => r.exit !== 0);
      const why = (r: ExecResult) => (r.exit !== null ? `exit ${r.exit}` : (r.error ?? 'error'));
      if (!o.json) {
        const counts = new Map<string, string[]>();
        for (const r of results) {
          const k = r.exit !== null ? why(r) : 'error';
          counts.set(k, [...(counts.get(k) ?? []), r.node]);
        }
        ctx.io.err(`exec: ${results.length} node(s): ${[...counts].map(([k, v]) => `${k}: ${v.length}${k === 'exit 0' ? '' : ` (${v.join(' ')})`}`).join(', ')}\n`);
      }
      if (failed.length) throw new RuntimeFailure(`exec: ${failed.length} of ${results.length} node(s) failed: ${failed.map((r) => `${r.node} (${r.exit !== null ? `exit ${r.exit}` : 'error'})`).join(', ')}`);
    }),
  );
  return cmd;
}

function outcomeWord(r: NodeOutcome): string {
  switch (r.result) {
    case 'ready':
      return 'ready';
    case 'started':
      return 'power cycled';
    case 'failed':
      return `failed at ${r.stage}`;
    case 'timeout':
      return `timed out at ${r.stage}`;
  }
}

interface ReinstallFlags {
  wait?: boolean;
  timeout: number;
  parallel: number;
  powerTimeout: number;
  poll: number;
  json?: boolean;
}

/** The options `node reinstall` and `node rollback` share. */
function withReinstallOptions(cmd: Command, waitHelp: string): Command {
  return cmd
    .argument('<NODES...>', 'names, globs, ranges or a query')
    .option('--wait', waitHelp)
    .addOption(new Option('--timeout <S>', 'seconds per node for --wait').default(900).argParser(seconds('--timeout')))
    .addOption(new Option('--parallel <N>', 'power cycles at once').default(32).argParser(positiveInt('--parallel')))
    .addOption(new Option('--power-timeout <S>', 'seconds for one power cycle').default(30).argParser(seconds('--power-timeout')))
    .addOption(new Option('--poll <S>', 'seconds between looks at the event log').default(1).argParser(seconds('--poll')).hideHelp())
    .addOption(json());
}

/** The store backend and the options of one reinstall (progress lines to stderr under --json). */
function reinstallRun(ctx: CliContext, o: ReinstallFlags): { backend: ReinstallBackend; options: ReinstallOptions } {
  const key = keyLoader(ctx);
  const power = powerService(ctx, o.powerTimeout, key);
  const say = (l: string) => (o.json ? ctx.io.err(l + '\n') : ctx.io.out(l + '\n'));
  return {
    backend: storeReinstallBackend({ store: ctx.store, statedir: ctx.config.statedir, power, key }),
    options: { wait: !!o.wait, timeoutMs: o.timeout * 1000, parallel: o.parallel, pollMs: o.poll * 1000, sshEveryMs: Math.max(o.poll * 1000, 2000), onProgress: say },
  };
}

/** `pxeherd node reinstall <NODES...> [--wait] [--timeout S]` (the lead adds it under `node`). */
export function nodeReinstallCommand(run: Run): Command {
  return withReinstallOptions(
    new Command('reinstall').description("provision nodes again: boot mode once, the BMC's next boot set to PXE, power cycle, and with --wait follow each to ready and SSH"),
    'follow the boots until every node is ready and answers SSH (or fails, or times out)',
  ).action(
    run(async (ctx, args: string[], o: ReinstallFlags) => {
      const nodes = selectAll(ctx, args);
      const off = nodes.filter((n) => !n.enabled);
      if (off.length) throw new InvalidInput(`${off.map((n) => n.name).join(' ')} disabled: pxeherd node enable ${off.map((n) => n.name).join(' ')} first`, 'nodes');
      const { backend, options } = reinstallRun(ctx, o);
      // On PostgreSQL: writes flushed before the power cycle, events followed in the database.
      const pg = await reinstallOnPostgres(ctx, backend, !!o.wait);
      const results = await reinstall(nodes, pg.backend, options).finally(pg.stop);
      ctx.print({ results }, () =>
        table(
          ['NODE', 'RESULT', 'DETAIL', 'LAST EVENT', 'TIME'],
          results.map((r) => [r.node, outcomeWord(r), r.message, r.lastEvent ?? '-', `${r.seconds} s`]),
        ),
      );
      const bad = results.filter((r) => r.result === 'failed' || r.result === 'timeout');
      if (bad.length) throw new RuntimeFailure(`reinstall: ${bad.length} of ${results.length} node(s) did not ${o.wait ? 'reach ready' : 'power cycle'}: ${bad.map((r) => `${r.node} (${outcomeWord(r)})`).join(', ')}`);
    }),
  );
}

/** `pxeherd node rollback <NODES...> [--wait] [--timeout S]`: reinstall a disk node with the revision installed before (src/install/rollback.ts). */
export function nodeRollbackCommand(run: Run): Command {
  return withReinstallOptions(
    new Command('rollback').description(
      "put the install before the one on a disk node back: pin the node's vnfs field to that revision (NAME@REV), then reinstall it as node reinstall does (boot once, next boot PXE, power cycle; --wait follows it to ready and SSH). " +
        'After install.done the two recorded installs have swapped: a second rollback returns the disk to where it started (the node stays pinned; pxeherd node set vnfs NAME NODE follows the current revision again). ' +
        'Refused, changing nothing (exit 2): a node not installed to disk, one with no earlier install recorded, one whose earlier revision was pruned.',
    ),
    'follow the reinstalls until every node is ready, answers SSH and reported the rolled-back revision (or fails, or times out)',
  ).action(
    run(async (ctx, args: string[], o: ReinstallFlags) => {
      const nodes = selectAll(ctx, args);
      const { ImageService } = await import('../../images/service.js');
      const images = new ImageService({ store: ctx.store, statedir: ctx.config.statedir, templatesDirs: [], events: ctx.store.events });
      const plans = planRollbacks(nodes, storeRollbackLookups(ctx.store, images));
      const { backend, options } = reinstallRun(ctx, o);
      const pg = await reinstallOnPostgres(ctx, backend, !!o.wait);
      const results = await rollbackNodes(plans, { ...pg.backend, pin: (ps) => pinInStore(ctx.store, ps), install: (mac) => ctx.store.installs.get(mac) }, options).finally(pg.stop);
      ctx.print({ results }, () =>
        table(
          ['NODE', 'ROLLBACK', 'RESULT', 'DETAIL', 'LAST EVENT', 'TIME'],
          results.map((r) => [r.node, `${pinOf(r.from)} -> ${pinOf(r.to)}`, outcomeWord(r), r.message, r.lastEvent ?? '-', `${r.seconds} s`]),
        ),
      );
      const bad = results.filter((r) => r.result === 'failed' || r.result === 'timeout');
      if (bad.length) throw new RuntimeFailure(`rollback: ${bad.length} of ${results.length} node(s) did not ${o.wait ? 'reach ready with the rolled-back revision' : 'power cycle'} (each is pinned to it and set to boot once): ${bad.map((r) => `${r.node} (${outcomeWord(r)})`).join(', ')}`);
    }),
  );
}

/** `pxeherd node locate <NODE>`: switch/port and rack/unit from attributes. */
export function nodeLocateCommand(run: Run): Command {
  return new Command('locate')
    .description('where a node is: rack and unit, switch and port (attributes rack, unit, switch, port)')
    .argument('<NODE>', 'node name or MAC')
    .addOption(json())
    .action(
      run((ctx, name: string) => {
        const n = ctx.nodes.get(name);
        const a = ctx.store.attrsFor(n);
        let sw: { host: string; kind: string } | undefined;
        if (a.switch) {
          try {
            const d = resolveSwitch(a.switch, loadSwitches(ctx.config.statedir), a, switchesPath(ctx.config.statedir));
            sw = { host: d.host, kind: d.kind };
          } catch {
            /* a switch with no known kind is still a place */
          }
        }
        const data = {
          node: n.name,
          mac: n.mac,
          rack: a.rack ?? null,
          unit: a.unit ?? null,
          switch: a.switch ?? null,
          port: a.port ?? null,
          switch_host: sw?.host ?? null,
          switch_kind: sw?.kind ?? null,
        };
        ctx.print(data, () => {
          const place = [a.rack && `rack ${a.rack}`, a.unit && `unit ${a.unit}`].filter(Boolean).join(' ') || 'rack unknown';
          const net = a.switch ? `switch ${a.switch}${a.port ? ` port ${a.port}` : ' (port unknown)'}${sw ? ` (${sw.host}, ${sw.kind})` : ''}` : 'switch unknown';
          const hint = !a.rack && !a.switch ? `\n(set them with: pxeherd node set attr.rack=R12 ${n.name}; attr.unit, attr.switch, attr.port likewise)` : '';
          return `${n.name}: ${place}, ${net}${hint}`;
        });
      }),
    );
}

/** `pxeherd group deploy <GROUP> [--dry-run]` (the lead adds it under `group`). */
export function groupDeployCommand(run: Run): Command {
  return new Command('deploy')
    .description("put a group's switch ports into its vlan (switch/port attributes, per-kind templates) and write its head node's machine list")
    .argument('<GROUP>')
    .option('--dry-run', 'print the exact commands and the machine list; change nothing')
    .addOption(new Option('--timeout <S>', 'seconds per SSH command').default(30).argParser(seconds('--timeout')))
    .addOption(json())
    .action(
      run(async (ctx, name: string, o: { dryRun?: boolean; timeout: number; json?: boolean }) => {
        const g = ctx.store.groups.get(name);
        if (!g) throw new NotFound(`no group named "${name}"`);
        const statedir = ctx.config.statedir;
        const members = ctx.store.nodes
          .all()
          .filter((n) => n.group === name)
          .map((node) => ({ node, attrs: ctx.store.attrsFor(node) }));
        const plan = planDeploy({ group: name, groupAttrs: g.attrs, members, switches: loadSwitches(statedir), kinds: loadKinds(statedir), switchesLabel: switchesPath(statedir) });
        const head = plan.headNode ? ctx.store.nodes.byName(plan.headNode) : undefined;
        if (plan.headNode && !head) throw new InvalidInput(`group ${name}: head_node "${plan.headNode}" is not a node`, 'head_node');
        const headAttrs = head ? ctx.store.attrsFor(head) : {};
        const machinesPath = g.attrs.machines_path || '/etc/pxeherd/machines.txt';
        const file = machinesFilePath(statedir, name);
        const switchesJson = plan.switches.map((s) => ({ switch: s.switch.name, host: s.switch.host, ssh_port: s.switch.sshPort, user: s.switch.user, kind: s.kind.name, mode: s.kind.mode, commands: s.commands }));
        const headJson = head ? { node: head.name, path: machinesPath, copy: !!headAttrs.ssh_host } : null;
        if (o.dryRun) {
          ctx.print({ group: name, vlan: plan.vlan, dry_run: true, switches: switchesJson, machines: plan.machines, machines_file: file, head: headJson, skipped: plan.skipped }, () => {
            const lines = [`deploy group ${name} (vlan ${plan.vlan}): dry run, nothing is changed`];
            for (const s of plan.switches) {
              lines.push(`switch ${s.switch.name} (${s.kind.name}, ${s.switch.user}@${s.switch.host}:${s.switch.sshPort}, ${s.kind.mode === 'shell' ? 'one console session' : 'one command per exec'}):`);
              lines.push(...s.commands.map((c) => `  ${c}`));
            }
            if (plan.switches.length === 0) lines.push('no switch ports to configure');
            lines.push(`machine list for ${file}${head && headAttrs.ssh_host ? ` and ${head.name}:${machinesPath}` : ''}:`);
            lines.push(...machinesText(plan).trimEnd().split('\n').map((l) => `  ${l}`));
            for (const s of plan.skipped) lines.push(`skipped ${s.node}: ${s.reason}`);
            return lines.join('\n');
          });
          return;
        }
        const key = keyLoader(ctx);
        const say = (l: string) => (o.json ? ctx.io.err(l + '\n') : ctx.io.out(l + '\n'));
        for (const s of plan.skipped) say(`skipped ${s.node}: ${s.reason}`);
        const rep = await applyDeploy(
          plan,
          {
            statedir,
            ssh: sshRun,
            shell: sshShell,
            key,
            record: (ev) => ctx.store.events.record(ev),
            headTarget: () => (head && headAttrs.ssh_host ? nodeTarget(head, headAttrs, key(), ctx.config.statedir) : undefined),
          },
          { timeoutMs: o.timeout * 1000, machinesPath, onProgress: say },
        );
        ctx.print({ ...rep, dry_run: false, skipped: plan.skipped }, () =>
          rep.ok
            ? `deployed group ${name} (vlan ${plan.vlan}): ${rep.switches.length} switch(es), ${rep.switches.reduce((n, s) => n + s.done.length, 0)} command(s); machine list ${rep.machinesFile}${rep.head?.ok && !rep.head.skipped ? `, copied to ${rep.head.node}:${rep.head.path}` : ''}`
            : '',
        );
        if (!rep.ok) throw new RuntimeFailure(`deploy ${name}: ${rep.error}`);
      }),
    );
}
