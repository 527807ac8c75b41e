import { beforeAll, describe, expect, it } from 'vitest';
import { logMelSpectrogram } from '../src/whisper/index.ts';
import { melFilters } from '../src/whisper/features.ts';
import { RECORDINGS, recording, speech, tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { Reference } from './helpers/reference.ts';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe('logMelSpectrogram', () => {
  const references: Record<number, Reference> = {};
  beforeAll(async () => {
    references[80] = await Reference.load(await generatedModel({ nMels: 80 }));
    references[128] = await Reference.load(await generatedModel({ nMels: 128, vocabulary: 'v3' }));
  });

  it.each(RECORDINGS)('matches transformers.js within 1e-4 on the recording %s', async (name) => {
    const audio = recording(name);
    for (const nMels of [80, 128] as const) {
      expect(maxAbsDiff(logMelSpectrogram(audio, nMels), await references[nMels].features(audio))).toBeLessThan(1e-4);
    }
  });

  it('matches transformers.js within 1e-4 on espeak-ng speech', async () => {
    for (const text of ['The quick brown fox jumps over the lazy dog.', 'Batching many segments makes transcription cheap.']) {
      const audio = speech(text);
      expect(maxAbsDiff(logMelSpectrogram(audio, 80), await references[80].features(audio))).toBeLessThan(1e-4);
    }
  });

  it('matches transformers.js on a full 30 s window and on silence', async () => {
    const full = new Float32Array(480000);
    const a = recording(RECORDINGS[3]);
    for (let i = 0; i < full.length; i++) full[i] = a[i % a.length];
    expect(maxAbsDiff(logMelSpectrogram(full, 80), await references[80].features(full))).toBeLessThan(1e-4);
    const silence = new Float32Array(16000);
    expect(maxAbsDiff(logMelSpectrogram(silence, 80), await references[80].features(silence))).toBeLessThan(1e-4);
  });

  it('is [nMels, 3000] with a floor 8 (log10) below the maximum', () => {
    const out = logMelSpectrogram(tone(440, 2), 80);
    expect(out.length).toBe(80 * 3000);
    const max = out.reduce((a, b) => Math.max(a, b));
    const min = out.reduce((a, b) => Math.min(a, b));
    expect(max - min).toBeCloseTo(2, 5); // 8 / 4 after (x + 4) / 4
    // a 440 Hz tone is loudest in the mel bin whose filter covers 440 Hz
    const frame = Array.from({ length: 80 }, (_, m) => out[m * 3000 + 50]);
    const loudest = frame.indexOf(Math.max(...frame));
    const filters = melFilters(80);
    const bin440 = Math.round((440 * 400) / 16000);
    const coverage = Array.from({ length: 80 }, (_, m) => filters[m * 201 + bin440]);
    expect(loudest).toBe(coverage.indexOf(Math.max(...coverage)));
  });

  it('refuses more than 30 s', () => {
    expect(() => logMelSpectrogram(new Float32Array(480001), 80)).toThrow(/at most 480000 samples/);
  });
});
