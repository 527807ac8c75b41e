// `murmur worker`: the worker program, here or on any machine that reaches the API.
import { availableParallelism } from 'node:os';
import { Command, Option } from 'commander';
import { Worker } from '../../worker/worker.ts';
import { readLogSettings } from '../config.ts';
import { createLogger } from '../log.ts';
import { integer } from './args.ts';

const seconds = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number of seconds ≥ 0`);
  return n;
};

export function workerCommand(): Command {
  return new Command('worker')
    .description('claim jobs from a murmur API and transcribe them in batches')
    .requiredOption('--api <url>', "the API's GraphQL endpoint, e.g. http://host:4000/graphql")
    .option('--token <token>', 'the worker token (default: $MURMUR_WORKER_TOKEN)')
    .requiredOption('--model <dir>', 'Whisper model folder (onnx-community layout)')
    .addOption(
      new Option('--pool <pool>', "cpu: take short jobs; gpu: take long ones (each takes the other's while that pool has no live worker)")
        .choices(['cpu', 'gpu'])
        .default('cpu'),
    )
    .option('--max-jobs <n>', 'jobs a batch', integer('--max-jobs', 1), 16)
    .option('--max-seconds <s>', 'seconds of audio a batch', seconds('--max-seconds'), 480)
    .option(
      '--batch-window-ms <ms>',
      "wait this long for a fuller batch once work is there (default: the server's)",
      integer('--batch-window-ms', 0),
    )
    .option('--poll <s>', 'longest long-poll claim', seconds('--poll'), 20)
    .option('--unload-after <s>', 'unload the model after this long without work', seconds('--unload-after'), 60)
    .option('--exit-after <s>', 'exit after this long without work', seconds('--exit-after'), 300)
    .option('--providers <list>', 'execution providers in order of preference', 'cpu')
    .option('--dtype <dtype>', 'model variant: fp32, fp16, q8, …', 'fp32')
    .option(
      '--threads <n>',
      'intra-op threads per session (default: the cores this process may use; 0: onnxruntime chooses)',
      integer('--threads', 0),
      availableParallelism(),
    )
    .option(
      '--shutdown-seconds <s>',
      'on SIGTERM/SIGINT: time to finish the batch in hand before handing its jobs back',
      seconds('--shutdown-seconds'),
      30,
    )
    .addOption(
      new Option('--segmentation <how>', 'vad: decode the speech Silero VAD finds; fixed: every 30 s window')
        .choices(['vad', 'fixed'])
        .default('vad'),
    )
    .action(async (opts) => {
      const token = opts.token ?? process.env.MURMUR_WORKER_TOKEN;
      if (!token) throw Object.assign(new Error('no worker token: pass --token or set MURMUR_WORKER_TOKEN'), { code: 'UNAUTHENTICATED' });
      const worker = new Worker({
        api: opts.api,
        token,
        modelDir: opts.model,
        pool: opts.pool,
        maxJobs: opts.maxJobs,
        maxSeconds: opts.maxSeconds,
        pollSeconds: opts.poll,
        batchWindowMs: opts.batchWindowMs,
        unloadAfterSeconds: opts.unloadAfter,
        exitAfterSeconds: opts.exitAfter,
        providers: opts.providers,
        dtype: opts.dtype,
        threads: opts.threads,
        segmentation: opts.segmentation,
        log: createLogger(readLogSettings()),
      });
      // Stop: claim nothing more and finish the batch in hand; past --shutdown-seconds, hand its jobs back and exit.
      const stop = () => {
        worker.stop();
        setTimeout(() => void worker.handBack().finally(() => process.exit(0)), opts.shutdownSeconds * 1000).unref();
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      await worker.run();
    });
}
