import { Command, Option } from 'commander';
import { RuntimeFailure, table } from '../context.js';
import type { Run } from '../main.js';
import { json, seconds } from '../options.js';
import { NotFound } from '../../nodes/select.js';
import { mapLimit } from '../../remote/fanout.js';
import { PowerService } from '../../power/service.js';
import { ensureKey, type KeyPair } from '../../remote/keys.js';
import { fmtSize, PlanError, type DiskPlan } from '../../install/plan.js';
import { planForNode } from '../../install/node-plan.js';
import { markForRelease, releaseNodes, type ReleaseResult } from '../../install/release.js';


/** Human text of a plan: the disk, the table, the sfdisk script and mkfs commands. */
export function planText(p: DiskPlan, onDisk?: string): string {
  const lines = [
    `${p.node}: install=${p.install}${p.install === 'stateless' ? ' (this plan is used once install=disk: pxeherd node set attr.install=disk ' + p.node + ')' : ''}, firmware ${p.firmware}`,
    `disk: ${p.disk.path} ${fmtSize(p.disk.sizeBytes)}${p.disk.serial ? `, serial ${p.disk.serial}` : ''}${p.disk.model ? `, ${p.disk.model}` : ''} (${p.disk.chosenBy})`,
    '',
    table(
      ['#', 'DEVICE', 'NAME', 'SIZE', 'FILESYSTEM', 'MOUNT'],
      p.partitions.map((x) => [x.number, x.device, x.name, x.rest ? `${fmtSize(x.sizeBytes)} (rest)` : fmtSize(x.sizeBytes), x.fs ?? '-', x.mount ?? '-']),
    ).trimEnd(),
    '',
    `sfdisk ${p.disk.path} <<EOF`,
    p.sfdisk.trimEnd(),
    'EOF',
    ...p.partitions.filter((x) => x.mkfs).map((x) => [...x.mkfs!, x.device].join(' ')),
    '',
    ...(onDisk ? [onDisk] : []),
    'nothing was changed (this is a plan)',
  ];
  return lines.join('\n');
}

/** `pxeherd node plan <NODE>` */
export function nodePlanCommand(run: Run): Command {
  return new Command('plan')
    .description('print the disk plan of a node (install=disk): target disk, GPT partitions, filesystems and the sfdisk script; changes nothing')
    .argument('<NODE>', 'node name or MAC')
    .addOption(json())
    .action(
      run((ctx, name: string) => {
        const n = ctx.nodes.get(name);
        let p: DiskPlan;
        try {
          p = planForNode(ctx.store, n);
        } catch (e) {
          if (e instanceof PlanError) throw new RuntimeFailure(e.message);
          throw e;
        }
        // What is on the disk now (install.done), and the install before it: the rollback target.
        const i = ctx.store.installs.get(n.mac);
        const installed = i ? { vnfs: i.vnfs, rev: i.rev, disk: i.disk, firmware: i.firmware, installedAt: new Date(i.installedAt).toISOString(), previous: i.previous ? { vnfs: i.previous.vnfs, rev: i.previous.rev, installedAt: new Date(i.previous.installedAt).toISOString() } : null } : null;
        ctx.print({ ...p, installed }, () =>
          planText(
            p,
            installed
              ? `on the disk now: ${installed.vnfs} r${installed.rev} on ${installed.disk} (${installed.firmware}), installed ${installed.installedAt}; before it: ${installed.previous ? `${installed.previous.vnfs} r${installed.previous.rev}` : 'nothing'}`
              : 'on the disk now: nothing pxeherd installed',
          ),
        );
      }),
    );
}

/** `pxeherd node release <NODES...> [--wipe]` */
export function nodeReleaseCommand(run: Run): Command {
  return new Command('release')
    .description('give nodes back (reclaim): mark them to be provisioned on their next boot (boot once), optionally flag their disks to be wiped, and power them off')
    .argument('<NODES...>', 'names, globs, ranges or a query')
    .option('--wipe', 'also set attribute wipe_on_boot=yes: the next provisioning boot erases the partition tables and filesystem signatures of the disks first (nodescript 07-disk-wipe)')
    .option('--wipe-full', 'like --wipe, but every byte of every disk is overwritten with zeros (wipe_on_boot=full: slow on big disks)')
    .addOption(new Option('--timeout <S>', 'seconds for one power off').default(30).argParser(seconds('--timeout')))
    .addOption(json())
    .action(
      run(async (ctx, args: string[], o: { wipe?: boolean; wipeFull?: boolean; timeout: number; json?: boolean }) => {
        const wipeMode = o.wipeFull ? 'full' : o.wipe ? 'quick' : null;
        const nodes = ctx.nodes.select(args, { requireAll: true });
        if (nodes.length === 0) throw new NotFound(`no node matches "${args.join(' ')}"`);
        let key: KeyPair | undefined;
        const power = new PowerService({
          statedir: ctx.config.statedir,
          backend: { attrsFor: (n) => ctx.store.attrsFor(n), events: ctx.store.events },
          timeoutMs: o.timeout * 1000,
          key: () => (key ??= ensureKey(ctx.config.statedir)),
        });
        const results = await releaseNodes(
          nodes,
          {
            mark: (ns) => markForRelease(ctx.store, ns, wipeMode),
            powerOff: (n) => power.run(n, 'off'),
            record: (ev) => ctx.store.events.record(ev),
            map: (items, fn) => mapLimit(items, 32, fn),
          },
          { wipe: wipeMode !== null, wipeMode },
        );
        ctx.print({ results }, () =>
          table(
            ['NODE', 'NEXT BOOT', 'WIPE', 'POWER'],
            results.map((r: ReleaseResult) => [r.node, 'provision (once)', r.wipeMode ?? 'no', r.power === 'off' ? 'off' : `FAILED: ${r.error ?? ''}`]),
          ),
        );
        const bad = results.filter((r) => r.power !== 'off');
        if (bad.length) throw new RuntimeFailure(`release: ${bad.length} of ${results.length} node(s) were marked but did not power off: ${bad.map((r) => r.node).join(' ')}`);
      }),
    );
}
