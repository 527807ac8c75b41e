// `murmur model synthetic --out <dir>`: writes a generated Whisper model folder.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DTYPE_SUFFIXES } from '../whisper/modelFolder.ts';
import { PRESETS, SYNTHETIC_DTYPES, syntheticShape, writeSyntheticModel, type PresetName } from '../whisper/synthetic/index.ts';
import { DEFAULT_HUB, downloadModel, repoOf } from '../models/download.ts';
import { integer } from './args.ts';
import { readLogSettings } from '../config.ts';
import { createLogger } from '../log.ts';

export function modelCommand(): Command {
  const model = new Command('model').description('model folders');
  model
    .command('synthetic')
    .description(
      'write a Whisper model with the real architecture and seeded random weights (for tests and benchmarks; its transcripts are meaningless)',
    )
    .requiredOption('--out <dir>', 'folder to write (replaced if it exists)')
    .addOption(
      new Option('--preset <name>', 'starting shape: test (tiny test size) or tiny (whisper-tiny dimensions)')
        .choices(Object.keys(PRESETS))
        .default('test'),
    )
    .addOption(
      new Option('--vocabulary <kind>', 'multilingual (99 languages), english (.en), v3 (100 languages)').choices([
        'multilingual',
        'english',
        'v3',
      ]),
    )
    .addOption(new Option('--mels <n>', 'mel bins').choices(['80', '128']))
    .option('--d-model <n>', 'model width', integer('--d-model', 16))
    .option('--encoder-layers <n>', 'encoder layers', integer('--encoder-layers', 1))
    .option('--decoder-layers <n>', 'decoder layers', integer('--decoder-layers', 1))
    .option('--heads <n>', 'attention heads', integer('--heads', 1))
    .option('--text-vocab <n>', 'text tokens before the special tokens (≥ 256 + 150)', integer('--text-vocab', 406))
    .option('--tokens <n>', 'text tokens per 30 s window (generation then ends by itself)', integer('--tokens', 3))
    .option('--seed <n>', 'random seed', integer('--seed', 0), 1)
    .option('--if-missing', 'do nothing when the folder already holds a model', false)
    .option('--no-cross-attentions', 'a decoder without cross_attentions outputs (no word timings), as exports without timestamps are')
    .option('--dtypes <list>', `variants to write, comma-separated: ${SYNTHETIC_DTYPES.join(', ')}`, 'fp32')
    .action(async (opts) => {
      if (opts.ifMissing && existsSync(join(opts.out, 'config.json'))) return;
      const shape = syntheticShape(opts.preset as PresetName, {
        ...(opts.vocabulary && { vocabulary: opts.vocabulary }),
        ...(opts.mels && { nMels: Number(opts.mels) as 80 | 128 }),
        ...(opts.dModel && { dModel: opts.dModel }),
        ...(opts.encoderLayers && { encoderLayers: opts.encoderLayers }),
        ...(opts.decoderLayers && { decoderLayers: opts.decoderLayers }),
        ...(opts.heads && { heads: opts.heads }),
        ...(opts.textVocab && { textVocabSize: opts.textVocab }),
        ...(opts.tokens && { tokensPerWindow: opts.tokens }),
        crossAttentions: opts.crossAttentions,
      });
      const dtypes = String(opts.dtypes)
        .split(',')
        .map((d) => d.trim());
      for (const d of dtypes)
        if (!(SYNTHETIC_DTYPES as readonly string[]).includes(d))
          throw new InvalidArgumentError(`--dtypes: unknown variant "${d}": expected ${SYNTHETIC_DTYPES.join(', ')}`);
      const info = await writeSyntheticModel(opts.out, shape, opts.seed, dtypes as (typeof SYNTHETIC_DTYPES)[number][]);
      console.log(JSON.stringify({ out: opts.out, ...shape, ...info }));
    });
  model
    .command('download')
    .description('fetch a Whisper model folder (onnx-community layout) from the Hugging Face hub; needs internet access')
    .argument('<name>', 'whisper-tiny, whisper-base, whisper-small, whisper-large-v3-turbo, … (onnx-community/<name>), or owner/name')
    .option('--out <dir>', 'folder to write (default: models/<name>)')
    .option('--dtypes <list>', `variants, comma-separated: ${Object.keys(DTYPE_SUFFIXES).join(', ')}`, 'fp32')
    .option('--hub <url>', "the hub's address (default: $MURMUR_HUB_URL or https://huggingface.co)")
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .action(async (name: string, opts) => {
      const out = opts.out ?? join('models', repoOf(name).split('/')[1]);
      const files = await downloadModel(name, out, {
        hub: opts.hub ?? process.env.MURMUR_HUB_URL ?? DEFAULT_HUB,
        revision: opts.revision,
        dtypes: String(opts.dtypes)
          .split(',')
          .map((d) => d.trim()),
        token: process.env.HF_TOKEN,
        log: createLogger(readLogSettings(), 2),
      });
      console.log(`${out}: ${files.length} files. Use it with MURMUR_MODEL_DIR=${out}`);
    });
  return model;
}
