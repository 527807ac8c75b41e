// Word timings. The machinery (attention of the alignment heads, standardised,
// median-filtered, aligned by DTW; words as Whisper splits them) is checked
// against transformers.js's token timestamps on 30-second windows of recorded
// speech, for models of several shapes, reading the rows the way
// transformers.js reads them. What openai/whisper does differently (which rows
// count, cropping to the audio's own frames, its word rules) is checked against
// its published code (whisper/timing.py) on worked cases.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignmentGraph } from '../src/whisper/alignmentGraph.ts';
import { WhisperModel, type SegmentResult } from '../src/whisper/index.ts';
import type { SyntheticShape } from '../src/whisper/synthetic/index.ts';
import {
  assignWords,
  dtw,
  findAlignment,
  medianFilter,
  mergePunctuations,
  prepareAlignment,
  type WordTiming,
} from '../src/whisper/timing.ts';
import { RECORDINGS, recording, speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { Reference } from './helpers/reference.ts';
import { Rng } from '../src/whisper/rng.ts';

const SHAPES: [string, Partial<SyntheticShape>, number][] = [
  ['multilingual, d 64, 2+2 layers', { tokensPerWindow: 30 }, 5],
  ['multilingual, d 128, 1+4 layers, 8 heads', { dModel: 128, encoderLayers: 1, decoderLayers: 4, heads: 8, ffnDim: 512 }, 19],
  [
    'large-v3 vocabulary, 128 mels, d 96, 2+3 layers, 6 heads',
    { vocabulary: 'v3', nMels: 128, dModel: 96, decoderLayers: 3, heads: 6, ffnDim: 384 },
    7,
  ],
];

/** 30 s of recorded speech, the recording looped. */
function window(name: string): Float32Array {
  const a = recording(name);
  return Float32Array.from({ length: 480000 }, (_, i) => a[i % a.length]);
}

describe.each(SHAPES)('word timings against transformers.js: %s', (_name, shape, seed) => {
  let model: WhisperModel;
  let reference: Reference;
  beforeAll(async () => {
    const dir = await generatedModel({ ...shape, crossAttentions: true }, seed);
    model = await WhisperModel.load(dir);
    reference = await Reference.load(dir);
  });
  afterAll(async () => {
    await model?.dispose();
    await reference?.dispose();
  });

  it('gives the same words, each ending within one frame, in one batch with windows that ask for none', async () => {
    const audios = [window(RECORDINGS[2]), window(RECORDINGS[3])];
    const ours = await model.transcribe(
      [{ audio: audios[1], language: 'en' }, ...audios.map((audio) => ({ audio, language: 'en', wordTimestamps: true }))],
      { alignmentRows: 'transformers.js' },
    );
    expect(ours[0].wordAlignment).toBeUndefined();
    const eot = model.folder.ids.eot;
    for (const [i, audio] of audios.entries()) {
      const theirs = await reference.tokenTimestamps(audio, 'en', eot);
      const mine = ours[i + 1];
      expect(mine.tokens).toEqual(theirs.tokens);
      const words = mine.wordAlignment!.alignment.filter((w) => w.word);
      expect(words.map((w) => w.word)).toEqual(theirs.words);
      let last = 0;
      words.forEach((w, k) => {
        last += theirs.wordTokens[k].length;
        expect(Math.abs(w.end - theirs.times[last - 1])).toBeLessThanOrEqual(0.02);
      });
      expect(new Set(words.map((w) => w.end)).size).toBeGreaterThan(2);
    }
    // a word's probability: the mean over its tokens of the text-only softmax where each is read (recomputed from transformers.js's logits for the first two words)
    const { ids } = model.folder;
    const head = [ids.sot, ids.languages.get('en')!, ids.transcribe!, ids.noTimestamps];
    const first = ours[1].wordAlignment!.alignment;
    let read = 0;
    for (const w of first.slice(0, 2)) {
      const probabilities: number[] = [];
      for (const token of w.tokens) {
        const logits = (await reference.logitsAfter(audios[0], [...head, ...ours[1].tokens.slice(0, read++)])).slice(0, ids.eot);
        const max = Math.max(...logits);
        probabilities.push(Math.exp(logits[token] - max) / logits.reduce((sum, x) => sum + Math.exp(x - max), 0));
      }
      expect(w.probability).toBeCloseTo(probabilities.reduce((a, b) => a + b, 0) / probabilities.length, 4);
    }
    // openai/whisper's rows give the same words; times may differ a little
    const openai = await model.transcribe(audios.map((audio) => ({ audio, language: 'en', wordTimestamps: true })));
    openai.forEach((r, i) => {
      expect(r.wordAlignment!.alignment.map((w) => w.word)).toEqual(ours[i + 1].wordAlignment!.alignment.map((w) => w.word));
      const words = r.segments.flatMap((s) => s.words!);
      expect(words.length).toBeGreaterThan(3);
      for (const [k, w] of words.entries()) {
        expect(w.end).toBeGreaterThanOrEqual(w.start);
        if (k > 0) expect(w.start).toBeGreaterThanOrEqual(words[k - 1].start);
        expect(w.probability).toBeGreaterThan(0);
        expect(w.probability).toBeLessThanOrEqual(1);
      }
    });
  });
});

describe('word probabilities and the alignment graph', () => {
  let dir: string;
  let model: WhisperModel;
  let reference: Reference;
  beforeAll(async () => {
    dir = await generatedModel({ ...SHAPES[0][1], crossAttentions: true }, SHAPES[0][2]);
    model = await WhisperModel.load(dir);
    reference = await Reference.load(dir);
  });
  afterAll(async () => {
    await model?.dispose();
    await reference?.dispose();
  });

  /** The first `count` words' probabilities: each the mean of its tokens' text-only softmax where decoding read them (`head`: the tokens before the sampled ones), from transformers.js's logits. */
  async function expectDecodedProbabilities(result: SegmentResult, audio: Float32Array, head: number[], count = 2): Promise<void> {
    const eot = model.folder.ids.eot;
    const textAt = result.tokens.flatMap((t, k) => (t < eot ? [k] : []));
    let read = 0;
    const words = result.wordAlignment!.alignment.filter((w) => w.word);
    expect(words.length).toBeGreaterThan(1);
    for (const w of words.slice(0, count)) {
      const probabilities: number[] = [];
      for (const token of w.tokens) {
        const k = textAt[read++];
        expect(result.tokens[k]).toBe(token);
        const logits = (await reference.logitsAfter(audio, [...head, ...result.tokens.slice(0, k)])).slice(0, eot);
        const max = Math.max(...logits);
        probabilities.push(Math.exp(logits[token] - max) / logits.reduce((sum, x) => sum + Math.exp(x - max), 0));
      }
      expect(w.probability).toBeCloseTo(probabilities.reduce((a, b) => a + b, 0) / probabilities.length, 4);
    }
  }

  it('are read where each token was decoded: between timestamps, and along the beam that won', async () => {
    const audio = window(RECORDINGS[2]);
    const { ids } = model.folder;
    const sot = [ids.sot, ids.languages.get('en')!, ids.transcribe!];
    const [stamped, beam, greedy] = await model.transcribe([
      { audio, language: 'en', wordTimestamps: true, timestamps: true },
      { audio, language: 'en', wordTimestamps: true, beamSize: 3 },
      { audio, language: 'en', wordTimestamps: true },
    ]);
    expect(stamped.tokens.some((t) => t >= ids.timestampBegin)).toBe(true);
    await expectDecodedProbabilities(stamped, audio, sot);
    // every word: where the beam left greedy's path, it took a token that was not the likeliest
    expect(beam.tokens).not.toEqual(greedy.tokens);
    await expectDecodedProbabilities(beam, audio, [...sot, ids.noTimestamps], Infinity);
  });

  it("cuts from the merged decoder a graph that computes only the alignment layers' cross-attention, the same weights", async () => {
    const merged = readFileSync(join(dir, 'onnx', 'decoder_model_merged.onnx'));
    const cut = alignmentGraph(merged, [0])!;
    const { onnx } = onnxProto;
    const branch = onnx.ModelProto.decode(merged).graph!.node![0].attribute!.find((a) => a.name === 'then_branch')!.g!;
    const nodes = onnx.ModelProto.decode(cut).graph!.node!;
    expect(nodes.length).toBeLessThan(branch.node!.length / 2); // layer 1 and the output projection left out
    expect(nodes.some((n) => n.opType === 'If')).toBe(false);
    // not the layout it expects: no answer rather than a wrong graph
    expect(alignmentGraph(readFileSync(join(dir, 'onnx', 'encoder_model.onnx')), [0])).toBeNull();
    expect(alignmentGraph(merged, [7])).toBeNull();

    const [full, alone] = await Promise.all([ort.InferenceSession.create(merged), ort.InferenceSession.create(cut)]);
    expect(alone.outputNames).toEqual(['cross_attentions.0']);
    const { decoderLayers, decoderHeads, headDim, audioContext, dModel } = model.folder.dims;
    const rng = new Rng(9);
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from([model.folder.ids.sot, 400, 401, 402], BigInt), [1, 4]),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(audioContext * dModel), [1, audioContext, dModel]),
      use_cache_branch: new ort.Tensor('bool', Uint8Array.of(1), [1]),
    };
    for (let l = 0; l < decoderLayers; l++) {
      for (const part of ['key', 'value']) {
        feeds[`past_key_values.${l}.decoder.${part}`] = new ort.Tensor('float32', new Float32Array(0), [1, decoderHeads, 0, headDim]);
        feeds[`past_key_values.${l}.encoder.${part}`] = new ort.Tensor(
          'float32',
          Float32Array.from({ length: decoderHeads * audioContext * headDim }, () => rng.next() - 0.5),
          [1, decoderHeads, audioContext, headDim],
        );
      }
    }
    const expected = (await full.run(feeds, ['cross_attentions.0']))['cross_attentions.0'].data as Float32Array;
    const got = (await alone.run(Object.fromEntries(alone.inputNames.map((n) => [n, feeds[n]]))))['cross_attentions.0']
      .data as Float32Array;
    expect(got).toEqual(expected);
    await Promise.all([full.release(), alone.release()]);
  });
});

describe("openai/whisper's parts", () => {
  let model: WhisperModel;
  beforeAll(async () => {
    model = await WhisperModel.load(await generatedModel({ crossAttentions: true }, 3));
  });
  afterAll(() => model?.dispose());

  it("crops the attention to a short window's own frames: no word ends after the audio, with timestamps or without", async () => {
    const audio = speech('Words are timed within the audio, never after it.');
    const seconds = audio.length / 16000;
    expect(seconds).toBeLessThan(10);
    for (const timestamps of [false, true]) {
      const [r] = await model.transcribe([{ audio, language: 'en', wordTimestamps: true, timestamps, offset: 100 }]);
      const words = r.segments.flatMap((s) => s.words!);
      expect(words.length).toBeGreaterThan(2);
      for (const w of words) {
        expect(w.start).toBeGreaterThanOrEqual(100);
        expect(w.end).toBeLessThanOrEqual(100 + seconds + 1e-9);
      }
    }
  });

  // Rows: <|sot|> <|en|> <|transcribe|> <|notimestamps|> four text tokens <|endoftext|>.
  const SOT = 3;
  const ROWS = SOT + 1 + 4 + 1;
  const FRAMES = 1500;
  const softmax = (x: number[]) => {
    const max = Math.max(...x);
    const e = x.map((v) => Math.exp(v - max));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  };
  /** Attention logits: each text row looks at its own place in the first 5 s, and every row far more at 28 s. */
  const logits = (frames: number) =>
    Array.from({ length: ROWS }, (_, r) =>
      Array.from(
        { length: frames },
        (_, f) => (r > SOT && r < ROWS - 1 && Math.abs(f - 50 * (r - SOT)) < 5 ? 4 : 0) + (f > 1395 && f < 1405 ? 9 : 0),
      ),
    );
  const tokenizer = () => model.tokenizer;

  it("takes the softmax over the audio's frames only (renormalising a cropped softmax is the same), so attention past the audio cannot pull words there", () => {
    const eot = model.folder.ids.eot;
    const textTokens = [300, 301, 302, 303];
    const common = { textTokens, rows: ROWS, sotLength: SOT, tokenProbabilities: [0.5, 0.5, 0.5, 0.5], medianFilterWidth: 7 };
    // openai: logits cropped to 250 frames (5 s), then softmax
    const cropped = [Float32Array.from(logits(FRAMES).flatMap((row) => softmax(row.slice(0, 250))))];
    const openai = findAlignment({ ...common, weights: cropped, frames: 250, audioFrames: 250 }, tokenizer(), eot, 'en');
    // ours: the decoder's softmax over all 1500 frames, cropped and renormalised
    const whole = [Float32Array.from(logits(FRAMES).flatMap((row) => softmax(row)))];
    const ours = findAlignment({ ...common, weights: whole, frames: FRAMES, audioFrames: 250 }, tokenizer(), eot, 'en');
    expect(ours.map((w) => [w.start, w.end])).toEqual(openai.map((w) => [w.start, w.end]));
    for (const w of ours) expect(w.end).toBeLessThanOrEqual(5);
    // uncropped, the pull at 28 s wins
    const uncropped = findAlignment({ ...common, weights: whole, frames: FRAMES, audioFrames: FRAMES }, tokenizer(), eot, 'en');
    expect(Math.max(...uncropped.map((w) => w.end))).toBeGreaterThan(20);
  });

  it('median-filters as median_filter does: reflected ends, a row too short left alone (the width-7 network against a plain sort)', () => {
    const plain = (row: number[], width: number) => {
      const pad = width >> 1;
      const n = row.length;
      return row.map(
        (_, i) =>
          Array.from(
            { length: width },
            (_, k) => row[Math.abs(i + k - pad) >= n ? 2 * (n - 1) - (i + k - pad) : Math.abs(i + k - pad)],
          ).sort((a, b) => a - b)[pad],
      );
    };
    for (let t = 0; t < 100; t++) {
      const row = Array.from({ length: 7 + (t % 30) }, (_, i) => Math.fround(Math.sin(i * 7.3 + t) * 3));
      for (const width of [7, 5, 3]) expect(Array.from(medianFilter(Float32Array.from(row), width))).toEqual(plain(row, width));
    }
    expect(Array.from(medianFilter(Float32Array.of(3, 1, 2), 7))).toEqual([3, 1, 2]);
  });

  it('warps time as dtw_cpu does, ties included: the diagonal only when strictly cheapest, then up, else left', () => {
    // at the last cell the diagonal and up cost the same (0) and left more (1): openai's rule still goes left
    expect(dtw(Float32Array.of(0, 0, 1, 5), 2, 2)).toEqual({ rows: [0, 1, 1], columns: [0, 0, 1] });
    // all equal: left
    expect(dtw(new Float32Array(6), 2, 3)).toEqual({ rows: [0, 1, 1, 1], columns: [0, 0, 1, 2] });
  });

  const timing = (word: string, start: number, end: number, tokens = [1]): WordTiming => ({ word, tokens, start, end, probability: 0.9 });

  it('merges punctuation as merge_punctuations does: opening marks into the next word, closing marks into the previous', () => {
    const words = [
      timing(' “', 0, 0.1),
      timing('Hello', 0.1, 0.5),
      timing(',', 0.5, 0.6),
      timing(' world', 0.6, 1),
      timing('.', 1, 1.1),
      timing('”', 1.1, 1.2),
      timing(' (', 1.2, 1.3),
      timing(' fine', 1.3, 1.6),
      timing(')', 1.6, 1.7),
    ];
    mergePunctuations(words);
    expect(words.map((w) => w.word)).toEqual(['', ' “Hello,', '', ' world.”', '', '', '', ' ( fine)', '']);
    // a merged word keeps its own times and gathers the tokens
    expect(words[1]).toMatchObject({ start: 0.1, end: 0.5, tokens: [1, 1, 1] });
  });

  it('shortens long words at sentence ends to twice the median word, before merging (add_word_timestamps)', () => {
    // durations 0.2, 0.3, 0.4, 3 (".": over 2 × median 0.35), 0.3 → median of non-zero 0.3
    const words = [
      timing(' One', 0, 0.2),
      timing(' two', 0.2, 0.5),
      timing(' three', 0.5, 0.9),
      timing('.', 0.9, 3.9),
      timing(' Four', 3.9, 4.2),
    ];
    const { alignment, medianDuration } = prepareAlignment(words);
    expect(medianDuration).toBeCloseTo(0.3, 10);
    expect(alignment[3]).toMatchObject({ word: '', start: 0.9 });
    expect(alignment[3].end).toBeCloseTo(1.5, 10);
    expect(alignment[2].word).toBe(' three.');
    // a long word after a sentence end starts twice the median before its end
    const after = prepareAlignment([timing(' One', 0, 0.3), timing('.', 0.3, 0.6), timing(' Two', 0.6, 3), timing(' three', 3, 3.3)]);
    expect(after.alignment[2].start).toBeCloseTo(3 - 2 * after.medianDuration, 10);
  });

  it('cuts back a long first word after a pause and prefers segment edges over long edge words (add_word_timestamps)', () => {
    // median 0.3 (capped at 0.7); the first word runs 2 s, starting 5 s after the last speech
    const prepared = {
      alignment: [timing(' Long', 5, 7), timing(' word', 7, 7.3), timing(' here', 7.3, 7.6), timing(' end', 7.6, 7.9)],
      medianDuration: 0.3,
    };
    const { segments, lastSpeech } = assignWords([{ start: 6.8, end: 7.9, textTokens: 4 }], prepared, 0, 30, 0);
    const words = segments[0].words;
    // words[0].end − last speech > 4 × median and its length > 2 × median: it starts 2 × median before its end
    expect(words[0].start).toBeCloseTo(7 - 0.6, 10);
    // the segment's start is after the (now shorter) first word's start: the segment takes the word's start
    expect(segments[0].start).toBeCloseTo(6.4, 10);
    expect(segments[0].end).toBeCloseTo(7.9, 10);
    expect(lastSpeech).toBeCloseTo(7.9, 10);
    // with speech until 6.5 s (no pause), the same word is left alone, and the segment takes its start
    const near = assignWords([{ start: 4.5, end: 7.9, textTokens: 4 }], prepared, 0, 30, 6.5);
    expect(near.segments[0].words[0].start).toBe(5);
    expect(near.segments[0].start).toBe(5);
    // a segment that begins inside its long first word, over 0.5 s after the word's start: the word starts there
    const inside = assignWords([{ start: 6, end: 7.9, textTokens: 4 }], prepared, 0, 30, 6.5);
    expect(inside.segments[0].words[0].start).toBeCloseTo(Math.max(0, Math.min(7 - 0.3, 6)), 10);
    expect(inside.segments[0].start).toBe(6);
    // a last word running over 0.5 s past its segment's end ends at the segment's end (or its start + median)
    const tail = assignWords(
      [{ start: 5, end: 7.4, textTokens: 4 }],
      { alignment: [timing(' a', 5, 5.3), timing(' b', 5.3, 5.6), timing(' c', 5.6, 5.9), timing(' d', 5.9, 8.5)], medianDuration: 0.3 },
      0,
      30,
      4.9,
    );
    expect(tail.segments[0].words[3].end).toBeCloseTo(7.4, 10);
    // no word ends after the window's audio
    const clipped = assignWords(
      [{ start: 0, end: 3, textTokens: 1 }],
      { alignment: [timing(' late', 2.9, 3.4)], medianDuration: 0.3 },
      10,
      3,
      10,
    );
    expect(clipped.segments[0].words[0].end).toBeLessThanOrEqual(13);
  });
});
