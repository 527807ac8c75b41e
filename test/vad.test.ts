// Voice-activity segmentation: Silero VAD on a constructed recording, the
// packing of regions into ≤ 30 s chunks, and transcription of the chunks with
// times on the recording's own timeline.
import { beforeAll, describe, expect, it } from 'vitest';
import { chunkAudio, recordingTime, SileroVad, speechChunks, speechChunksOf, speechRegions, type Span } from '../src/vad/index.ts';
import { WhisperModel } from '../src/whisper/index.ts';
import { transcribeMany } from '../src/whisper/longAudio.ts';
import { recording, RECORDINGS, speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';

const RATE = 16000;
let vad: SileroVad;
let audio: Float32Array;
/** Where speech really is, in seconds: the first and last sample above the noise floor of each spoken part. */
let truth: [number, number][];

beforeAll(async () => {
  vad = await SileroVad.load();
  const first = speech('The quick brown fox jumps over the lazy dog, and then it runs away into the forest.');
  const second = speech('Meanwhile, the dog sleeps in the warm afternoon sun.');
  let seed = 7;
  const noise = Float32Array.from({ length: RATE * 5 }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.1);
  const parts = [first, new Float32Array(RATE * 20), second, noise];
  audio = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  truth = [];
  let at = 0;
  for (const [i, part] of parts.entries()) {
    audio.set(part, at);
    if (i === 0 || i === 2) {
      let from = 0;
      let to = part.length - 1;
      while (Math.abs(part[from]) < 0.01) from++;
      while (Math.abs(part[to]) < 0.01) to--;
      truth.push([(at + from) / RATE, (at + to) / RATE]);
    }
    at += part.length;
  }
});

describe('voice activity', () => {
  it('finds the speech and not the 20 s of silence or the noise, within 200 ms', async () => {
    const probs = await vad.probabilities(audio);
    const regions = speechRegions(probs, audio.length).map((r) => [r.start / RATE, r.end / RATE]);
    expect(regions).toHaveLength(2);
    for (const [i, [start, end]] of regions.entries()) {
      expect(Math.abs(start - truth[i][0])).toBeLessThan(0.2);
      expect(Math.abs(end - truth[i][1])).toBeLessThan(0.2);
    }
  });

  it('gives each recording the same probabilities alone or after another, and refuses two at once', async () => {
    const other = recording(RECORDINGS[2]);
    const fresh = await (await SileroVad.load()).probabilities(other);
    await vad.probabilities(audio);
    expect(await vad.probabilities(other)).toEqual(fresh);
    const [first, second] = await Promise.allSettled([vad.probabilities(audio), vad.probabilities(other)]);
    expect(first.status).toBe('fulfilled');
    expect(second).toMatchObject({
      status: 'rejected',
      reason: expect.objectContaining({ message: expect.stringMatching(/one recording at a time/) }),
    });
  });

  it('packs regions into chunks of at most 30 s, in order, and splits longer speech', async () => {
    const talk = recording(RECORDINGS[3]);
    const long = new Float32Array(RATE * 75);
    for (let i = 0; i < long.length; i++) long[i] = talk[i % talk.length];
    const chunks = await speechChunksOf(vad, long);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    const spans = chunks.flat();
    for (const c of chunks) expect(c.reduce((n, s) => n + s.end - s.start, 0)).toBeLessThanOrEqual(30 * RATE);
    for (const [i, s] of spans.entries()) {
      expect(s.end).toBeGreaterThan(s.start);
      if (i > 0) expect(s.start).toBeGreaterThanOrEqual(spans[i - 1].end);
    }
    // Regions share a chunk, silence cut out, up to 30 s of speech; the next region starts a new one.
    const probs = new Float32Array(Math.ceil((RATE * 100) / 512));
    const regions: Span[] = [0, 12, 24, 50].map((s) => ({ start: s * RATE, end: (s + 8) * RATE }));
    expect(speechChunks(regions, probs).map((c) => c.map((s) => [s.start / RATE, s.end / RATE]))).toEqual([
      [
        [0, 8],
        [12, 20],
        [24, 32],
      ],
      [[50, 58]],
    ]);
    // A chunk's audio is its spans back to back, and its times map back onto the recording.
    const chunk = speechChunks(regions, probs)[0];
    expect(chunkAudio(long, chunk)).toHaveLength(24 * RATE);
    expect([
      recordingTime(chunk, 0),
      recordingTime(chunk, 7.5),
      recordingTime(chunk, 8, true),
      recordingTime(chunk, 8),
      recordingTime(chunk, 17),
    ]).toEqual([0, 7.5, 8, 12, 25]);
  });

  it("transcribes only the chunks, with segment times on the recording's timeline", async () => {
    const model = await WhisperModel.load(await generatedModel());
    const chunks = await speechChunksOf(vad, audio);
    const [t] = await transcribeMany(model, [{ samples: audio, chunks, language: 'en', timestamps: true }]);
    await model.dispose();
    expect(t.segments.length).toBeGreaterThan(0);
    const spans = chunks.flat();
    const inSpeech = (t: number) => spans.some((s) => t >= s.start / RATE - 0.01 && t <= s.end / RATE + 0.01);
    for (const [i, s] of t.segments.entries()) {
      if (i > 0) expect(s.start).toBeGreaterThanOrEqual(t.segments[i - 1].start);
      // Segments start and end in speech; none lies in the silence or the noise.
      expect(inSpeech(s.start) && inSpeech(s.end)).toBe(true);
    }
    // Both regions share one chunk; the transcript reaches into the second, past the 20 s of silence.
    expect(chunks).toHaveLength(1);
    expect(t.segments.at(-1)!.end).toBeGreaterThan(truth[1][0]);
    // A recording without speech costs no decoding and yields no text.
    const [quiet] = await transcribeMany(model, [
      { samples: new Float32Array(RATE * 10), chunks: await speechChunksOf(vad, new Float32Array(RATE * 10)), language: 'en' },
    ]).catch(async () => [null]);
    expect(quiet).toMatchObject({ text: '', segments: [] });
  });
});
