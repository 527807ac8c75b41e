// Checks the planted properties of a freshly written model with the runtime
// itself: generation ends by itself after the planned number of tokens, and two
// different inputs give different tokens.
import { WhisperModel } from '../index.ts';
import { Rng } from '../rng.ts';

export function probeSignals(): Float32Array[] {
  const tone = new Float32Array(3 * 16000);
  for (let i = 0; i < tone.length; i++) tone[i] = 0.3 * Math.sin((2 * Math.PI * 440 * i) / 16000);
  const rng = new Rng(7);
  const noise = new Float32Array(7 * 16000);
  for (let i = 0; i < noise.length; i++) noise[i] = 0.05 * rng.normal();
  return [tone, noise];
}

export async function checkPlantedProperties(dir: string, tokensPerWindow: number, dtype = 'fp32'): Promise<void> {
  const model = await WhisperModel.load(dir, { dtype });
  try {
    const [a, b] = probeSignals();
    const language = model.folder.multilingual ? 'en' : undefined;
    const results = await model.transcribe([
      { audio: a, language },
      { audio: b, language },
      { audio: a, language, timestamps: true },
      { audio: b, language, timestamps: true },
    ]);
    for (const r of results.slice(0, 2)) {
      if (r.tokens.length !== tokensPerWindow)
        throw new Error(`expected ${tokensPerWindow} tokens before end-of-text, got ${r.tokens.length}`);
    }
    for (const r of results.slice(2)) {
      const stamps = r.tokens.filter((t) => model.tokenizer.isTimestamp(t)).length;
      if (stamps < 2 || r.tokens.length >= model.folder.rules.maxLength - 4)
        throw new Error(
          `with timestamps: expected an opening and a closing timestamp before end-of-text, got ${stamps} timestamps in ${r.tokens.length} tokens`,
        );
    }
    if (results[0].tokens.join() === results[1].tokens.join())
      throw new Error('two different inputs gave the same tokens: the output does not depend on the audio');
  } finally {
    await model.dispose();
  }
}
