// What the decoding options cost: greedy, beam search (5 beams, faster-whisper's
// default) and word timings, on a whisper-tiny-sized generated model, one batch
// of 16 segments of real recorded speech, in audio-seconds per wall-second, in
// the same run. Greedy and words run in alternating pairs (this machine's
// timings drift by ±15% over a minute), each pair's ratio printed and their
// median.
//
//   npx tsx bench/decoding-options.ts [--segments 16] [--seconds 20] [--tokens 100] [--beams 5] [--pairs 3]
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WhisperModel, type SegmentRequest } from '../src/whisper/index.ts';
import { speechSegments, writeTinyModel } from './whisperSetup.ts';

const { values } = parseArgs({
  options: {
    segments: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '20' },
    tokens: { type: 'string', default: '100' },
    beams: { type: 'string', default: '5' },
    pairs: { type: 'string', default: '3' },
    model: { type: 'string', default: join(tmpdir(), 'murmur-bench-decoding') },
  },
});
const segments = Number(values.segments);
const seconds = Number(values.seconds);

await writeTinyModel(values.model, Number(values.tokens));
const audios = speechSegments(segments, seconds);

const model = await WhisperModel.load(values.model);
// warm-up at the full batch (the first batch of a size ran up to twice as long), words included (their session opens at the first words asked for)
await model.transcribe(
  audios.map((audio, i) => ({ audio, language: 'en', wordTimestamps: i % 2 === 0 })),
  { batchSize: segments },
);

const configurations: [string, Partial<SegmentRequest>][] = [
  ...Array.from({ length: Number(values.pairs) }, (): [string, Partial<SegmentRequest>][] => [
    ['greedy', {}],
    ['greedy + words', { wordTimestamps: true }],
  ]).flat(),
  [`beam ${values.beams}`, { beamSize: Number(values.beams) }],
];
const rows: { name: string; seconds: number; tokens: number; runs: number }[] = [];
for (const [name, options] of configurations) {
  const runsBefore = model.decoderRuns;
  const start = performance.now();
  const results = await model.transcribe(
    audios.map((audio) => ({ audio, language: 'en', ...options })),
    { batchSize: segments },
  );
  rows.push({
    name,
    seconds: (performance.now() - start) / 1000,
    tokens: results.reduce((n, r) => n + r.tokens.length, 0),
    runs: model.decoderRuns - runsBefore,
  });
}
await model.dispose();

const audioSeconds = segments * seconds;
console.log(`\n${segments} segments × ${seconds} s, one batch, ${values.tokens} tokens a window at most`);
console.log('configuration      wall s   audio-s/s   tokens   decoder runs   vs greedy before');
for (const [i, r] of rows.entries()) {
  const greedy = rows
    .slice(0, i + 1)
    .reverse()
    .find((g) => g.name === 'greedy')!;
  console.log(
    `${r.name.padEnd(18)} ${r.seconds.toFixed(1).padStart(6)}   ${(audioSeconds / r.seconds).toFixed(1).padStart(9)}   ${String(r.tokens).padStart(6)}   ${String(r.runs).padStart(12)}   ${((greedy.seconds / r.seconds) * 100).toFixed(0).padStart(15)}%`,
  );
}
const ratios = rows.flatMap((r, i) => (r.name === 'greedy + words' ? [rows[i - 1].seconds / r.seconds] : [])).sort((a, b) => a - b);
console.log(
  `word timings: ${(ratios[Math.floor(ratios.length / 2)] * 100).toFixed(0)}% of greedy's throughput (median of ${ratios.length} pairs; ${ratios.map((x) => `${(x * 100).toFixed(0)}%`).join(', ')})`,
);
