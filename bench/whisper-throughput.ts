// Throughput of the Whisper runtime on a whisper-tiny-sized generated model
// (d_model 384, 4+4 layers, 6 heads, 51865 tokens, 100 text tokens per window by default),
// in audio-seconds per wall-second, for batch sizes 1, 4, 8 and 16, against
// transformers.js's ASR pipeline doing the same work in the same run.
//
//   npm run bench            (or: npx tsx bench/whisper-throughput.ts [--segments 16] [--seconds 20] [--tokens 100])
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { env, pipeline } from '@huggingface/transformers';
import { WhisperModel } from '../src/whisper/index.ts';
import { speechSegments, writeTinyModel } from './whisperSetup.ts';

const { values } = parseArgs({
  options: {
    segments: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '20' },
    tokens: { type: 'string', default: '100' },
    model: { type: 'string', default: join(tmpdir(), 'murmur-bench-whisper-tiny') },
  },
});
const segments = Number(values.segments);
const seconds = Number(values.seconds);

await writeTinyModel(values.model, Number(values.tokens));
const audios = speechSegments(segments, seconds);
const audioSeconds = segments * seconds;

const model = await WhisperModel.load(values.model);
// warm-up: first runs pay for allocation and kernel selection
await model.transcribe(
  audios.slice(0, 2).map((audio) => ({ audio, language: 'en' })),
  { batchSize: 2 },
);

// Each configuration runs twice and the faster run counts: this machine's timings vary by ±15%.
const REPEATS = 2;
const best = async (run: () => Promise<unknown>) => {
  let fastest = Infinity;
  for (let i = 0; i < REPEATS; i++) {
    const start = performance.now();
    await run();
    fastest = Math.min(fastest, (performance.now() - start) / 1000);
  }
  return fastest;
};

const rows: { name: string; seconds: number; tokens: number }[] = [];
for (const batchSize of [1, 4, 8, 16]) {
  let tokens = 0;
  const seconds = await best(async () => {
    const results = await model.transcribe(
      audios.map((audio) => ({ audio, language: 'en' })),
      { batchSize },
    );
    tokens = results.reduce((n, r) => n + r.tokens.length, 0);
  });
  rows.push({ name: `murmur batch ${batchSize}`, seconds, tokens });
}
await model.dispose();

env.allowRemoteModels = false;
env.localModelPath = '/';
const asr = await pipeline('automatic-speech-recognition', `${values.model}/`, { dtype: 'fp32', device: 'cpu' });
await asr(audios[0], { language: 'en' });
rows.push({
  name: 'transformers.js pipeline',
  seconds: await best(async () => {
    for (const audio of audios) await asr(audio, { language: 'en' });
  }),
  tokens: NaN,
});

console.log(
  `\n${segments} segments × ${seconds} s of speech = ${audioSeconds} audio-seconds; whisper-tiny-sized model, ${values.tokens} tokens a window, CPU\n`,
);
console.log('| run | wall s | audio-s / wall-s | tokens |');
console.log('| --- | ---: | ---: | ---: |');
for (const r of rows)
  console.log(
    `| ${r.name} | ${r.seconds.toFixed(2)} | ${(audioSeconds / r.seconds).toFixed(2)} | ${Number.isNaN(r.tokens) ? '' : r.tokens} |`,
  );
const reference = rows[rows.length - 1].seconds;
const batch16 = rows.find((r) => r.name === 'murmur batch 16')!.seconds;
console.log(`\nbatch 16 vs transformers.js: ${(reference / batch16).toFixed(2)}× the throughput`);
