// `murmur model download` against a local HTTP server that mirrors the
// Hugging Face hub's file layout (/<owner>/<repo>/resolve/<revision>/<path>).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel } from '../src/whisper/index.ts';
import { generatedModel } from './helpers/models.ts';

const run = promisify(execFile);
let source: string;
let hub: Server;
let hubUrl: string;
const requests: { path: string; authorization?: string }[] = [];

beforeAll(async () => {
  source = await generatedModel({}, 2, ['fp32', 'q8']);
  hub = createServer((req, res) => {
    requests.push({ path: req.url!, authorization: req.headers.authorization });
    const m = req.url!.match(/^\/onnx-community\/whisper-test\/resolve\/main\/(.+)$/);
    const file = m && join(source, decodeURIComponent(m[1]));
    if (!file || !existsSync(file)) return void res.writeHead(404).end('Entry not found');
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve));
  hubUrl = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => hub.close(() => resolve())));

const download = (...args: string[]) =>
  run(process.execPath, ['src/cli/bin.js', 'model', 'download', ...args], { env: { ...process.env, HF_TOKEN: 'hf_test_token' } });

describe('murmur model download', () => {
  it('fetches the folder a runtime can load, byte for byte, with the token', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'murmur-dl-')), 'whisper-test');
    const { stdout } = await download('whisper-test', '--hub', hubUrl, '--out', out, '--dtypes', 'fp32,q8');
    expect(stdout).toContain(`MURMUR_MODEL_DIR=${out}`);
    for (const f of [
      'config.json',
      'generation_config.json',
      'preprocessor_config.json',
      'tokenizer.json',
      'onnx/encoder_model.onnx',
      'onnx/decoder_model_merged_quantized.onnx',
    ]) {
      expect(readFileSync(join(out, f)).equals(readFileSync(join(source, f)))).toBe(true);
    }
    expect(requests.every((r) => r.authorization === 'Bearer hf_test_token')).toBe(true);
    const model = await WhisperModel.load(out, { dtype: 'q8' });
    expect(model.folder.dims.nMels).toBe(80);
    await model.dispose();
  });

  it('takes the hub address from MURMUR_HUB_URL', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'murmur-dl-')), 'm');
    await run(process.execPath, ['src/cli/bin.js', 'model', 'download', 'onnx-community/whisper-test', '--out', out], {
      env: { ...process.env, MURMUR_HUB_URL: hubUrl },
    });
    expect(existsSync(join(out, 'onnx', 'decoder_model_merged.onnx'))).toBe(true);
  });

  it('a model the hub lacks: MODEL_NOT_FOUND naming the file, and nothing left behind', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'murmur-dl-')), 'missing');
    const err = await download('whisper-nonexistent', '--hub', hubUrl, '--out', out).catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/MODEL_NOT_FOUND: .*whisper-nonexistent.*config\.json: 404/);
    expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    const variant = await download('whisper-test', '--hub', hubUrl, '--out', out, '--dtypes', 'fp16').catch((e) => e);
    expect(variant.stderr).toMatch(/MODEL_NOT_FOUND: .*encoder_model_fp16\.onnx: 404/);
    expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
  });
});
