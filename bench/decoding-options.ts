// What the decoding options cost: greedy, beam search (5 beams, faster-whisper's
// default) and word timings, on a whisper-tiny-sized generated model, one batch
// of 16 segments of real recorded speech, in audio-seconds per wall-second, in
// the same run. Greedy and words run twice, alternating (this machine's
// timings vary by ±15%).
//
//   npx tsx bench/decoding-options.ts [--segments 16] [--seconds 20] [--tokens 100] [--beams 5]
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeWav } from '../worker/audio/wav.ts';
import { WhisperModel, type SegmentRequest } from '../worker/whisper/index.ts';
import { syntheticShape, writeSyntheticModel } from '../worker/whisper/synthetic/index.ts';

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

console.log(`writing a whisper-tiny-sized model to ${values.model} …`);
await writeSyntheticModel(values.model, syntheticShape('tiny', { tokensPerWindow: Number(values.tokens) }), 1);

const dataDir = '/usr/share/pocketsphinx/test/data/librivox';
const speech = ['0870', '0880', '0890', '0920', '0930']
  .map((n) => decodeWav(readFileSync(join(dataDir, `sense_and_sensibility_01_austen_64kb-${n}.wav`))).samples)
  .reduce((all, s) => Float32Array.from([...all, ...s]), new Float32Array());
const audios = Array.from({ length: segments }, (_, i) => {
  const out = new Float32Array(seconds * 16000);
  for (let j = 0; j < out.length; j++) out[j] = speech[(j + i * 37_000) % speech.length];
  return out;
});

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
