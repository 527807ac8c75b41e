// The embedded service on one machine: SQLite queue, local blob directory,
// the API, the lease sweeper, and the supervisor that runs workers as child
// processes. `murmur serve` (and `npm start`) run this.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { syntheticShape, writeSyntheticModel } from '../worker/whisper/synthetic/index.ts';
import { createApiServer } from './api/server.ts';
import { WorkerRegistry } from './api/workers.ts';
import type { Config } from './config.ts';
import { openDatabase } from './queue/database.ts';
import { JobQueue } from './queue/queue.ts';
import { LocalBlobStore } from './storage/blobStore.ts';
import { Supervisor } from './supervisor/supervisor.ts';

const BIN = fileURLToPath(new URL('./cli/bin.js', import.meta.url));

export interface Service {
  url: string;
  queue: JobQueue;
  supervisor: Supervisor;
  close(): Promise<void>;
}

export async function startService(config: Config, log: (line: string) => void = console.log): Promise<Service> {
  const modelDir = config.modelDir ?? (await syntheticModel(config.dataDir, log));
  const db = openDatabase(join(config.dataDir, 'murmur.sqlite'));
  const queue = new JobQueue(db, {
    leaseMs: config.leaseSeconds * 1000,
    maxAttempts: config.maxAttempts,
    retryBaseMs: config.retryBaseSeconds * 1000,
    retryMaxMs: config.retryMaxSeconds * 1000,
  });
  const store = new LocalBlobStore(join(config.dataDir, 'blobs'));
  // A finished job's transcript is all anyone needs; failed and cancelled ones keep their audio for retryJob.
  queue.events.on('job', (job) => {
    if (job.status === 'DONE') store.delete(job.blobKey).catch((err) => log(`could not delete the audio of job ${job.id}: ${err.message}`));
  });
  const workers = new WorkerRegistry(config.leaseSeconds * 1000 + 60_000);
  const api = createApiServer({ config, queue, store, workers, log });
  await new Promise<void>((resolve, reject) => {
    api.http.once('error', reject);
    api.http.listen(config.port, config.host, () => resolve());
  });
  const { port } = api.http.address() as AddressInfo;
  const url = `http://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host}:${port}/graphql`;

  const recovered = queue.expireLeases();
  if (recovered) log(`${recovered} job(s) held by workers of a previous run went back to the queue`);
  const sweeper = setInterval(() => queue.expireLeases(), Math.min(1000, (config.leaseSeconds * 1000) / 4));

  const supervisor = new Supervisor({
    queue,
    maxWorkers: config.maxWorkers,
    batchJobs: config.batchJobs,
    workerArgs: () => [
      BIN, 'worker',
      '--api', url,
      '--model', modelDir,
      '--max-jobs', String(config.batchJobs),
      '--max-seconds', String(config.batchSeconds),
      '--batch-window-ms', String(config.batchWindowMs),
      '--unload-after', String(config.workerUnloadAfterSeconds),
      '--exit-after', String(config.workerExitAfterSeconds),
      '--providers', config.providers,
      '--dtype', config.dtype,
      '--threads', String(config.threads),
      '--segmentation', config.segmentation,
    ],
    workerEnv: { ...process.env, MURMUR_WORKER_TOKEN: config.workerToken },
    log,
  });
  supervisor.start();
  log(`murmur listening on ${url} (GraphiQL: open it in a browser); data in ${config.dataDir}; up to ${config.maxWorkers} embedded worker(s)`);

  return {
    url,
    queue,
    supervisor,
    async close() {
      clearInterval(sweeper);
      await supervisor.close();
      await api.close();
      db.$client.close();
    },
  };
}

/** With no model configured, the generated one: meaningless text, and the service says so loudly. */
async function syntheticModel(dataDir: string, log: (line: string) => void): Promise<string> {
  const dir = join(dataDir, 'model');
  if (!existsSync(join(dir, 'config.json'))) {
    log(`generating the synthetic whisper-tiny-sized model into ${dir} (once) …`);
    await writeSyntheticModel(dir, syntheticShape('tiny'), 1);
  }
  const bar = '!'.repeat(78);
  log(`${bar}\n!! MURMUR_MODEL_DIR is not set: using the SYNTHETIC model in ${dir}.\n!! Its weights are random: every transcript it writes is MEANINGLESS.\n!! Get real weights with \`npx murmur model download whisper-tiny\` and set MURMUR_MODEL_DIR.\n${bar}`);
  return dir;
}
