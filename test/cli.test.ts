// The murmur command, run as a real child process.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import wav from 'node-wav';
import { beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel } from '../src/whisper/index.ts';
import { POCKETSPHINX, RECORDINGS, recording, speechFile } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';

const run = promisify(execFile);
const murmur = (...args: string[]) => run(process.execPath, ['src/cli/bin.js', ...args], { maxBuffer: 1 << 24 });

describe('murmur transcribe', () => {
  let model: string;
  beforeAll(async () => {
    model = await generatedModel({}, 4);
  });

  it('prints one JSON object with text, language, segments and the generated tokens', async () => {
    const file = join(POCKETSPHINX, RECORDINGS[2]);
    const { stdout, stderr } = await murmur(
      'transcribe',
      file,
      '--model',
      model,
      '--language',
      'en',
      '--timestamps',
      '--json',
      '--segmentation',
      'fixed',
    );
    const result = JSON.parse(stdout);
    expect(Object.keys(result).sort()).toEqual(['language', 'segments', 'text', 'tokens']);
    expect(result.language).toBe('en');
    // a generated model says so, in the log on stderr (JSON lines: stderr is not a terminal)
    const log = stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log).toContainEqual(expect.objectContaining({ event: 'model.synthetic', level: 40 }));
    // the same as the runtime in-process
    const m = await WhisperModel.load(model);
    const [expected] = await m.transcribe([{ audio: recording(RECORDINGS[2]), language: 'en', timestamps: true }]);
    await m.dispose();
    expect(result.tokens).toEqual(expected.tokens);
    // each segment with its window's confidence, and where the window starts (one fixed window: 0)
    const { avgLogprob, compressionRatio, noSpeechProb, temperature } = expected;
    expect(result.segments).toEqual(
      expected.segments.map((seg) => ({ ...seg, seek: 0, avgLogprob, compressionRatio, noSpeechProb, temperature })),
    );
    expect(result.text).toBe(expected.text);
  });

  it('detects the language, translates, and prints plain text without --json', async () => {
    const file = speechFile('Where is the railway station?');
    const { stdout } = await murmur('transcribe', file, '--model', model, '--task', 'translate');
    expect(stdout.trim().length).toBeGreaterThan(0);
    expect(() => JSON.parse(stdout)).toThrow();
  });

  it('cuts audio longer than 30 s into windows with times on the whole recording, words included', async () => {
    const a = recording(RECORDINGS[3]);
    const long = new Float32Array(16000 * 65);
    for (let i = 0; i < long.length; i++) long[i] = a[i % a.length];
    const file = join(mkdtempSync(join(tmpdir(), 'murmur-long-')), 'long.wav');
    writeFileSync(file, wav.encode([long], { sampleRate: 16000, bitDepth: 16 }));
    const { stdout } = await murmur(
      'transcribe',
      file,
      '--model',
      model,
      '--timestamps',
      '--word-timestamps',
      '--json',
      '--segmentation',
      'fixed',
    );
    const result = JSON.parse(stdout);
    const starts = result.segments.map((s: { start: number }) => s.start);
    expect(starts.some((s: number) => s >= 60)).toBe(true);
    expect([...starts].sort((x, y) => x - y)).toEqual(starts);
    // words on the recording's timeline, inside their segments, none after the audio
    type Timed = { start: number; end: number };
    const words: Timed[] = result.segments.flatMap((s: { words: Timed[] }) => s.words);
    expect(words.some((w) => w.start >= 60)).toBe(true);
    for (const s of result.segments)
      for (const w of s.words) expect(w.start >= s.start - 1e-9 && w.end <= s.end + 1e-9 && w.end <= 65).toBe(true);
    expect(words.map((w) => w.start)).toEqual([...words.map((w) => w.start)].sort((x, y) => x - y));
  });

  it('reads MP3, FLAC and M4A with ffmpeg; without it (MURMUR_FFMPEG=off) MP3 still, M4A refused with a code', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-cli-formats-'));
    const source = join(POCKETSPHINX, RECORDINGS[2]);
    const files = ['talk.mp3', 'talk.flac', 'talk.m4a'].map((name) => {
      execFileSync('ffmpeg', ['-v', 'error', '-i', source, '-ar', '44100', '-ac', '2', join(dir, name)]);
      return join(dir, name);
    });
    // side by side: each run is mostly its own start-up
    const results = await Promise.all(
      files.map(async (file) =>
        JSON.parse((await murmur('transcribe', file, '--model', model, '--language', 'en', '--timestamps', '--json')).stdout),
      ),
    );
    for (const result of results) {
      expect(result.language).toBe('en');
      expect(result.segments.length).toBeGreaterThan(0);
      expect(result.segments.at(-1).end).toBeLessThanOrEqual(7.11);
    }
    const env = { ...process.env, MURMUR_FFMPEG: 'off' };
    const [mp3, m4a] = await Promise.all([
      run(process.execPath, ['src/cli/bin.js', 'transcribe', files[0], '--model', model, '--json'], { env }),
      run(process.execPath, ['src/cli/bin.js', 'transcribe', files[2], '--model', model], { env }).catch((e) => e),
    ]);
    expect(JSON.parse(mp3.stdout).segments.length).toBeGreaterThan(0);
    expect(m4a.code).toBe(1);
    expect(m4a.stderr).toMatch(/AUDIO_UNSUPPORTED: .*needs ffmpeg/);
  });

  it('refuses a file that is not audio, and a missing model, with a code and a non-zero exit', async () => {
    const notAudio = join(mkdtempSync(join(tmpdir(), 'murmur-bad-')), 'notes.wav');
    writeFileSync(notAudio, 'these are not samples');
    await expect(murmur('transcribe', notAudio, '--model', model)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('AUDIO_UNDECODABLE'),
    });
    await expect(murmur('transcribe', join(POCKETSPHINX, RECORDINGS[0]), '--model', '/nonexistent')).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('MODEL_NOT_FOUND'),
    });
  });
});

describe('murmur model synthetic', () => {
  it('writes a model folder in the onnx-community layout with the requested shape', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'murmur-gen-')), 'en-model');
    const { stdout } = await murmur(
      'model',
      'synthetic',
      '--out',
      out,
      '--vocabulary',
      'english',
      '--d-model',
      '32',
      '--decoder-layers',
      '3',
      '--heads',
      '2',
      '--tokens',
      '7',
      '--seed',
      '42',
      '--dtypes',
      'fp32,fp16',
    );
    expect(JSON.parse(stdout)).toMatchObject({ out, dModel: 32, decoderLayers: 3, heads: 2, tokensPerWindow: 7, seed: 42 });
    for (const f of [
      'config.json',
      'generation_config.json',
      'preprocessor_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'onnx/encoder_model.onnx',
      'onnx/decoder_model_merged.onnx',
      'onnx/encoder_model_fp16.onnx',
      'onnx/decoder_model_merged_fp16.onnx',
    ]) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ d_model: 32, decoder_layers: 3, decoder_attention_heads: 2, vocab_size: 1000 + 2 + 99 + 6 + 1501 });
    const m = await WhisperModel.load(out);
    const [r] = await m.transcribe([{ audio: recording(RECORDINGS[0]) }]);
    expect(r.tokens).toHaveLength(7);
    await m.dispose();
  });

  it('refuses a shape it cannot build', async () => {
    await expect(
      murmur('model', 'synthetic', '--out', join(tmpdir(), 'murmur-never'), '--d-model', '30', '--heads', '4'),
    ).rejects.toMatchObject({ stderr: expect.stringContaining('not divisible') });
  });
});

describe('murmur serve and murmur worker', () => {
  it('a bad configuration value stops the server with a message naming the variable', async () => {
    const err = await run(process.execPath, ['src/cli/bin.js', 'serve'], {
      env: { ...process.env, PORT: 'eighty', MURMUR_MAX_ATTEMPTS: '0' },
    }).catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/CONFIG_INVALID: .*PORT/);
    expect(err.stderr).toMatch(/MURMUR_MAX_ATTEMPTS/);
  });

  it('a worker without a token refuses to start', async () => {
    const env = { ...process.env };
    delete env.MURMUR_WORKER_TOKEN;
    const err = await run(process.execPath, ['src/cli/bin.js', 'worker', '--api', 'http://127.0.0.1:9/graphql', '--model', 'nowhere'], {
      env,
    }).catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/UNAUTHENTICATED: no worker token/);
  });
});
