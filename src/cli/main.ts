import { Command, CommanderError, Option } from 'commander';
import { CliContext, exitCodeFor, EXIT_USAGE, type CommonOpts } from './context.js';

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
export function buildProgram(io: CliIO, setExit: (code: number) => void, commands: CommandFactory[] = []): Command {
  const run: Run =
    (fn) =>
    async (...args) => {
      const cmd = args[args.length - 1] as Command;
      const ctx = new CliContext(cmd.optsWithGlobals() as CommonOpts, io);
      try {
        await ctx.prepare(cmd);
        await ctx.runCommand(() => fn(ctx, ...args.slice(0, -1)));
      } catch (e) {
        const { code, message } = exitCodeFor(e);
        io.err(`pxeherd: ${message}\n`);
        if (code === 1 && process.env.PXEHERD_DEBUG && e instanceof Error) io.err(`${e.stack}\n`);
        setExit(code);
      } finally {
        await ctx.close();
      }
    };

  const program = new Command('pxeherd')
    .description('bare-metal provisioning server: DHCP, TFTP, HTTP and nodescripts in one process')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  for (const factory of [...commands, ...extraCommands]) program.addCommand(factory(run));

  // Every leaf takes --config, wherever it stands on the line.
  const configure = (c: Command) => {
    c.exitOverride();
    c.configureOutput({ writeOut: io.out, writeErr: io.err });
    if (c.commands.length === 0) {
      if (!c.options.some((o) => o.long === '--config')) c.addOption(new Option('--config <FILE>', 'configuration file (default: $PXEHERD_CONFIG, else built-in defaults)'));
      if (!c.options.some((o) => o.long === '--database')) c.addOption(new Option('--database <URL>', 'database: postgres://... or sqlite:PATH (default: $PXEHERD_DATABASE, else the configuration\'s)'));
    }
    c.commands.forEach(configure);
  };
  configure(program);
  return program;
}

export type CommandFactory = (run: Run) => Command;

/** Commands added eagerly, whatever the command line (tests add theirs here). */
export const extraCommands: CommandFactory[] = [];

/**
 * A top-level command whose module is imported only when the command line names it (or asks
 * for the full list: `--help`, an unknown word). Each command module pulls in its own world
 * (ssh2, the image builder, express for serve...), and `pxeherd node list` should not pay for
 * all of them: scripts call the CLI in loops.
 */
export interface LazyCommand {
  /** The command's name and aliases, as the factory's Command declares them. */
  names: string[];
  /** `argv`: the whole command line, for a command that loads parts of itself lazily too. */
  load: (argv?: string[]) => Promise<CommandFactory[]>;
}

/** The top-level commands; src/cli/register.ts adds the ones beyond serve/node/group/vnfs. */
export const lazyCommands: LazyCommand[] = [
  { names: ['serve'], load: async () => [(await import('./commands/serve.js')).serveCommand] },
  {
    names: ['node'],
    load: async (argv = []) => {
      const m = await import('./commands/node.js');
      // `node list` and the other subcommands node.js defines skip the modules of the rest;
      // help, an unknown word or one of the rest needs them all.
      const sub = argv.filter((a) => !a.startsWith('-'))[1];
      const own = sub !== undefined && m.nodeCommand(() => async () => undefined).commands.some((c) => c.name() === sub || c.aliases().includes(sub));
      const extras = own ? [] : await m.loadNodeExtras();
      return [(run) => m.nodeCommand(run, extras)];
    },
  },
  { names: ['group'], load: async () => [(await import('./commands/group.js')).groupCommand] },
  { names: ['vnfs', 'image'], load: async () => [(await import('./commands/group.js')).vnfsCommand] },
];

/**
 * The factories needed to parse `argv`: only the named top-level command's when the first word
 * is one, else all of them (top-level help, `help`, a mistyped command: commander must see the
 * whole tree to list it or suggest a name).
 */
export async function loadCommands(argv: string[] = []): Promise<CommandFactory[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const named = first === undefined ? undefined : lazyCommands.find((c) => c.names.includes(first));
  const wanted = named ? [named] : lazyCommands;
  return (await Promise.all(wanted.map((c) => c.load(argv)))).flat();
}

export async function main(argv: string[], io: CliIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  let exit = 0;
  const program = buildProgram(io, (c) => (exit = c), await loadCommands(argv));
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return EXIT_USAGE;
    }
    // An option parser refusing a value (InvalidInput: exit 2), or any other failure while parsing.
    const { code, message } = exitCodeFor(e);
    io.err(`pxeherd: ${message}\n`);
    return code;
  }
  return exit;
}
