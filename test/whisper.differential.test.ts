// Token-for-token agreement with @huggingface/transformers on the same model
// folders, for models of several shapes, where both apply the same rules:
// greedy decoding, suppress_tokens, begin_suppress_tokens and (with
// timestamps) a timestamp first. Language detection is compared separately
// (transformers.js does none).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperModel } from '../src/whisper/index.ts';
import type { SyntheticShape } from '../src/whisper/synthetic/index.ts';
import { RECORDINGS, recording, speech, tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { Reference } from './helpers/reference.ts';

const SHAPES: [string, Partial<SyntheticShape>][] = [
  ['multilingual, 80 mels, d 64, 2+2 layers', {}],
  [
    'English-only, d 48, 3+2 layers, 4 heads',
    { vocabulary: 'english', dModel: 48, encoderLayers: 3, decoderLayers: 2, heads: 4, ffnDim: 192 },
  ],
  [
    'large-v3 vocabulary, 128 mels, d 96, 2+3 layers, 6 heads',
    { vocabulary: 'v3', nMels: 128, dModel: 96, decoderLayers: 3, heads: 6, ffnDim: 384 },
  ],
  [
    'multilingual, d 128, 1+4 layers, 8 heads, 40 tokens',
    { dModel: 128, encoderLayers: 1, decoderLayers: 4, heads: 8, ffnDim: 512, tokensPerWindow: 40 },
  ],
];

const inputs = () => [recording(RECORDINGS[0]), recording(RECORDINGS[2]), speech('Nothing accepted is ever lost.'), tone(300, 4)];

describe.each(SHAPES)('greedy tokens match transformers.js: %s', (_name, shape) => {
  let dir: string;
  let model: WhisperModel;
  let reference: Reference;
  beforeAll(async () => {
    dir = await generatedModel(shape, 11);
    model = await WhisperModel.load(dir);
    reference = await Reference.load(dir);
  });
  afterAll(async () => {
    await model.dispose();
    await reference.dispose();
  });

  const multilingual = shape.vocabulary !== 'english';
  const cases = [
    { timestamps: false, ...(multilingual && { language: 'en' }) },
    { timestamps: true, ...(multilingual && { language: 'en' }) },
    ...(multilingual
      ? [
          { timestamps: false, language: 'de', task: 'translate' as const },
          { timestamps: true, language: 'ja' },
        ]
      : []),
  ];

  it.each(cases)('with %o', async (options) => {
    const audios = inputs();
    const ours = await model.transcribe(audios.map((audio) => ({ audio, ...options })));
    const eot = model.folder.ids.eot;
    const seen = new Set<string>();
    for (let i = 0; i < audios.length; i++) {
      const theirs = await reference.generate(audios[i], { ...options, eot });
      expect(ours[i].tokens).toEqual(theirs);
      seen.add(theirs.join());
    }
    // the inputs are different audio, and the model's words depend on it
    expect(seen.size).toBeGreaterThan(1);
    if (options.timestamps) for (const r of ours) expect(r.segments.length).toBeGreaterThan(0);
  });
});

describe('variants', () => {
  it('the fp16 variant loads by option and matches transformers.js on the same file', async () => {
    const dir = await generatedModel({}, 5, ['fp32', 'fp16']);
    const model = await WhisperModel.load(dir, { dtype: 'fp16' });
    const reference = await Reference.load(dir, 'fp16');
    expect(model.folder.encoderPath).toMatch(/encoder_model_fp16\.onnx$/);
    for (const audio of inputs().slice(0, 2)) {
      const [ours] = await model.transcribe([{ audio, language: 'en' }]);
      expect(ours.tokens).toEqual(await reference.generate(audio, { language: 'en', eot: model.folder.ids.eot }));
    }
    await model.dispose();
    await reference.dispose();
  });

  it('the q8 (quantized) variant loads by option and matches transformers.js on the same file', async () => {
    const dir = await generatedModel({}, 6, ['fp32', 'q8']);
    const model = await WhisperModel.load(dir, { dtype: 'quantized' });
    const reference = await Reference.load(dir, 'q8');
    expect(model.folder.decoderPath).toMatch(/decoder_model_merged_quantized\.onnx$/);
    const audio = inputs()[1];
    const [ours] = await model.transcribe([{ audio, language: 'en', timestamps: true }]);
    expect(ours.tokens).toEqual(await reference.generate(audio, { language: 'en', timestamps: true, eot: model.folder.ids.eot }));
    await model.dispose();
    await reference.dispose();
  });
});
