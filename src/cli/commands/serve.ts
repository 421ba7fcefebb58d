import { Command } from 'commander';
import type { Run } from '../main.js';
import { RuntimeFailure } from '../context.js';

export function serveCommand(run: Run): Command {
  return new Command('serve')
    .description('run all services in the foreground (logs to stdout); stops on SIGINT/SIGTERM')
    .option('--log-level <LEVEL>', 'trace | debug | info | warn | error (default: log.level from the config)')
    .action(
      run(async (ctx, o: { logLevel?: string }) => {
        // Loaded here so that every other command starts without express and the protocol servers.
        const { createLogger } = await import('../../util/log.js');
        const { startServer } = await import('../../server/server.js');
        const config = ctx.config;
        const log = createLogger(o.logLevel ?? config.log.level);
        const server = await startServer(config, log);
        if (!server.services.some((s) => s.ok)) {
          await server.stop();
          throw new RuntimeFailure('no service could start: ' + server.services.map((s) => s.detail).join('; '));
        }
        await new Promise<void>((resolve) => {
          const stop = (sig: string) => {
            log.info({ signal: sig }, 'stopping');
            resolve();
          };
          process.once('SIGINT', () => stop('SIGINT'));
          process.once('SIGTERM', () => stop('SIGTERM'));
        });
        await server.stop();
      }),
    );
}
