import { Command } from 'commander';
import { json } from '../options.js';
import { table } from '../context.js';
import { groupJson, vnfsJson } from '../../nodes/json.js';
import { shownValue } from '../../security/secrets.js';
import { InvalidInput } from '../../nodes/mac.js';
import { NotFound } from '../../nodes/select.js';
import type { Run } from '../main.js';
import { groupDeployCommand } from './remote.js';
import { addImageCommands, imageServiceFor, mib, revisionJson } from './image.js';
import { addSyncCommand } from './sync.js';


function attrLines(attrs: Record<string, string>): string {
  const keys = Object.keys(attrs).sort();
  return keys.length ? 'attributes:\n' + keys.map((k) => `  ${k} = ${shownValue(k, attrs[k]!)}`).join('\n') + '\n' : '';
}

export function groupCommand(run: Run): Command {
  const group = new Command('group').description('groups of nodes and their attributes (vlan, head_node, ...)');
  group
    .command('list')
    .description('all groups: those nodes name and those with attributes')
    .addOption(json())
    .action(
      run((ctx) => {
        const groups = ctx.groupList();
        ctx.print({ groups: groups.map(groupJson) }, () =>
          groups.length ? table(['GROUP', 'NODES', 'ATTRIBUTES'], groups.map((g) => [g.name, g.nodes, Object.entries(g.attrs).map(([k, v]) => `${k}=${shownValue(k, v)}`).join(' ') || '-'])) : 'no groups\n',
        );
      }),
    );
  group
    .command('show')
    .description("a group's attributes and nodes")
    .argument('<GROUP>')
    .addOption(json())
    .action(
      run((ctx, name: string) => {
        const g = ctx.store.groups.get(name);
        if (!g) throw new NotFound(`no group named "${name}"`);
        const members = ctx.store.nodes.all().filter((n) => n.group === name);
        ctx.print({ ...groupJson(g), members: members.map((n) => n.name) }, () => `group: ${g.name}\nnodes: ${g.nodes}${members.length ? ' (' + members.map((n) => n.name).join(' ') + ')' : ''}\n` + attrLines(g.attrs));
      }),
    );
  group
    .command('set')
    .description('set a group attribute (empty value removes it); creates the group')
    .argument('<GROUP>')
    .argument('<KEY>', 'attribute key, or KEY=VALUE')
    .argument('[VALUE]')
    .addOption(json())
    .action(
      run((ctx, name: string, key: string, value: string | undefined) => {
        if (value === undefined) {
          const i = key.indexOf('=');
          if (i <= 0) throw new InvalidInput('group set GROUP KEY VALUE (or KEY=VALUE)', 'value');
          value = key.slice(i + 1);
          key = key.slice(0, i);
        }
        const g = ctx.store.groups.set(name, key, value);
        ctx.print(groupJson({ ...g, nodes: ctx.groupNodeCount(name) }), () => `group ${name}: ${key}=${shownValue(key, value!)}`);
      }),
    );
  group
    .command('delete')
    .description('delete a group (refused while nodes are in it, unless --move-to)')
    .argument('<GROUP>')
    .option('--move-to <GROUP>', 'move its nodes to this group first')
    .addOption(json())
    .action(
      run((ctx, name: string, o: { moveTo?: string }) => {
        ctx.store.groups.delete(name, o.moveTo);
        ctx.print({ deleted: name }, () => `deleted group ${name}`);
      }),
    );
  group.addCommand(groupDeployCommand(run));
  return group;
}

export function vnfsCommand(run: Run): Command {
  const vnfs = new Command('vnfs')
    .alias('image')
    .description('VNFS images: kernel + initrd + command line, or a versioned root filesystem, under <statedir>/vnfs/NAME/');
  vnfs
    .command('list')
    .description('all VNFS images')
    .addOption(json())
    .action(
      run((ctx) => {
        const list = ctx.vnfsList();
        const revs = new Map(list.map((v) => [v.name, ctx.store.vnfs.revisions(v.name)]));
        const squash = (v: (typeof list)[number]) => {
          const r = revs.get(v.name)!.find((x) => x.rev === v.currentRev);
          return r ? (JSON.parse(r.manifest) as { artifacts?: { 'rootfs.squashfs'?: { size: number } } }).artifacts?.['rootfs.squashfs']?.size : undefined;
        };
        ctx.print({ vnfs: list.map((v) => ({ ...vnfsJson(v), revisions: revs.get(v.name)!.length, squashfsBytes: squash(v) ?? null })) }, () =>
          list.length
            ? table(
                ['VNFS', 'NODES', 'REV', 'REVS', 'SIZE', 'KERNEL', 'INITRD', 'CMDLINE'],
                list.map((v) => [v.name, v.nodes, v.currentRev ?? '-', revs.get(v.name)!.length || '-', v.currentRev ? mib(squash(v)) : '-', v.kernel, v.initrd, v.cmdline || '-']),
              )
            : 'no VNFS images\n',
        );
      }),
    );
  vnfs
    .command('add')
    .description('copy a kernel and initrd into the state directory as a VNFS (replaces one of the same name)')
    .argument('<NAME>')
    .requiredOption('--kernel <FILE>', 'kernel image')
    .requiredOption('--initrd <FILE>', 'initramfs')
    .option('--cmdline <ARGS>', 'kernel command line', '')
    .addOption(json())
    .action(
      run((ctx, name: string, o: { kernel: string; initrd: string; cmdline: string }) => {
        const v = ctx.nodes.addVnfs({ name, kernel: o.kernel, initrd: o.initrd, cmdline: o.cmdline });
        ctx.print(vnfsJson(v), () => `added VNFS ${v.name} (${v.kernel}, ${v.initrd}) in ${ctx.nodes.vnfsDir(v.name)}`);
      }),
    );
  vnfs
    .command('show')
    .description('one VNFS image')
    .argument('<NAME>')
    .addOption(json())
    .action(
      run(async (ctx, name: string) => {
        const v = ctx.store.vnfs.list().find((x) => x.name === name);
        if (!v) throw new NotFound(`no VNFS named "${name}"`);
        const svc = await imageServiceFor(ctx);
        const revs = svc.revisions(name);
        const usage = revs.length ? svc.usage(name) : undefined;
        const use = new Map((usage?.revisions ?? []).map((u) => [u.rev, u]));
        ctx.print(
          { ...vnfsJson(v), dir: ctx.nodes.vnfsDir(name), revisions: revs.map((r) => revisionJson(r, use.get(r.rev))), diskBytes: usage?.totalBytes ?? null },
          () =>
            `vnfs:    ${v.name}\ndir:     ${ctx.nodes.vnfsDir(name)}\nkernel:  ${v.kernel}\ninitrd:  ${v.initrd}\ncmdline: ${v.cmdline || '-'}\nnodes:   ${v.nodes}\n` +
            (revs.length
              ? `current: revision ${v.currentRev}\ndisk:    ${mib(usage!.totalBytes)} for ${revs.length} revision(s), shared files counted once\nrevisions (ADDS: what each adds over the older ones; OWN: what pruning it alone frees):\n` +
                revs
                  .map((r) => {
                    const u = use.get(r.rev);
                    return `  ${r.current ? '*' : ' '} r${r.rev}  parent ${r.parent ?? '-'}  ${r.source}  kernel ${r.manifest.kernel || '-'}  squashfs ${mib(r.manifest.artifacts['rootfs.squashfs']?.size)}  adds ${mib(u?.addedBytes)}  own ${mib(u?.ownBytes)}  nodes ${r.nodes.join(',') || '-'}${r.comment ? `  "${r.comment}"` : ''}`;
                  })
                  .join('\n') +
                '\n'
              : '') +
            attrLines(v.attrs),
        );
      }),
    );
  vnfs
    .command('set')
    .description('change cmdline or an attribute of a VNFS')
    .argument('<NAME>')
    .argument('<KEY>', 'cmdline or an attribute key')
    .argument('<VALUE>')
    .addOption(json())
    .action(
      run((ctx, name: string, key: string, value: string) => {
        const v = ctx.store.vnfs.set(name, key, value);
        ctx.print(vnfsJson(v), () => `vnfs ${name}: ${key}=${shownValue(key, value!)}`);
      }),
    );
  vnfs
    .command('delete')
    .description('delete a VNFS and its files (refused while nodes use it)')
    .argument('<NAME>')
    .option('--keep-files', 'keep <statedir>/vnfs/NAME/')
    .addOption(json())
    .action(
      run((ctx, name: string, o: { keepFiles?: boolean }) => {
        ctx.nodes.deleteVnfs(name, o.keepFiles);
        ctx.print({ deleted: name }, () => `deleted VNFS ${name}`);
      }),
    );
  addImageCommands(vnfs, run);
  addSyncCommand(vnfs, run); // issue 19: fetch from peers ahead of a boot storm
  return vnfs;
}
