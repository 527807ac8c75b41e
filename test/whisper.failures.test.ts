// Failure paths: each a clear, typed error that names the problem.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel } from '../src/whisper/index.ts';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { recordingLogger } from './helpers/log.ts';

describe('a model folder that cannot be used', () => {
  let good: string;
  const broken = (change: (dir: string) => void): string => {
    const dir = join(mkdtempSync(join(tmpdir(), 'murmur-broken-')), 'model');
    cpSync(good, dir, { recursive: true });
    change(dir);
    return dir;
  };
  beforeAll(async () => {
    good = await generatedModel();
  });

  it('a missing folder', async () => {
    await expect(WhisperModel.load('/nonexistent/whisper')).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: expect.stringContaining('/nonexistent/whisper does not exist'),
    });
  });

  it('a folder without config.json', async () => {
    const dir = broken((d) => rmSync(join(d, 'config.json')));
    await expect(WhisperModel.load(dir)).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: expect.stringContaining('has no config.json'),
    });
  });

  it('malformed JSON', async () => {
    const dir = broken((d) => writeFileSync(join(d, 'generation_config.json'), '{ "decoder_start_token_id": '));
    await expect(WhisperModel.load(dir)).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('generation_config.json'),
    });
  });

  it('a config that is not Whisper, or lacks a field', async () => {
    const notWhisper = broken((d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'bert' })));
    await expect(WhisperModel.load(notWhisper)).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('not "whisper"'),
    });
    const noMels = broken((d) => writeFileSync(join(d, 'preprocessor_config.json'), JSON.stringify({ feature_size: 64 })));
    await expect(WhisperModel.load(noMels)).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('feature_size 64'),
    });
  });

  it('a corrupt ONNX file', async () => {
    const dir = broken((d) => writeFileSync(join(d, 'onnx', 'encoder_model.onnx'), 'not a protobuf'));
    await expect(WhisperModel.load(dir)).rejects.toMatchObject({ code: 'PROVIDER_UNAVAILABLE', message: expect.stringContaining('cpu:') });
  });

  it('a missing ONNX variant, and an unknown dtype', async () => {
    await expect(WhisperModel.load(good, { dtype: 'fp16' })).rejects.toMatchObject({
      code: 'MODEL_VARIANT_MISSING',
      message: expect.stringContaining('onnx/encoder_model_fp16.onnx'),
    });
    await expect(WhisperModel.load(good, { dtype: 'q4' })).rejects.toMatchObject({
      code: 'MODEL_VARIANT_MISSING',
      message: expect.stringContaining('encoder_model_q4.onnx'),
    });
    await expect(WhisperModel.load(good, { dtype: 'fp64' })).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
      message: expect.stringContaining('unknown model dtype "fp64"'),
    });
  });
});

describe('execution providers', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await generatedModel();
  });

  it('falls back past an unavailable provider with one warning saying which is used and why', async () => {
    const { log, entries } = recordingLogger();
    const model = await WhisperModel.load(dir, { providers: 'cuda,cpu', log });
    expect(model.provider).toBe('cpu');
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      event: 'model.provider',
      level: 40,
      provider: 'cpu',
      skipped: [{ provider: 'cuda', reason: expect.any(String) }],
    });
    const [r] = await model.transcribe([{ audio: tone(440, 1), language: 'en' }]);
    expect(r.tokens.length).toBeGreaterThan(0);
    await model.dispose();
  });

  it('fails with PROVIDER_UNAVAILABLE when no provider in the list loads', async () => {
    await expect(WhisperModel.load(dir, { providers: ['cuda'] })).rejects.toMatchObject({
      code: 'PROVIDER_UNAVAILABLE',
      message: expect.stringContaining('cuda:'),
    });
  });

  it('refuses an unknown provider name', async () => {
    await expect(WhisperModel.load(dir, { providers: 'cpu,tpu' })).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
      message: expect.stringContaining('"tpu"'),
    });
  });
});

describe('requests that cannot be decoded', () => {
  let model: WhisperModel;
  beforeAll(async () => {
    model = await WhisperModel.load(await generatedModel());
  });

  it('an unknown language code', async () => {
    await expect(model.transcribe([{ audio: tone(440, 1), language: 'xx' }])).rejects.toMatchObject({
      code: 'UNKNOWN_LANGUAGE',
      message: expect.stringContaining('"xx"'),
    });
  });

  it('a segment longer than 30 s', async () => {
    await expect(model.transcribe([{ audio: new Float32Array(480001) }])).rejects.toMatchObject({ code: 'SEGMENT_TOO_LONG' });
  });

  it('an unknown task', async () => {
    await expect(model.transcribe([{ audio: tone(440, 1), task: 'summarize' as never }])).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
      message: expect.stringContaining('"summarize"'),
    });
  });
});
