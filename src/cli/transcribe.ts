// `murmur transcribe <audio> --model <dir>`: a local transcription, no server.
import { Command, InvalidArgumentError, Option } from 'commander';
import { decodeAudioFile } from '../audio/decode.ts';
import { SileroVad, speechChunksOf, type Chunk } from '../vad/index.ts';
import { transcribeMany } from '../whisper/longAudio.ts';
import { WhisperModel } from '../whisper/index.ts';
import { integer } from './args.ts';
import { readLogSettings } from '../config.ts';
import { createLogger } from '../log.ts';

function temperatureList(value: string): number[] {
  const list = value.split(',').map((v) => Number(v.trim()));
  if (list.length === 0 || !list.every((t) => Number.isFinite(t) && t >= 0 && t <= 1))
    throw new InvalidArgumentError('--temperature takes numbers from 0 to 1, comma-separated');
  return list;
}

export function transcribeCommand(): Command {
  return new Command('transcribe')
    .description('transcribe an audio file (WAV, FLAC, MP3, OGG, Opus, M4A, WebM) with a local model folder')
    .argument('<audio>', 'path to the audio file')
    .requiredOption('--model <dir>', 'Whisper model folder (onnx-community layout)')
    .option('--language <language>', 'language code or English name, such as en, de or german (detected when absent)')
    .addOption(
      new Option('--task <task>', 'transcribe, or translate into English').choices(['transcribe', 'translate']).default('transcribe'),
    )
    .option('--timestamps', 'segment times from Whisper timestamp tokens', false)
    .option('--prompt <text>', 'text that comes before the audio: names, spellings, style')
    .option('--condition-on-previous-text', "each window's prompt continues with the text before it", false)
    .option(
      '--temperature <list>',
      "temperatures tried in turn, comma-separated (more than one: openai/whisper's fallback, e.g. 0,0.2,0.4,0.6,0.8,1)",
      temperatureList,
      [0],
    )
    .option('--seed <n>', 'seed of the sampler above temperature 0', integer('--seed', 0), 0)
    .option('--beam-size <n>', 'beam search with this many beams at temperature 0 (greedy when absent)', integer('--beam-size', 1))
    .option('--patience <x>', 'beam search: candidates gathered = beams × patience', Number)
    .option('--length-penalty <x>', 'beam search: rank by log-probability over ((5 + length) / 6) ^ x (by length when absent)', Number)
    .option('--word-timestamps', 'each word with its time (the model needs alignment heads and cross-attention outputs)', false)
    .option('--json', 'print one JSON object: text, language, segments, tokens', false)
    .option('--dtype <dtype>', 'model variant: fp32, fp16, q8 (quantized), q4, …', 'fp32')
    .option('--providers <list>', 'execution providers in order of preference', 'cpu')
    .option('--threads <n>', 'threads per session (0: onnxruntime decides)', integer('--threads', 0), 0)
    .addOption(
      new Option('--segmentation <how>', 'vad: decode the speech Silero VAD finds, in chunks of up to 30 s; fixed: every 30 s window')
        .choices(['vad', 'fixed'])
        .default('vad'),
    )
    .action(async (audioPath: string, opts) => {
      const audio = await decodeAudioFile(audioPath);
      // stdout is the transcript: the log goes to stderr.
      const log = createLogger(readLogSettings(), 2);
      const model = await WhisperModel.load(opts.model, { dtype: opts.dtype, providers: opts.providers, threads: opts.threads, log });
      try {
        if (model.folder.synthetic)
          log.warn(
            { event: 'model.synthetic', dir: opts.model },
            'this model has random weights (a generated test model): its transcripts are meaningless',
          );
        let chunks: Chunk[] | undefined;
        if (opts.segmentation === 'vad') {
          const vad = await SileroVad.load();
          chunks = await speechChunksOf(vad, audio.samples);
          await vad.release();
        }
        const [result] = await transcribeMany(model, [
          {
            samples: audio.samples,
            chunks,
            language: opts.language,
            task: opts.task,
            timestamps: opts.timestamps,
            prompt: opts.prompt,
            conditionOnPreviousText: opts.conditionOnPreviousText,
            temperatures: opts.temperature,
            seed: opts.seed,
            beamSize: opts.beamSize,
            patience: opts.patience,
            lengthPenalty: opts.lengthPenalty,
            wordTimestamps: opts.wordTimestamps,
          },
        ]);
        if (opts.json) console.log(JSON.stringify(result));
        else if (opts.wordTimestamps)
          for (const w of result.segments.flatMap((s) => s.words ?? []))
            console.log(`[${w.start.toFixed(2)} → ${w.end.toFixed(2)}]${w.word}`);
        else if (opts.timestamps) for (const s of result.segments) console.log(`[${s.start.toFixed(2)} → ${s.end.toFixed(2)}] ${s.text}`);
        else console.log(result.text);
      } finally {
        await model.dispose();
      }
    });
}
