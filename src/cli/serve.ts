// `murmur serve`: the embedded service, configured by environment variables (src/config.ts).
import { Command } from 'commander';
import { readConfig } from '../config.ts';
import { startService } from '../service.ts';

export function serveCommand(): Command {
  return new Command('serve').description('run the API with an embedded queue and workers (configuration: environment variables, see README)').action(async () => {
    const service = await startService(readConfig());
    let closing = false;
    const shutdown = (signal: string) => {
      // A second signal does not wait.
      if (closing) process.exit(1);
      closing = true;
      console.log(`${signal}: stopping (new work refused; up to MURMUR_SHUTDOWN_SECONDS for what is in flight; again to stop at once)`);
      service.close().then(
        () => process.exit(0),
        (err) => {
          console.error(`shutdown: ${err?.message ?? err}`);
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });
}
