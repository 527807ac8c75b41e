import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel, type SegmentRequest, type SegmentResult } from '../src/whisper/index.ts';
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

  it('gives a window the same tokens when it joins a batch already decoding, and the joined rows share its runs', async () => {
    // Rows sampled at temperature 1 end where they happen to sample <|endoftext|>: rows leave from the middle
    // of the running set, and the rows after them move into their slots.
    const sampled = (r: SegmentRequest, i: number) => ({ audio: r.audio, language: 'en', temperatures: [1], seed: i });
    const first = requests.slice(0, 8).map(sampled);
    const later = requests.slice(8, 12).map(sampled);
    const runs = async (work: () => Promise<unknown>) => {
      const before = model.decoderRuns;
      await work();
      return model.decoderRuns - before;
    };
    let alone: SegmentResult[] = [];
    let firstAlone: SegmentResult[] = [];
    const firstRuns = await runs(async () => (firstAlone = await model.transcribe(first)));
    const laterRuns = await runs(async () => (alone = await model.transcribe(later)));
    let joined: SegmentResult[] = [];
    let firstJoined: SegmentResult[] = [];
    const together = await runs(async () => {
      const running = model.transcribe(first).then((r) => (firstJoined = r));
      // Join once the first call's rows are under way.
      const start = model.engineStats.steps;
      while (model.engineStats.steps < start + 5) await new Promise((r) => setImmediate(r));
      joined = await model.transcribe(later);
      await running;
    });
    expect(joined.map((r) => r.tokens)).toEqual(alone.map((r) => r.tokens));
    expect(joined.map((r) => r.segments)).toEqual(alone.map((r) => r.segments));
    expect(firstJoined.map((r) => r.tokens)).toEqual(firstAlone.map((r) => r.tokens));
    // It joined the running batch: it caught up with it and shared its runs, far fewer than one call after the other.
    expect(together).toBeLessThan(firstRuns + laterRuns / 2);
  });

  it('keeps each row with its own audio when rows leave from the middle of the running set and others join', async () => {
    // Word timings read the cross-attention keys a row carries: a row moved into a slot another left must
    // bring its own. Three rows are cancelled a few steps in (their slots empty), three more join later.
    const timed = await WhisperModel.load(await generatedModel({ crossAttentions: true, tokensPerWindow: 30 }, 5));
    try {
      const windows = requests.slice(0, 11).map((r) => ({ audio: r.audio, language: 'en', wordTimestamps: true }));
      const alone: SegmentResult[] = [];
      for (const w of windows) alone.push((await timed.transcribe([w]))[0]);
      const before = timed.engineStats;
      const start = before.steps;
      const running = timed.transcribe(windows.slice(0, 8), { abandoned: (i) => i < 3 && timed.engineStats.steps >= start + 4 });
      while (timed.engineStats.steps < start + 8) await new Promise((r) => setImmediate(r));
      const joined = await timed.transcribe(windows.slice(8));
      const stayed = await running;
      expect(timed.engineStats.rowsMoved).toBeGreaterThan(before.rowsMoved);
      expect(stayed.slice(0, 3)).toEqual([undefined, undefined, undefined]);
      expect(stayed.slice(3).map((r) => r.segments)).toEqual(alone.slice(3, 8).map((r) => r.segments));
      expect(joined.map((r) => r.segments)).toEqual(alone.slice(8).map((r) => r.segments));
      expect(alone.every((r) => r.segments.some((s) => (s.words?.length ?? 0) > 0))).toBe(true);
    } finally {
      await timed.dispose();
    }
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
