// vitest globalSetup: a real PostgreSQL for the tests. MURMUR_TEST_DATABASE_URL
// points at one already running; otherwise a throwaway cluster is started and
// removed afterwards.
import type { TestProject } from 'vitest/node';
import { startPostgresCluster } from './postgresCluster.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}

export default async function setup(project: TestProject) {
  if (process.env.MURMUR_TEST_DATABASE_URL) {
    project.provide('postgresUrl', process.env.MURMUR_TEST_DATABASE_URL);
    return;
  }
  const cluster = await startPostgresCluster();
  project.provide('postgresUrl', cluster.url);
  return () => cluster.remove();
}
