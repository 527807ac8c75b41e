// `murmur serve`: the embedded service, configured by environment variables (src/config.ts).
import { Command } from 'commander';
import { readConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { startService } from '../service.ts';

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the API with an embedded queue and workers (configuration: environment variables, see README)')
    .action(async () => {
      const config = readConfig();
      const log = createLogger(config.log);
      const service = await startService(config, log);
      let closing = false;
      const shutdown = (signal: string) => {
        // A second signal does not wait.
        if (closing) process.exit(1);
        closing = true;
        log.info(
          { event: 'stopping', signal },
          `${signal}: stopping (new work refused; up to MURMUR_SHUTDOWN_SECONDS for what is in flight; again to stop at once)`,
        );
        service.close().then(
          () => {
            log.info({ event: 'stopped' }, 'stopped');
            process.exit(0);
          },
          (err) => {
            log.error({ event: 'stop.failed', err }, `shutdown: ${err?.message ?? err}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));
    });
}
