// Decoding and voice-activity throughput on a long MP3, in audio-seconds per
// wall-second: ffmpeg's decoding, the JavaScript/WebAssembly decoders that
// stand in for it, and Silero VAD with the packing into ≤ 30 s chunks.
//
//   npx tsx bench/audio-throughput.ts [--minutes 30]
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeAudioFile } from '../src/audio/decode.ts';
import { SileroVad, speechChunksOf } from '../src/vad/index.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' } } });
const seconds = Number(values.minutes) * 60;
const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-audio-'));
const data = '/usr/share/pocketsphinx/test/data/librivox';
const parts = ['0870', '0880', '0890', '0920', '0930'].map((n, i) => {
  const out = join(dir, `part-${i}.wav`);
  execFileSync('sox', [join(data, `sense_and_sensibility_01_austen_64kb-${n}.wav`), out, 'pad', '0', '3']);
  return out;
});
execFileSync('sox', [...parts, join(dir, 'talk.wav')]);
const mp3 = join(dir, 'long.mp3');
// 44.1 kHz stereo at 128 kb/s, as phones and recorders write them: decoding includes resampling and the downmix.
execFileSync('ffmpeg', [
  '-v',
  'error',
  '-stream_loop',
  '-1',
  '-i',
  join(dir, 'talk.wav'),
  '-t',
  String(seconds),
  '-ar',
  '44100',
  '-ac',
  '2',
  '-b:a',
  '128k',
  mp3,
]);

const time = async <T>(run: () => Promise<T>): Promise<[T, number]> => {
  const start = performance.now();
  const out = await run();
  return [out, (performance.now() - start) / 1000];
};

console.log(`${values.minutes}-minute MP3 (44.1 kHz stereo, 128 kb/s) of recorded speech with pauses, on this machine:\n`);
console.log('| step | wall s | audio-s / wall-s |\n| --- | ---: | ---: |');
const row = (name: string, wall: number) => console.log(`| ${name} | ${wall.toFixed(2)} | ${(seconds / wall).toFixed(0)} |`);
const [audio, ffmpegWall] = await time(() => decodeAudioFile(mp3, { ffmpeg: true }));
row('decode + resample to 16 kHz mono, ffmpeg', ffmpegWall);
const [, jsWall] = await time(() => decodeAudioFile(mp3, { ffmpeg: false }));
row('decode + resample, mpg123 (wasm) + libsamplerate', jsWall);
const vad = await SileroVad.load();
const [chunks, vadWall] = await time(() => speechChunksOf(vad, audio.samples));
row('Silero VAD + packing into ≤ 30 s chunks', vadWall);
const speech = chunks.flat().reduce((n, s) => n + s.end - s.start, 0) / 16000;
console.log(
  `\n${chunks.length} chunks holding ${speech.toFixed(0)} s of speech (${((100 * speech) / seconds).toFixed(0)}% of the audio; ${(speech / chunks.length).toFixed(1)} s a chunk on average)`,
);
