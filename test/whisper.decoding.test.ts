// Decoding beyond greedy: prompts (<|startofprev|>), each window's confidence,
// and sampling with openai/whisper's temperature fallback. Prompts are checked
// token for token against transformers.js given the same decoder prompt; the
// confidence figures against log-probabilities recomputed from its logits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressionRatio, FALLBACK_TEMPERATURES, WhisperModel } from '../worker/whisper/index.ts';
import { transcribeMany } from '../worker/whisper/longAudio.ts';
import { RECORDINGS, recording, speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { Reference } from './helpers/reference.ts';

let dir: string;
let model: WhisperModel;
let reference: Reference;
const audios = () => [recording(RECORDINGS[0]), recording(RECORDINGS[2]), speech('Nothing accepted is ever lost.')];

beforeAll(async () => {
  dir = await generatedModel({ dModel: 96, decoderLayers: 3, heads: 6, ffnDim: 384, tokensPerWindow: 40 }, 23);
  model = await WhisperModel.load(dir, { log: () => {} });
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
      const decoderPrompt = [...(prompts[i].length ? [ids.startOfPrev!, ...prompts[i]] : []), ids.sot, ids.languages.get('en')!, ids.transcribe!, ids.noTimestamps];
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

  it('conditions each window on the previous one\'s output when asked (and not by default)', async () => {
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
  it('matches log-probabilities recomputed from transformers.js\'s logits: average log-probability and no-speech probability, with and without a prompt', async () => {
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

  it('measures compression as openai/whisper does (ratios computed with Python\'s zlib)', () => {
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
    const batched = await model.transcribe([{ audio: inputs[1], language: 'en' }, { audio: inputs[0], ...hot, seed: 7 }, { audio: inputs[2], ...hot, seed: 3 }]);
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
      inputs.map((audio, i) => ({ audio, language: 'en', temperatures: i === 0 ? FALLBACK_TEMPERATURES : [0], fallback: { logprob: threshold, noSpeech: 1 }, seed: 5 })),
      { batchSize: 3 },
    );
    expect(ours[0].temperature).toBe(1);
    expect(ours[1].tokens).toEqual(greedy[1].tokens);
    expect(ours[1].temperature).toBe(0);
    expect(ours[0].tokens).not.toEqual(greedy[0].tokens);
    // the output kept is the last attempt's: reproducible from the seed
    const again = await model.transcribe([{ audio: inputs[0], language: 'en', temperatures: FALLBACK_TEMPERATURES, fallback: { logprob: threshold, noSpeech: 1 }, seed: 5 }]);
    expect(again[0].tokens).toEqual(ours[0].tokens);
    expect(model.decoderRuns).toBeGreaterThan(runsBefore);
  });

  it('drops a window as silence when it is likely no speech and unlikely text, with fallback on', async () => {
    const audio = audios()[0];
    const [greedy] = await model.transcribe([{ audio, language: 'en' }]);
    const noSpeech = greedy.noSpeechProb / 2;
    const [dropped] = await model.transcribe([{ audio, language: 'en', temperatures: [0, 0.5], fallback: { noSpeech, logprob: greedy.avgLogprob + 1 } }]);
    expect(dropped).toMatchObject({ silence: true, text: '', segments: [], tokens: [], temperature: 0 });
    // likely enough text is kept, whatever the no-speech probability
    const [kept] = await model.transcribe([{ audio, language: 'en', temperatures: [0, 0.5], fallback: { noSpeech, logprob: greedy.avgLogprob - 1 } }]);
    expect(kept.silence).toBe(false);
    expect(kept.tokens).toEqual(greedy.tokens);
    // without fallback nothing is dropped
    const [plain] = await model.transcribe([{ audio, language: 'en', fallback: { noSpeech, logprob: greedy.avgLogprob + 1 } }]);
    expect(plain.tokens).toEqual(greedy.tokens);
  });
});
