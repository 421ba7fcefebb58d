import { Command, CommanderError, Option } from 'commander';
import { CliContext, exitCodeFor, EXIT_USAGE, type CommonOpts } from './context.js';
import { nodeCommand } from './commands/node.js';
import { groupCommand, vnfsCommand } from './commands/group.js';
import { serveCommand } from './commands/serve.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Action = (ctx: CliContext, ...args: any[]) => void | Promise<void>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Run = (fn: Action) => (...args: any[]) => Promise<void>;

export interface CliIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

/**
 * Build the command tree. `run` wraps each action: it builds the context from the leaf's
 * options, maps errors to exit codes (0 ok, 1 runtime failure, 2 bad usage or input) and
 * always closes the database.
 */
export function buildProgram(io: CliIO, setExit: (code: number) => void): Command {
  const run: Run =
    (fn) =>
    async (...args) => {
      const cmd = args[args.length - 1] as Command;
      const ctx = new CliContext(cmd.optsWithGlobals() as CommonOpts, io);
      try {
        await fn(ctx, ...args.slice(0, -1));
      } catch (e) {
        const { code, message } = exitCodeFor(e);
        io.err(`pxeherd: ${message}\n`);
        if (code === 1 && process.env.PXEHERD_DEBUG && e instanceof Error) io.err(`${e.stack}\n`);
        setExit(code);
      } finally {
        ctx.close();
      }
    };

  const program = new Command('pxeherd')
    .description('bare-metal provisioning server: DHCP, TFTP, HTTP and nodescripts in one process')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  program.addCommand(serveCommand(run));
  program.addCommand(nodeCommand(run));
  program.addCommand(groupCommand(run));
  program.addCommand(vnfsCommand(run));
  for (const extra of extraCommands) program.addCommand(extra(run));

  // Every leaf takes --config, wherever it stands on the line.
  const configure = (c: Command) => {
    c.exitOverride();
    c.configureOutput({ writeOut: io.out, writeErr: io.err });
    if (c.commands.length === 0) {
      if (!c.options.some((o) => o.long === '--config')) c.addOption(new Option('--config <FILE>', 'configuration file (default: $PXEHERD_CONFIG, else built-in defaults)'));
    }
    c.commands.forEach(configure);
  };
  configure(program);
  return program;
}

/** Commands contributed by other parts (script, explain, power ...) register here. */
export const extraCommands: ((run: Run) => Command)[] = [];

export async function main(argv: string[], io: CliIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  let exit = 0;
  const program = buildProgram(io, (c) => (exit = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return EXIT_USAGE;
    }
    throw e;
  }
  return exit;
}
