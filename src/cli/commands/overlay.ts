import { Command, Option } from 'commander';
import type { Run } from '../main.js';
import { RuntimeFailure, table } from '../context.js';
import { InvalidInput } from '../../nodes/mac.js';

/** `pxeherd overlay render NODE [PATH]`: the files a stateless node gets from its overlays. */
export function overlayCommand(run: Run): Command {
  const overlay = new Command('overlay').description('file overlays for stateless nodes (<statedir>/overlays/{vnfs/V,all,group/G,node/N}/)');
  overlay
    .command('render')
    .description('the exact files NODE gets from its overlays (templates rendered for it), or the bytes of one file with PATH; exit 1 if a template fails')
    .argument('<NODE>', 'node name or MAC')
    .argument('[PATH]', 'one file, as a path inside the node (e.g. /etc/hosts): print its content')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx, nodeArg: string, file: string | undefined) => {
        const node = ctx.nodes.get(nodeArg);
        const { overlaySources } = await import('../../stateless/wiring.js');
        const { nodeOverlay } = await import('../../stateless/context.js');
        const { installDefaultNodescripts } = await import('../../nodescripts/install.js');
        const { DEFAULT_OVERLAYS_SRC, OverlayError } = await import('../../stateless/overlay.js');
        const { resolveServerAddress } = await import('../../util/net.js');
        const path = await import('node:path');
        // A fresh state directory shows the defaults `serve` would install.
        await installDefaultNodescripts(DEFAULT_OVERLAYS_SRC, path.join(ctx.config.statedir, 'overlays'));
        let address: string;
        try {
          address = resolveServerAddress(ctx.config.address, ctx.config.interface).address;
        } catch {
          address = ctx.config.address || '127.0.0.1';
        }
        let o;
        try {
          o = nodeOverlay(overlaySources(ctx.config, ctx.store, { address, httpPort: ctx.config.http.port }), node);
        } catch (e) {
          if (e instanceof OverlayError) throw new RuntimeFailure(`overlay of ${node.name}: ${e.message}`);
          throw e;
        }
        if (file !== undefined) {
          const rel = file.replace(/^\/+/, '');
          const f = o.files.find((x) => x.path === rel);
          if (!f) {
            if (o.deletes.includes(rel)) throw new RuntimeFailure(`${file} is deleted from ${node.name}'s image by an overlay whiteout`);
            throw new InvalidInput(`${node.name}'s overlay has no ${file} (pxeherd overlay render ${node.name} lists its files)`, 'path');
          }
          if (ctx.opts.json) ctx.io.out(JSON.stringify({ node: node.name, path: '/' + f.path, type: f.type, mode: f.mode.toString(8).padStart(4, '0'), uid: f.uid, gid: f.gid, source: f.source, target: f.target ?? null, content: f.data?.toString('utf8') ?? null }, null, 2) + '\n');
          else if (f.type === 'file') ctx.io.out(f.data!.toString('utf8'));
          else ctx.io.out(`${f.type}${f.target ? ` -> ${f.target}` : ''}\n`);
          return;
        }
        const files = o.files.map((f) => ({ path: '/' + f.path, type: f.type, mode: f.mode.toString(8).padStart(4, '0'), uid: f.uid, gid: f.gid, bytes: f.data?.length ?? 0, source: f.source }));
        ctx.print({ node: node.name, hash: o.hash, files, deletes: o.deletes.map((d) => '/' + d) }, () => {
          let t = `overlay of ${node.name} (hash ${o.hash.slice(0, 16)}):\n`;
          t += files.length ? table(['PATH', 'TYPE', 'MODE', 'OWNER', 'BYTES', 'FROM'], files.map((f) => [f.path, f.type, f.mode, `${f.uid}:${f.gid}`, f.bytes, f.source])) : '  (no files)\n';
          if (o.deletes.length) t += '\ndeleted from the image:\n' + o.deletes.map((d) => `  /${d}`).join('\n') + '\n';
          return t;
        });
      }),
    );
  return overlay;
}
