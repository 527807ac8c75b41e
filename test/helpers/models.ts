// Generated models for tests, written once per test file into a temporary folder.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticShape, writeSyntheticModel, type SyntheticShape } from '../../src/whisper/synthetic/index.ts';

export async function generatedModel(
  overrides: Partial<SyntheticShape> = {},
  seed = 1,
  dtypes: ('fp32' | 'fp16' | 'q8')[] = ['fp32'],
): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'murmur-model-')), 'model');
  await writeSyntheticModel(dir, syntheticShape('test', overrides), seed, dtypes);
  return dir;
}
