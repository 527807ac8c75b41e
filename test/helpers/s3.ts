// A real S3-compatible server for tests: s3rver on a loopback port, its
// objects in a temporary folder, with the bucket murmur uses. Credentials are
// s3rver's fixed pair, handed to the AWS SDK through its standard variables.
// It can be stopped and started again on the same port with the same objects.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

export interface S3Server {
  endpoint: string;
  bucket: string;
  /** The variables a murmur process needs to keep its audio there. */
  env: Record<string, string>;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startS3(bucket = 'murmur'): Promise<S3Server> {
  Object.assign(process.env, S3_ENV);
  const directory = mkdtempSync(join(tmpdir(), 'murmur-s3-'));
  let port = 0;
  let server: S3rver | null = null;
  const start = async () => {
    server = new S3rver({ port, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
    port = (await server.run()).port;
  };
  const stop = async () => {
    await server?.close();
    server = null;
  };
  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    env: { ...S3_ENV, MURMUR_S3_BUCKET: bucket, MURMUR_S3_ENDPOINT: endpoint, MURMUR_S3_FORCE_PATH_STYLE: '1' },
    stop,
    start,
    async close() {
      await stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
