import { Command, Option } from 'commander';
import type { Run } from '../main.js';
import { RuntimeFailure, table } from '../context.js';
import { InvalidInput } from '../../nodes/mac.js';
import { stateError } from '../../nodes/names.js';
import type { CliContext } from '../context.js';

function state(s: string): string {
  const err = stateError(s);
  if (err) throw new InvalidInput(err, 'state');
  return s;
}

async function parts(ctx: CliContext) {
  const { provisionParts } = await import('../../server/parts.js');
  const { installDefaultNodescripts, DEFAULT_NODESCRIPTS_SRC } = await import('../../nodescripts/index.js');
  // A fresh state directory shows the defaults `serve` would install.
  await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, ctx.config.nodescripts.dir);
  // Rendering for an admin is not a boot: no events are recorded.
  return provisionParts(ctx.config, ctx.store, { record() {} }, (m) => ctx.io.err(m + '\n'));
}

export function scriptCommand(run: Run): Command {
  const script = new Command('script').description('the nodescripts a node runs: order, overrides, skipped files, and the exact script it receives');
  script
    .command('list')
    .description('which nodescripts run for NODE, in which order and from where, and which are skipped and why')
    .argument('<NODE>', 'node name or MAC')
    .option('--state <STATE>', 'provisionary state', 'init')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx, nodeArg: string, o: { state: string }) => {
        const node = ctx.nodes.get(nodeArg);
        const { engine } = await parts(ctx);
        try {
          const l = await engine.listScripts(node, state(o.state));
          ctx.print({ node: node.name, state: o.state, order: l.order, skipped: l.skipped, problems: l.problems }, () => {
            let t = `nodescripts for ${node.name}, state ${o.state} (${ctx.config.nodescripts.dir}/${o.state}):\n`;
            t += l.order.length ? table(['#', 'SCRIPT', 'FROM'], l.order.map((s, i) => [i + 1, s.name, s.where])) : '  (none)\n';
            if (l.skipped.length) t += '\nskipped:\n' + table(['SCRIPT', 'FROM', 'WHY'], l.skipped.map((s) => [s.name, s.where, s.reason]));
            if (l.problems.length) t += '\nproblems:\n' + l.problems.map((p) => `  ${p}`).join('\n') + '\n';
            return t;
          });
        } finally {
          await engine.close();
        }
      }),
    );
  script
    .command('render')
    .description('the exact bytes NODE would receive for STATE (scripts run on this master); exit 1 if a script fails')
    .argument('<NODE>', 'node name or MAC')
    .option('--state <STATE>', 'provisionary state', 'init')
    .action(
      run(async (ctx, nodeArg: string, o: { state: string }) => {
        const node = ctx.nodes.get(nodeArg);
        const { provision, engine } = await parts(ctx);
        try {
          const r = await provision.renderScript(node, state(o.state));
          ctx.io.out(r.text);
          if (!r.ok) throw new RuntimeFailure(`nodescript ${r.failure?.script ?? ''} failed: ${r.failure?.reason ?? 'see above'}`);
        } finally {
          await engine.close();
        }
      }),
    );
  return script;
}
