// Decoding beyond greedy: prompts (<|startofprev|>), each window's confidence,
// and sampling with openai/whisper's temperature fallback. Prompts are checked
// token for token against transformers.js given the same decoder prompt; the
// confidence figures against log-probabilities recomputed from its logits.
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressionRatio, FALLBACK_TEMPERATURES, logMelSpectrogram, WhisperModel } from '../src/whisper/index.ts';
import { advanceBeams, beamGroup, bestCandidate, type DecodeRow } from '../src/whisper/decoding.ts';
import { transcribeMany } from '../src/whisper/longAudio.ts';
import { RECORDINGS, recording, speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { Reference } from './helpers/reference.ts';

let dir: string;
let model: WhisperModel;
let reference: Reference;
const audios = () => [recording(RECORDINGS[0]), recording(RECORDINGS[2]), speech('Nothing accepted is ever lost.')];

beforeAll(async () => {
  dir = await generatedModel({ dModel: 96, decoderLayers: 3, heads: 6, ffnDim: 384, tokensPerWindow: 40 }, 23);
  model = await WhisperModel.load(dir);
  reference = await Reference.load(dir);
});
afterAll(async () => {
  await model?.dispose();
  await reference?.dispose();
});

/** log-softmax of `logits` at `token` over the tokens the rules leave (suppress_tokens; begin_suppress_tokens at the first step). */
function logprob(logits: Float32Array, token: number, suppressed: Set<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (!suppressed.has(i) && logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) if (!suppressed.has(i)) sum += Math.exp(logits[i] - max);
  return logits[token] - max - Math.log(sum);
}

describe('prompts', () => {
  it('decode the same tokens as transformers.js given the same <|startofprev|> prompt, in one batch with other prompt lengths', async () => {
    const { ids } = model.folder;
    const prompts = [model.encodePrompt('Murmur, Whisper'), model.encodePrompt('Cleveland and Marianne'), []];
    expect(prompts[0].length).toBeGreaterThan(2);
    const inputs = audios();
    const ours = await model.transcribe(inputs.map((audio, i) => ({ audio, language: 'en', prompt: prompts[i] })));
    const seen = new Set<string>();
    for (const [i, audio] of inputs.entries()) {
      const decoderPrompt = [
        ...(prompts[i].length ? [ids.startOfPrev!, ...prompts[i]] : []),
        ids.sot,
        ids.languages.get('en')!,
        ids.transcribe!,
        ids.noTimestamps,
      ];
      const theirs = await reference.generateFrom(audio, decoderPrompt, ids.eot);
      expect(ours[i].tokens).toEqual(theirs);
      seen.add(theirs.join());
    }
    // the prompt changes what is decoded: without it, the first input gives other tokens
    const [plain] = await model.transcribe([{ audio: inputs[0], language: 'en' }]);
    expect(plain.tokens).not.toEqual(ours[0].tokens);
    expect(seen.size).toBe(3);
  });

  it('keeps only the last maxLength / 2 − 1 prompt tokens, as openai/whisper cuts them', async () => {
    const long = Array.from({ length: 400 }, (_, i) => 300 + (i % 50));
    const limit = model.folder.rules.maxLength / 2 - 1;
    const [a] = await model.transcribe([{ audio: audios()[0], language: 'en', prompt: long }]);
    const [b] = await model.transcribe([{ audio: audios()[0], language: 'en', prompt: long.slice(-limit) }]);
    expect(a.tokens).toEqual(b.tokens);
  });

  it("conditions each window on the previous one's output when asked (and not by default)", async () => {
    const long = new Float32Array(16000 * 70);
    const parts = [recording(RECORDINGS[2]), recording(RECORDINGS[3]), recording(RECORDINGS[0])];
    parts.forEach((p, i) => long.set(p.subarray(0, Math.min(p.length, 16000 * 23)), i * 16000 * 30));
    const initial = model.encodePrompt('Elinor');
    const [conditioned] = await transcribeMany(model, [{ samples: long, language: 'en', prompt: 'Elinor', conditionOnPreviousText: true }]);
    const [plain] = await transcribeMany(model, [{ samples: long, language: 'en', prompt: 'Elinor' }]);
    // window by window: the same request made by hand, with the earlier windows' tokens as its prompt
    const windows = [0, 1, 2].map((k) => long.subarray(k * 16000 * 30, Math.min(long.length, (k + 1) * 16000 * 30)));
    let carried = initial;
    const expected: number[] = [];
    for (const w of windows) {
      const [r] = await model.transcribe([{ audio: w, language: 'en', prompt: carried }]);
      expected.push(...r.tokens);
      carried = [...carried, ...r.tokens];
    }
    expect(conditioned.tokens).toEqual(expected);
    // without conditioning every window gets the initial prompt only
    const first = await model.transcribe(windows.map((audio) => ({ audio, language: 'en', prompt: initial })));
    expect(plain.tokens).toEqual(first.flatMap((r) => r.tokens));
    expect(conditioned.tokens).not.toEqual(plain.tokens);
  });
});

describe('confidence', () => {
  it("matches log-probabilities recomputed from transformers.js's logits: average log-probability and no-speech probability, with and without a prompt", async () => {
    const { ids, rules } = model.folder;
    const prompt = model.encodePrompt('Marianne');
    for (const withPrompt of [false, true]) {
      // one recording each way, in a batch with another (forward passes of the reference are slow)
      const inputs = withPrompt ? [audios()[1], audios()[0]] : audios().slice(0, 2);
      const ours = await model.transcribe(inputs.map((audio) => ({ audio, language: 'en', ...(withPrompt && { prompt }) })));
      for (const [i, audio] of inputs.slice(0, 1).entries()) {
        const head = [...(withPrompt ? [ids.startOfPrev!, ...prompt] : []), ids.sot];
        const atSot = await reference.logitsAfter(audio, head);
        // compared as log-probabilities: a generated model gives <|nospeech|> a tiny probability
        expect(Math.log(ours[i].noSpeechProb)).toBeCloseTo(logprob(atSot, ids.noSpeech!, new Set()), 3);
        expect(ours[i].temperature).toBe(0);
        if (!withPrompt) continue; // the sum below is the same without a prompt, and a forward pass a token is slow
        const decoderPrompt = [...head, ids.languages.get('en')!, ids.transcribe!, ids.noTimestamps];
        const sampled = [...ours[i].tokens, ids.eot];
        let sum = 0;
        for (let k = 0; k < sampled.length; k++) {
          const logits = await reference.logitsAfter(audio, [...decoderPrompt, ...sampled.slice(0, k)]);
          const suppressed = new Set([...rules.suppressTokens, ...(k === 0 ? rules.beginSuppressTokens : [])]);
          sum += logprob(logits, sampled[k], suppressed);
        }
        expect(ours[i].avgLogprob).toBeCloseTo(sum / sampled.length, 3);
        expect(ours[i].compressionRatio).toBeCloseTo(compressionRatio(ours[i].text), 10);
      }
    }
  });

  it("measures compression as openai/whisper does (ratios computed with Python's zlib)", () => {
    expect(compressionRatio('hello hello hello hello hello hello hello hello hello hello')).toBeCloseTo(3.4705882352941178, 12);
    expect(compressionRatio('The quick brown fox jumps over the lazy dog.')).toBeCloseTo(0.8627450980392157, 12);
    expect(compressionRatio('Grüße aus Köln, 東京から')).toBeCloseTo(0.775, 12);
    expect(compressionRatio('Nothing accepted is ever lost; every job is retried until it is done.')).toBeCloseTo(1.0147058823529411, 12);
  });
});

describe('sampling and temperature fallback', () => {
  it('samples reproducibly from a seed, whatever shares the batch, and differently from another seed', async () => {
    const inputs = audios();
    const hot = { language: 'en', temperatures: [1] };
    const alone = await model.transcribe([{ audio: inputs[0], ...hot, seed: 7 }]);
    const batched = await model.transcribe([
      { audio: inputs[1], language: 'en' },
      { audio: inputs[0], ...hot, seed: 7 },
      { audio: inputs[2], ...hot, seed: 3 },
    ]);
    expect(batched[1].tokens).toEqual(alone[0].tokens);
    expect(batched[1].temperature).toBe(1);
    const [greedy] = await model.transcribe([{ audio: inputs[0], language: 'en' }]);
    const other = await model.transcribe([1, 2, 3].map((seed) => ({ audio: inputs[0], ...hot, seed })));
    expect(new Set([alone[0], greedy, ...other].map((r) => r.tokens.join())).size).toBeGreaterThan(2);
  });

  it('decodes again at the next temperature only the windows that fail a threshold, in one batch with fresh work', async () => {
    const inputs = audios();
    const greedy = await model.transcribe(inputs.map((audio) => ({ audio, language: 'en' })));
    // a log-probability threshold above the first window's average fails it at every temperature; the others pass
    const threshold = greedy[0].avgLogprob + 1e-3;
    expect(greedy[1].avgLogprob).toBeGreaterThan(-5);
    const runsBefore = model.decoderRuns;
    const ours = await model.transcribe(
      inputs.map((audio, i) => ({
        audio,
        language: 'en',
        temperatures: i === 0 ? FALLBACK_TEMPERATURES : [0],
        fallback: { logprob: threshold, noSpeech: 1 },
        seed: 5,
      })),
      { batchSize: 3 },
    );
    expect(ours[0].temperature).toBe(1);
    expect(ours[1].tokens).toEqual(greedy[1].tokens);
    expect(ours[1].temperature).toBe(0);
    expect(ours[0].tokens).not.toEqual(greedy[0].tokens);
    // the output kept is the last attempt's: reproducible from the seed
    const again = await model.transcribe([
      { audio: inputs[0], language: 'en', temperatures: FALLBACK_TEMPERATURES, fallback: { logprob: threshold, noSpeech: 1 }, seed: 5 },
    ]);
    expect(again[0].tokens).toEqual(ours[0].tokens);
    expect(model.decoderRuns).toBeGreaterThan(runsBefore);
  });

  it('drops a window as silence when it is likely no speech and unlikely text, with fallback on', async () => {
    const audio = audios()[0];
    const [greedy] = await model.transcribe([{ audio, language: 'en' }]);
    const noSpeech = greedy.noSpeechProb / 2;
    const [dropped] = await model.transcribe([
      { audio, language: 'en', temperatures: [0, 0.5], fallback: { noSpeech, logprob: greedy.avgLogprob + 1 } },
    ]);
    expect(dropped).toMatchObject({ silence: true, text: '', segments: [], tokens: [], temperature: 0 });
    // likely enough text is kept, whatever the no-speech probability
    const [kept] = await model.transcribe([
      { audio, language: 'en', temperatures: [0, 0.5], fallback: { noSpeech, logprob: greedy.avgLogprob - 1 } },
    ]);
    expect(kept.silence).toBe(false);
    expect(kept.tokens).toEqual(greedy.tokens);
    // without fallback nothing is dropped
    const [plain] = await model.transcribe([{ audio, language: 'en', fallback: { noSpeech, logprob: greedy.avgLogprob + 1 } }]);
    expect(plain.tokens).toEqual(greedy.tokens);
  });
});

/**
 * Beam search written plainly, as openai/whisper's BeamSearchDecoder and
 * MaximumLikelihoodRanker describe it: the whole prefix through the decoder at
 * every step (no cache, no batch), one segment, no timestamps.
 */
async function plainBeamSearch(
  m: WhisperModel,
  audio: Float32Array,
  prefix: number[],
  beamSize: number,
  patience: number,
  lengthPenalty: number | null,
) {
  const { dims, ids, rules, encoderPath, decoderPath } = m.folder;
  const encoder = await ort.InferenceSession.create(encoderPath);
  const decoder = await ort.InferenceSession.create(decoderPath);
  const features = logMelSpectrogram(audio, dims.nMels);
  const states = (await encoder.run({ [encoder.inputNames[0]]: new ort.Tensor('float32', features, [1, dims.nMels, 3000]) }))[
    encoder.outputNames[0]
  ];
  const logprobsAfter = async (tokens: number[]) => {
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens.map(BigInt)), [1, tokens.length]),
      encoder_hidden_states: states,
      use_cache_branch: new ort.Tensor('bool', Uint8Array.of(0), [1]),
    };
    for (const name of decoder.inputNames)
      if (name.startsWith('past_key_values'))
        feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, dims.decoderHeads, 0, dims.headDim]);
    const logits = ((await decoder.run(feeds)).logits.data as Float32Array).slice((tokens.length - 1) * dims.vocabSize);
    const banned = new Set([...rules.suppressTokens, ...(tokens.length === prefix.length ? rules.beginSuppressTokens : [])]);
    banned.forEach((t) => (logits[t] = -Infinity));
    const max = Math.max(...logits);
    const norm = max + Math.log(logits.reduce((sum, x) => sum + Math.exp(x - max), 0));
    return logits.map((x) => x - norm);
  };
  let beams = Array.from({ length: beamSize }, () => ({ tokens: prefix, logprob: 0 }));
  const finished: { tokens: number[]; logprob: number }[] = [];
  while (true) {
    const candidates = new Map<string, { tokens: number[]; logprob: number }>();
    for (const beam of beams) {
      const lp = await logprobsAfter(beam.tokens);
      const top = [...lp.keys()].sort((a, b) => lp[b] - lp[a] || a - b).slice(0, beamSize + 1);
      for (const t of top) candidates.set([...beam.tokens, t].join(), { tokens: [...beam.tokens, t], logprob: beam.logprob + lp[t] });
    }
    beams = [];
    const ended = [];
    for (const c of [...candidates.values()].sort((a, b) => b.logprob - a.logprob)) {
      if (c.tokens.at(-1) === ids.eot) ended.push(c);
      else if (beams.push(c) === beamSize) break;
    }
    finished.push(...ended.slice(0, Math.max(0, Math.round(beamSize * patience) - finished.length)));
    if (finished.length >= Math.round(beamSize * patience)) break;
    if (beams[0].tokens.length >= rules.maxLength) {
      for (const b of beams) if (finished.length < beamSize) finished.push({ tokens: [...b.tokens, ids.eot], logprob: b.logprob });
      break;
    }
  }
  const score = (c: { tokens: number[]; logprob: number }) => {
    const length = c.tokens.length - prefix.length - 1;
    return c.logprob / (lengthPenalty === null ? length : ((5 + length) / 6) ** lengthPenalty);
  };
  const best = finished.reduce((a, b) => (score(b) > score(a) ? b : a));
  await Promise.all([encoder.release(), decoder.release()]);
  return { tokens: best.tokens.slice(prefix.length, -1), avgLogprob: best.logprob / (best.tokens.length - prefix.length) };
}

describe('beam search', () => {
  let small: WhisperModel;
  beforeAll(async () => {
    small = await WhisperModel.load(await generatedModel({ tokensPerWindow: 16 }, 31));
  });
  afterAll(() => small?.dispose());
  const prefix = () => {
    const { ids } = small.folder;
    return [ids.sot, ids.languages.get('en')!, ids.transcribe!, ids.noTimestamps];
  };

  it('with one beam equals greedy decoding exactly', async () => {
    const inputs = audios();
    const greedy = await small.transcribe(inputs.map((audio) => ({ audio, language: 'en' })));
    const beam = await small.transcribe(inputs.map((audio) => ({ audio, language: 'en', beamSize: 1 })));
    expect(beam.map((r) => r.tokens)).toEqual(greedy.map((r) => r.tokens));
    expect(beam.map((r) => r.avgLogprob)).toEqual(greedy.map((r) => r.avgLogprob));
  });

  it.each([
    [3, 1, null],
    [5, 1, null],
    [5, 2, 1],
  ] as const)(
    'with %i beams (patience %d, length penalty %s) matches the plain implementation, beams of several segments in one batch with greedy rows',
    async (beamSize, patience, lengthPenalty) => {
      const inputs = [...audios(), recording(RECORDINGS[3])];
      const ours = await small.transcribe([
        { audio: inputs[3], language: 'en' },
        ...inputs.slice(0, 3).map((audio) => ({ audio, language: 'en', beamSize, patience, lengthPenalty })),
      ]);
      const greedy = await small.transcribe(inputs.slice(0, 3).map((audio) => ({ audio, language: 'en' })));
      let differs = 0;
      for (let i = 0; i < 3; i++) {
        const plain = await plainBeamSearch(small, inputs[i], prefix(), beamSize, patience, lengthPenalty);
        expect(ours[i + 1].tokens).toEqual(plain.tokens);
        expect(ours[i + 1].avgLogprob).toBeCloseTo(plain.avgLogprob, 4);
        if (plain.tokens.join() !== greedy[i].tokens.join()) differs++;
      }
      // the greedy row beside the beams is untouched by them
      const [alone] = await small.transcribe([{ audio: inputs[3], language: 'en' }]);
      expect(ours[0].tokens).toEqual(alone.tokens);
      expect(differs).toBeGreaterThan(0);
    },
  );

  // Generated models end every candidate at the same length, so ranking by length and patience are checked on made-up steps.
  const EOT = 9;
  const row = (tokens: number[], sumLogprob: number, beam: ReturnType<typeof beamGroup>): DecodeRow => ({
    index: 0,
    tokens,
    sotIndex: 0,
    sampleBegin: 1,
    timestamps: false,
    temperature: 0,
    sampler: null,
    sumLogprob,
    noSpeechProb: 0,
    done: false,
    beam,
  });
  const step = (top: [number, number][][]) => ({
    tokens: [],
    logprobs: [],
    topTokens: top.flatMap((r) => r.map(([t]) => t)),
    topLogprobs: Float32Array.from(top.flatMap((r) => r.map(([, lp]) => lp))),
    textProbabilities: new Float32Array(top.length).fill(NaN),
    topTextProbabilities: new Float32Array(top.length * top[0].length).fill(NaN),
  });

  it('ranks candidates by log-probability over length, or over ((5 + length) / 6) ^ penalty', () => {
    // 4 tokens at -2 and 10 tokens at -4.5: per token -0.5 against -0.45; penalty 1: -2 / 1.5 against -4.5 / 2.5; penalty 0: the sums
    for (const [penalty, length] of [
      [null, 10],
      [0, 4],
      [1, 4],
    ] as const) {
      const group = beamGroup(2, 1, penalty);
      group.finished.push(
        { tokens: [0, 1, 2, 3, 4, EOT], sumLogprob: -2 },
        { tokens: [0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, EOT], sumLogprob: -4.5 },
      );
      const best = bestCandidate(row([0], 0, group));
      expect(best.tokens.length - 2).toBe(length);
    }
  });

  it('with patience, goes on until beamSize × patience candidates have ended', () => {
    for (const [patience, continues] of [
      [1, false],
      [2, true],
    ] as const) {
      const group = beamGroup(2, patience);
      const rows = [row([0, 1], -1, group), row([0, 2], -1.5, group)];
      // both beams' likeliest continuation ends: two candidates
      const next = advanceBeams(
        group,
        rows,
        [0, 1],
        step([
          [
            [EOT, -0.1],
            [3, -1],
            [4, -2],
          ],
          [
            [EOT, -0.1],
            [5, -1],
            [6, -3],
          ],
        ]),
        3,
        EOT,
        448,
      );
      expect(group.finished.map((c) => c.tokens)).toEqual([
        [0, 1, EOT],
        [0, 2, EOT],
      ]);
      expect(next.length > 0).toBe(continues);
      if (continues)
        expect(next.map((b) => b.row.tokens)).toEqual([
          [0, 1, 3],
          [0, 2, 5],
        ]);
    }
  });
});
