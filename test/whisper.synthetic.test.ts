// The generator's planted properties, and its refusal to keep a model without them.
import { describe, expect, it } from 'vitest';
import { WhisperModel } from '../src/whisper/index.ts';
import { checkPlantedProperties } from '../src/whisper/synthetic/check.ts';
import { RECORDINGS, recording, speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';

describe('a generated model', () => {
  it.each([5, 60])('stops by itself after %i text tokens, with or without timestamps', async (tokens) => {
    const model = await WhisperModel.load(await generatedModel({ tokensPerWindow: tokens }, 21));
    const audios = [recording(RECORDINGS[1]), speech('Stop after a chosen number of tokens.')];
    const plain = await model.transcribe(audios.map((audio) => ({ audio, language: 'en' })));
    for (const r of plain) expect(r.tokens).toHaveLength(tokens);
    const timed = await model.transcribe(audios.map((audio) => ({ audio, language: 'en', timestamps: true })));
    for (const r of timed) {
      const stamps = r.tokens.filter((t) => model.tokenizer.isTimestamp(t));
      expect(stamps.length).toBe(2); // one opening, one closing
      expect(r.tokens.length).toBeLessThan(tokens + 2);
      expect(r.segments).toHaveLength(1);
    }
    await model.dispose();
  });

  it('says different things for different audio, and the same for the same', async () => {
    const model = await WhisperModel.load(await generatedModel({}, 22));
    const audios = RECORDINGS.map(recording);
    const results = await model.transcribe([...audios, audios[0]].map((audio) => ({ audio, language: 'en' })));
    expect(new Set(results.slice(0, 4).map((r) => r.text)).size).toBe(4);
    expect(results[4].tokens).toEqual(results[0].tokens);
    await model.dispose();
  });

  it('is the same model for the same seed and a different one for another', async () => {
    const audio = recording(RECORDINGS[0]);
    const texts = [];
    for (const seed of [31, 31, 32]) {
      const model = await WhisperModel.load(await generatedModel({}, seed));
      texts.push((await model.transcribe([{ audio, language: 'en' }]))[0].text);
      await model.dispose();
    }
    expect(texts[1]).toBe(texts[0]);
    expect(texts[2]).not.toBe(texts[0]);
  });

  it('the check that guards writing fails when the planted property does not hold', async () => {
    const dir = await generatedModel({ tokensPerWindow: 9 }, 23);
    await expect(checkPlantedProperties(dir, 9)).resolves.toBeUndefined();
    await expect(checkPlantedProperties(dir, 10)).rejects.toThrow(/expected 10 tokens before end-of-text, got 9/);
  });
});
