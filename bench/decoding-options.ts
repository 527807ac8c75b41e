// What the decoding options cost: greedy, beam search (5 beams, faster-whisper's
// default) and word timings, on a whisper-tiny-sized generated model, one batch
// of 16 segments of real recorded speech, in audio-seconds per wall-second, in
// the same run. Greedy and words run twice, alternating (this machine's
// timings vary by ±15%).
//
//   npx tsx bench/decoding-options.ts [--segments 16] [--seconds 20] [--tokens 100] [--beams 5]
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WhisperModel, type SegmentRequest } from '../worker/whisper/index.ts';
import { speechSegments, writeTinyModel } from './whisperSetup.ts';

const { values } = parseArgs({
  options: {
    segments: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '20' },
    tokens: { type: 'string', default: '100' },
    beams: { type: 'string', default: '5' },
    model: { type: 'string', default: join(tmpdir(), 'murmur-bench-decoding') },
  },
});
const segments = Number(values.segments);
const seconds = Number(values.seconds);

await writeTinyModel(values.model, Number(values.tokens));
const audios = speechSegments(segments, seconds);

const model = await WhisperModel.load(values.model, { log: () => {} });
await model.transcribe(audios.slice(0, 2).map((audio) => ({ audio, language: 'en' })), { batchSize: 2 });

const configurations: [string, Partial<SegmentRequest>][] = [
  ['greedy', {}],
  ['greedy + words', { wordTimestamps: true }],
  ['greedy again', {}],
  ['greedy + words', { wordTimestamps: true }],
  [`beam ${values.beams}`, { beamSize: Number(values.beams) }],
];
const rows: { name: string; seconds: number; tokens: number; runs: number }[] = [];
for (const [name, options] of configurations) {
  const runsBefore = model.decoderRuns;
  const start = performance.now();
  const results = await model.transcribe(audios.map((audio) => ({ audio, language: 'en', ...options })), { batchSize: segments });
  rows.push({ name, seconds: (performance.now() - start) / 1000, tokens: results.reduce((n, r) => n + r.tokens.length, 0), runs: model.decoderRuns - runsBefore });
}
await model.dispose();

const audioSeconds = segments * seconds;
console.log(`\n${segments} segments × ${seconds} s, one batch, ${values.tokens} tokens a window at most`);
console.log('configuration      wall s   audio-s/s   tokens   decoder runs   vs greedy');
for (const r of rows) {
  console.log(`${r.name.padEnd(18)} ${r.seconds.toFixed(1).padStart(6)}   ${(audioSeconds / r.seconds).toFixed(1).padStart(9)}   ${String(r.tokens).padStart(6)}   ${String(r.runs).padStart(12)}   ${((rows[0].seconds / r.seconds) * 100).toFixed(0).padStart(8)}%`);
}
