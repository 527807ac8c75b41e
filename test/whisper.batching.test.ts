import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel, type SegmentRequest } from '../src/whisper/index.ts';
import { RECORDINGS, recording, speech, tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';

describe('batched decoding', () => {
  let model: WhisperModel;
  let requests: SegmentRequest[];
  beforeAll(async () => {
    model = await WhisperModel.load(await generatedModel({}, 3));
    const audios = [
      ...RECORDINGS.map(recording),
      speech('A worker gathers jobs for a short window.'),
      speech('Ein Arbeiter sammelt Aufträge.', 'de'),
      tone(220, 1.5),
      tone(880, 29.9, 0.1),
    ];
    const options: Omit<SegmentRequest, 'audio'>[] = [
      { language: 'en' },
      { language: 'en', timestamps: true },
      { language: 'de', task: 'translate' },
      {}, // language detected
      { timestamps: true }, // detected, with timestamps
      { language: 'fr', task: 'translate', timestamps: true, offset: 30 },
      { language: 'ja' },
      { language: 'en', timestamps: true, offset: 60 },
    ];
    // 16 segments of different lengths, languages and options
    requests = Array.from({ length: 16 }, (_, i) => ({ audio: audios[i % audios.length], ...options[(i * 3) % options.length] }));
  });
  afterAll(() => model.dispose());

  it('gives each segment the same tokens alone as in a batch of 16', async () => {
    const runsBefore = model.decoderRuns;
    const batched = await model.transcribe(requests, { batchSize: 16 });
    const batchedRuns = model.decoderRuns - runsBefore;
    let aloneRuns = 0;
    for (let i = 0; i < requests.length; i++) {
      const before = model.decoderRuns;
      const [alone] = await model.transcribe([requests[i]]);
      aloneRuns += model.decoderRuns - before;
      expect(batched[i].tokens, `segment ${i}`).toEqual(alone.tokens);
      expect(batched[i].language).toBe(alone.language);
      expect(batched[i].segments).toEqual(alone.segments);
      expect(batched[i].avgLogprob).toBeCloseTo(alone.avgLogprob, 4);
    }
    // the batch shares decoder runs: rows with and without timestamps join after one step
    expect(batchedRuns).toBeLessThan(aloneRuns / 8);
  });

  it('reports each segment as it finishes, and every segment once', async () => {
    const done: number[] = [];
    const results = await model.transcribe(requests.slice(0, 6), { batchSize: 4, onSegmentDone: (i) => done.push(i) });
    expect(done.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(results.every((r) => r.tokens.length > 0)).toBe(true);
  });

  it('keeps two transcriptions on one model apart when they run at once', async () => {
    const a = requests.slice(0, 5);
    const b = requests.slice(5, 12);
    const [alone1, alone2] = [await model.transcribe(a), await model.transcribe(b)];
    const [together1, together2] = await Promise.all([model.transcribe(a, { batchSize: 3 }), model.transcribe(b, { batchSize: 4 })]);
    expect(together1.map((r) => r.tokens)).toEqual(alone1.map((r) => r.tokens));
    expect(together2.map((r) => r.tokens)).toEqual(alone2.map((r) => r.tokens));
  });

  it('gives the same tokens with the encoder run several windows at a time', async () => {
    const wide = await WhisperModel.load(model.folder.dir, { encoderBatchSize: 4 });
    const some = requests.slice(0, 6);
    expect((await wide.transcribe(some)).map((r) => r.tokens)).toEqual((await model.transcribe(some)).map((r) => r.tokens));
    await wide.dispose();
    await expect(WhisperModel.load(model.folder.dir, { encoderBatchSize: 0 })).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
  });

  it('carries offsets into segment times', async () => {
    const [at0, at60] = await model.transcribe([
      { audio: requests[0].audio, language: 'en', timestamps: true },
      { audio: requests[0].audio, language: 'en', timestamps: true, offset: 60 },
    ]);
    expect(at60.tokens).toEqual(at0.tokens);
    expect(at60.segments.length).toBe(at0.segments.length);
    at60.segments.forEach((s, i) => {
      expect(s.start - 60).toBeCloseTo(at0.segments[i].start, 6);
      expect(s.end - 60).toBeCloseTo(at0.segments[i].end, 6);
    });
  });
});
