// One murmur service: the API over the queue (SQLite or PostgreSQL) and the
// blob store (a folder or S3), the lease and upload sweepers, and the
// supervisor that runs workers as child processes. `murmur serve` (and
// `npm start`) run this; with PostgreSQL any number of them share the work.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { parseDtype, readModelFolder } from './whisper/modelFolder.ts';
import { syntheticShape, writeSyntheticModel } from './whisper/synthetic/index.ts';
import { createApiServer } from './api/server.ts';
import { UPLOAD_PREFIX } from './api/presignedUploads.ts';
import { ConfigError, type Config } from './config.ts';
import type { Logger } from './log.ts';
import type { JobQueue } from './queue/jobQueue.ts';
import { openQueue } from './queue/open.ts';
import type { BlobStore } from './storage/blobStore.ts';
import { openBlobStore } from './storage/open.ts';
import { Supervisor } from './supervisor/supervisor.ts';
import { WebhookSender, webhookMaster } from './webhooks/webhooks.ts';

const BIN = fileURLToPath(new URL('./cli/bin.js', import.meta.url));

export interface Service {
  url: string;
  queue: JobQueue;
  store: BlobStore;
  supervisor: Supervisor;
  close(): Promise<void>;
}

export async function startService(config: Config, log: Logger): Promise<Service> {
  const startedAt = Date.now();
  const modelDir = config.modelDir ?? (await syntheticModel(config.dataDir, log));
  // A model folder that cannot be read is found now, not when every job has failed three times.
  if (config.modelDir) {
    try {
      readModelFolder(config.modelDir, parseDtype(config.dtype));
    } catch (err) {
      throw new ConfigError(
        `MURMUR_MODEL_DIR: ${config.modelDir} is not a Whisper model folder murmur can load (${(err as Error).message})`,
      );
    }
  }
  const store = await openBlobStore(config, log);
  const queue = await openQueue(config, log);
  const master = await webhookMaster(queue, config);
  const api = createApiServer({ config, queue, store, log, webhookMaster: master, modelDir });
  const webhooks = new WebhookSender(queue, config, master, log);
  await new Promise<void>((resolve, reject) => {
    api.http.once('error', reject);
    api.http.listen(config.port, config.host, () => resolve());
  });
  const { port } = api.http.address() as AddressInfo;
  const url = `http://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host}:${port}/graphql`;
  if (config.auth === 'keys') await announceFirstKey(queue, url, log);

  const sweep = (what: string, task: () => Promise<unknown>) => () =>
    task().catch((err) => log.error({ event: 'sweep.failed', sweep: what, err }, `${what} failed: ${err.message}`));
  const recovered = await queue.expireLeases().catch(() => 0);
  if (recovered)
    log.info(
      { event: 'leases.recovered', jobs: recovered },
      `${recovered} job(s) held by workers of a previous run went back to the queue`,
    );
  const leaseSweeper = setInterval(
    sweep('lease sweep', () => queue.expireLeases()),
    Math.min(1000, (config.leaseSeconds * 1000) / 4),
  );
  // Once a minute: presigned uploads no job took, and workers gone quiet (the live list only reads within its window).
  const uploadSweeper = setInterval(
    sweep('upload sweep', () => expireUploads(queue, store, config.uploadExpirySeconds * 1000)),
    60_000,
  );
  // Audio an instance that died left behind (a done job's, an upload whose request died with it): at start, then hourly.
  // One instance alone (SQLite, audio in its data folder) writes its uploads: at start, any no job took is a previous run's.
  const alone = !config.databaseUrl && !config.s3;
  void sweep('audio sweep', () => sweepLeftAudio(queue, store, alone ? Date.now() - startedAt : config.uploadExpirySeconds * 1000))();
  const audioSweeper = setInterval(
    sweep('audio sweep', () => sweepLeftAudio(queue, store, config.uploadExpirySeconds * 1000)),
    3_600_000,
  );
  const workerSweeper = setInterval(
    sweep('worker sweep', () => queue.forgetQuietWorkers()),
    60_000,
  );
  // Retention: a quarter of the retention time between sweeps, from once a second to once an hour.
  const retentionMs = config.retentionDays * 86_400_000;
  const retentionSweeper = retentionMs
    ? setInterval(
        sweep('retention sweep', () => purgeFinished(queue, store, Date.now() - retentionMs)),
        Math.min(3_600_000, Math.max(1000, retentionMs / 4)),
      )
    : undefined;

  const supervisor = new Supervisor({
    queue,
    pool: config.workerPool,
    maxWorkers: config.maxWorkers,
    batchJobs: config.batchJobs,
    workerArgs: () => [
      BIN,
      'worker',
      '--api',
      url,
      '--model',
      modelDir,
      '--pool',
      config.workerPool,
      '--max-jobs',
      String(config.batchJobs),
      '--max-seconds',
      String(config.batchSeconds),
      '--batch-window-ms',
      String(config.batchWindowMs),
      '--unload-after',
      String(config.workerUnloadAfterSeconds),
      '--exit-after',
      String(config.workerExitAfterSeconds),
      '--providers',
      config.providers,
      '--dtype',
      config.dtype,
      '--threads',
      String(config.threads),
      '--segmentation',
      config.segmentation,
      '--shutdown-seconds',
      String(config.shutdownSeconds),
    ],
    // Workers log JSON lines whatever the terminal: the supervisor reads them and writes them again through this log.
    workerEnv: { ...process.env, MURMUR_WORKER_TOKEN: config.workerToken, MURMUR_LOG_LEVEL: config.log.level, MURMUR_LOG_FORMAT: 'json' },
    log,
  });
  supervisor.start();
  webhooks.start();
  const database = config.databaseUrl ? 'PostgreSQL' : `${config.dataDir}/murmur.sqlite`;
  log.info(
    { event: 'listening', url, database, store: store.name, maxWorkers: config.maxWorkers, pool: config.workerPool },
    `murmur listening on ${url} (GraphiQL: open it in a browser); queue in ${database}, audio in ${store.name}; up to ${config.maxWorkers} embedded ${config.workerPool} worker(s)`,
  );

  return {
    url,
    queue,
    store,
    supervisor,
    /**
     * Stops gracefully: new work is refused at once; workers finish their batches or hand their jobs
     * back within MURMUR_SHUTDOWN_SECONDS (they still reach the API meanwhile); requests in flight
     * get what is left of that time.
     */
    async close() {
      const deadline = Date.now() + config.shutdownSeconds * 1000;
      clearInterval(leaseSweeper);
      clearInterval(uploadSweeper);
      clearInterval(workerSweeper);
      clearInterval(retentionSweeper);
      clearInterval(audioSweeper);
      api.drain();
      await supervisor.close(config.shutdownSeconds * 1000);
      await api.close(Math.max(0, deadline - Date.now()));
      // A delivery cut short is still owed in the database: another instance, or this one restarted, sends it.
      await webhooks.stop();
      await queue.close();
    },
  };
}

/**
 * The very first start makes an admin key, so a fresh install can be used at once. Its secret is
 * for the person starting murmur, printed this once as text on stderr, not into the log.
 */
async function announceFirstKey(queue: JobQueue, url: string, log: Logger): Promise<void> {
  const first = await queue.keys.createFirst();
  if (!first) return;
  log.info(
    { event: 'key.first', keyId: first.key.id },
    'no API key existed: made an admin key (its secret is printed on stderr, this once)',
  );
  const bar = '='.repeat(78);
  process.stderr.write(
    `${bar}\nNo API key existed, so murmur made an admin key. It is shown this once (only its hash is stored):\n\n` +
      `  export MURMUR_API_KEY=${first.secret}\n\n` +
      `The dashboard with the key: ${url.replace(/\/graphql$/, '/')}?key=${first.secret}\n` +
      `GraphiQL with the key: ${url}?key=${first.secret}\n` +
      `More keys: npx murmur keys create --name NAME [--tenant T] [--role client|admin]\n${bar}\n`,
  );
}

/** Jobs finished before `before` are deleted with their audio (a done job's is gone already; a failed or cancelled one's is not). */
export async function purgeFinished(queue: JobQueue, store: BlobStore, before: number): Promise<number> {
  const BATCH = 500;
  let purged = 0;
  for (;;) {
    const jobs = await queue.purgeFinished(before, BATCH);
    for (const job of jobs) await store.delete(job.blobKey);
    purged += jobs.length;
    if (jobs.length < BATCH) return purged;
  }
}

/**
 * Stored audio under `prefix` no job needs: a done job's, or one no job took within `expiryMs` (a
 * presigned upload never used, an upload whose request died with its instance).
 */
async function sweepAudio(queue: JobQueue, store: BlobStore, prefix: string, expiryMs: number): Promise<number> {
  const before = Date.now() - expiryMs;
  let removed = 0;
  for await (const blob of store.list(prefix)) {
    const job = await queue.findByBlobKey(blob.key);
    if (job ? job.status !== 'DONE' : blob.lastModified >= before) continue;
    await store.delete(blob.key);
    removed++;
  }
  return removed;
}

/** Presigned uploads no job took within the expiry (once a minute). */
export const expireUploads = (queue: JobQueue, store: BlobStore, expiryMs: number) => sweepAudio(queue, store, UPLOAD_PREFIX, expiryMs);

/** Audio a dead instance left among the stored uploads (at start, then hourly: it reads every one). */
export const sweepLeftAudio = (queue: JobQueue, store: BlobStore, expiryMs: number) => sweepAudio(queue, store, 'uploads/', expiryMs);

/** With no model configured, the generated one: meaningless text, and the service says so loudly. */
async function syntheticModel(dataDir: string, log: Logger): Promise<string> {
  const dir = join(dataDir, 'model');
  if (!existsSync(join(dir, 'config.json'))) {
    log.info({ event: 'model.generating', dir }, `generating the synthetic whisper-tiny-sized model into ${dir} (once) …`);
    await writeSyntheticModel(dir, syntheticShape('tiny'), 1);
  }
  log.warn(
    { event: 'model.synthetic', dir },
    `MURMUR_MODEL_DIR is not set: using the SYNTHETIC model in ${dir}. Its weights are random: every transcript it writes is MEANINGLESS. ` +
      'Get real weights with `npx murmur model download whisper-tiny` and set MURMUR_MODEL_DIR.',
  );
  return dir;
}
