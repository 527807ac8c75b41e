// Language detection and the no-speech probability, as openai/whisper defines
// them, checked against the decoder's raw logits from transformers.js (which
// does no detection of its own) on the same files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel } from '../src/whisper/index.ts';
import { RECORDINGS, recording, speech, tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { Reference } from './helpers/reference.ts';

describe('language detection', () => {
  let model: WhisperModel;
  let reference: Reference;
  beforeAll(async () => {
    const dir = await generatedModel({}, 9);
    model = await WhisperModel.load(dir);
    reference = await Reference.load(dir);
  });
  afterAll(async () => {
    await model.dispose();
    await reference.dispose();
  });

  it('takes the argmax over language tokens of the decoder on <|startoftranscript|> alone, in the same batch as given languages', async () => {
    const audios = [recording(RECORDINGS[0]), recording(RECORDINGS[3]), speech('Guten Morgen, wie geht es dir?', 'de'), tone(150, 2, 0.5)];
    const results = await model.transcribe(audios.flatMap((audio) => [{ audio }, { audio, language: 'es', timestamps: true }]));
    const languages = [...model.folder.ids.languages.entries()];
    const detectedSet = new Set<string>();
    for (let i = 0; i < audios.length; i++) {
      const logits = await reference.logitsAfter(audios[i], [model.folder.ids.sot]);
      const scores = languages.map(([, id]) => logits[id]);
      const best = scores.indexOf(Math.max(...scores));
      const detected = results[2 * i];
      expect(detected.language).toBe(languages[best][0]);
      const z = scores.reduce((s, x) => s + Math.exp(x - scores[best]), 0);
      expect(detected.languageProbability).toBeCloseTo(1 / z, 5);
      detectedSet.add(detected.language);
      // the row with a given language keeps it
      expect(results[2 * i + 1].language).toBe('es');
      expect(results[2 * i + 1].languageProbability).toBeNull();
      // no-speech probability: softmax at the <|startoftranscript|> position, before any rule
      const noSpeech = model.folder.ids.noSpeech!;
      const max = Math.max(...logits);
      const p = Math.exp(logits[noSpeech] - max) / logits.reduce((s, x) => s + Math.exp(x - max), 0);
      expect(detected.noSpeechProb).toBeCloseTo(p, 6);
      expect(results[2 * i + 1].noSpeechProb).toBeCloseTo(p, 6);
    }
    expect(detectedSet.size).toBeGreaterThan(1);
  });

  it('takes a language by code or by English name', async () => {
    const audio = recording(RECORDINGS[1]);
    const [byCode, byName, upper] = await model.transcribe([
      { audio, language: 'de' },
      { audio, language: 'German' },
      { audio, language: 'DE' },
    ]);
    expect(byName.tokens).toEqual(byCode.tokens);
    expect(upper.tokens).toEqual(byCode.tokens);
    expect(byName.language).toBe('de');
    await expect(model.transcribe([{ audio, language: 'klingon' }])).rejects.toMatchObject({
      code: 'UNKNOWN_LANGUAGE',
      message: expect.stringContaining('"klingon"'),
    });
  });

  it('detects once for a whole recording (its first window) through detectLanguage', async () => {
    const audio = recording(RECORDINGS[2]);
    const [result] = await model.transcribe([{ audio }]);
    expect((await model.detectLanguage(audio)).language).toBe(result.language);
  });

  it('an English-only model needs no detection and refuses other languages', async () => {
    const en = await WhisperModel.load(await generatedModel({ vocabulary: 'english' }));
    const [r] = await en.transcribe([{ audio: tone(300, 1) }]);
    expect(r.language).toBe('en');
    await expect(en.transcribe([{ audio: tone(300, 1), language: 'de' }])).rejects.toMatchObject({ code: 'UNKNOWN_LANGUAGE' });
    await expect(en.transcribe([{ audio: tone(300, 1), task: 'translate' }])).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
    await en.dispose();
  });
});
