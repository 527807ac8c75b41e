// Decoding every format murmur takes, at several rates and channel layouts,
// against ffmpeg's own decoding (the reference), with ffmpeg and with the
// JavaScript/WebAssembly decoders that stand in for it where it is missing.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeAudioFile, probeAudioFile } from '../src/audio/decode.ts';
import { ffmpegDecode } from '../src/audio/ffmpeg.ts';
import { POCKETSPHINX, RECORDINGS, speechFile } from './helpers/audio.ts';

const dir = mkdtempSync(join(tmpdir(), 'murmur-formats-'));
const SOURCE_SECONDS = 7.1; // sense_and_sensibility …-0870.wav

// name, ffmpeg output options, format murmur should report, rate, channels, JS decoder tolerance (relative RMS difference)
const CORPUS: [string, string[], string, number, number, number | null][] = [
  ['s16-16k-mono.wav', ['-ar', '16000', '-ac', '1', '-c:a', 'pcm_s16le'], 'wav', 16000, 1, 1e-6],
  ['u8-8k-mono.wav', ['-ar', '8000', '-ac', '1', '-c:a', 'pcm_u8'], 'wav', 8000, 1, 0.05],
  ['s24-44k-stereo.wav', ['-ar', '44100', '-ac', '2', '-c:a', 'pcm_s24le'], 'wav', 44100, 2, 2e-3],
  ['s32-22k-stereo.wav', ['-ar', '22050', '-ac', '2', '-c:a', 'pcm_s32le'], 'wav', 22050, 2, 2e-3],
  ['f32-48k-mono.wav', ['-ar', '48000', '-ac', '1', '-c:a', 'pcm_f32le'], 'wav', 48000, 1, 2e-3],
  ['f32-48k-6ch.wav', ['-ar', '48000', '-ac', '6', '-c:a', 'pcm_f32le'], 'wav', 48000, 6, null],
  ['stereo.flac', ['-ar', '44100', '-ac', '2'], 'flac', 44100, 2, 2e-3],
  ['stereo.mp3', ['-ar', '44100', '-ac', '2', '-b:a', '128k'], 'mp3', 44100, 2, 2e-3],
  ['stereo.ogg', ['-ar', '44100', '-ac', '2', '-c:a', 'libvorbis'], 'ogg', 44100, 2, 2e-3],
  ['mono.opus', ['-ar', '48000', '-ac', '1', '-c:a', 'libopus'], 'opus', 48000, 1, 2e-3],
  ['stereo.m4a', ['-ar', '44100', '-ac', '2', '-c:a', 'aac'], 'm4a', 44100, 2, null],
  ['stereo.webm', ['-ar', '48000', '-ac', '2', '-c:a', 'libopus'], 'webm', 48000, 2, null],
];

beforeAll(() => {
  const source = join(POCKETSPHINX, RECORDINGS[2]);
  for (const [name, args] of CORPUS) execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', source, ...args, join(dir, name)]);
});

function relativeRms(reference: Float32Array, other: Float32Array): number {
  const n = Math.min(reference.length, other.length);
  let diff = 0;
  let energy = 0;
  for (let i = 0; i < n; i++) {
    diff += (reference[i] - other[i]) ** 2;
    energy += reference[i] ** 2;
  }
  return Math.sqrt(diff / energy);
}

describe('decoding', () => {
  for (const [name, , format, rate, channels, tolerance] of CORPUS) {
    it(`${name}: ${format}, ${rate} Hz, ${channels} channel(s), duration within 10 ms${tolerance === null ? '' : `, JS decoders within ${tolerance} of ffmpeg`}`, async () => {
      const path = join(dir, name);
      const reference = await decodeAudioFile(path, { ffmpeg: true });
      expect(reference).toMatchObject({ format, sampleRate: rate, channels });
      expect(Math.abs(reference.durationSeconds - SOURCE_SECONDS)).toBeLessThan(0.01);
      expect(reference.samples.length).toBe(Math.round(reference.durationSeconds * 16000));
      if (tolerance === null) {
        if (format === 'm4a' || format === 'webm')
          await expect(decodeAudioFile(path, { ffmpeg: false })).rejects.toMatchObject({ code: 'AUDIO_UNSUPPORTED' });
        return;
      }
      const js = await decodeAudioFile(path, { ffmpeg: false });
      expect(js).toMatchObject({ format, sampleRate: rate, channels });
      expect(Math.abs(js.durationSeconds - reference.durationSeconds)).toBeLessThan(0.01);
      expect(relativeRms(reference.samples, js.samples)).toBeLessThan(tolerance);
      // Probing without ffmpeg streams the file through the decoders (or reads the WAV header): the same facts.
      const probed = await probeAudioFile(path, { ffmpeg: false });
      expect(probed).toMatchObject({ format, sampleRate: rate, channels });
      expect(Math.abs(probed.durationSeconds - reference.durationSeconds)).toBeLessThan(0.01);
    });
  }

  it('16 kHz mono 16-bit WAV comes out sample for sample', async () => {
    const file = speechFile('sample for sample');
    const bytes = readFileSync(file);
    const pcm = new Int16Array(bytes.buffer.slice(bytes.byteOffset + 44, bytes.byteOffset + bytes.length));
    for (const ffmpeg of [true, false]) {
      const { samples } = await decodeAudioFile(file, { ffmpeg });
      expect(samples.length).toBe(pcm.length);
      let worst = 0;
      for (let i = 0; i < pcm.length; i++) worst = Math.max(worst, Math.abs(samples[i] - pcm[i] / 32768));
      expect(worst).toBeLessThan(1e-6);
    }
  });
});

describe('a WAV already at 16 kHz mono', () => {
  it('is read in-process, and its samples are bit for bit what ffmpeg gives (16- and 24-bit PCM, 32-bit float)', async () => {
    for (const [encoding, bits] of [
      ['signed-integer', 16],
      ['signed-integer', 24],
      ['floating-point', 32],
    ] as const) {
      const file = join(dir, `plain-${bits}.wav`);
      execFileSync('sox', [speechFile('bit for bit'), '-r', '16000', '-c', '1', '-e', encoding, '-b', String(bits), file]);
      const fromFfmpeg = new Float32Array(
        new Uint8Array(execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-ac', '1', '-ar', '16000', '-f', 'f32le', 'pipe:1'])).buffer,
      );
      const { samples } = await decodeAudioFile(file, { ffmpeg: true });
      expect(samples.length).toBe(fromFfmpeg.length);
      expect(Buffer.from(samples.buffer).equals(Buffer.from(fromFfmpeg.buffer)), `${bits}-bit`).toBe(true);
    }
  });
});

describe('refusals', () => {
  const cut = (name: string, keep = 0.6) => {
    const bytes = readFileSync(join(dir, name));
    const path = join(dir, `cut-${name}`);
    writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length * keep)));
    return path;
  };

  for (const [name, , format, , , tolerance] of CORPUS) {
    // A cut MP3 is a valid shorter MP3 to a decoder: its Xing/Info tag tells the length it should have.
    const js = tolerance !== null;
    if (format === 'wav') {
      // A WAV's sizes past the end of the file read as "to the end" (what a pipe leaves; ffmpeg and sox read it so).
      it(`a cut ${name} is read for what it holds${js ? ' by either decoder' : ' (ffmpeg)'}, probed or decoded`, async () => {
        const path = cut(name);
        const whole = await probeAudioFile(join(dir, name), { ffmpeg: true });
        for (const ffmpeg of js ? [true, false] : [true]) {
          const probed = await probeAudioFile(path, { ffmpeg });
          expect(probed.durationSeconds / whole.durationSeconds).toBeGreaterThan(0.55);
          expect(probed.durationSeconds / whole.durationSeconds).toBeLessThan(0.61);
          const decoded = await decodeAudioFile(path, { ffmpeg });
          expect(decoded.samples.length / 16000).toBeCloseTo(probed.durationSeconds, 1);
        }
      });
      continue;
    }
    it(`a cut ${name} is AUDIO_UNDECODABLE${js ? ' with either decoder' : ' (ffmpeg)'}, probed or decoded`, async () => {
      const path = cut(name);
      await expect(probeAudioFile(path, { ffmpeg: true })).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
      await expect(decodeAudioFile(path, { ffmpeg: true })).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
      if (js) {
        await expect(decodeAudioFile(path, { ffmpeg: false })).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
        await expect(probeAudioFile(path, { ffmpeg: false })).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
      }
    });
  }

  it('not audio, an empty file, a header without samples, and audio over the limit', async () => {
    const text = join(dir, 'notes.wav');
    writeFileSync(text, 'These are meeting notes, not a recording.\n'.repeat(50));
    const empty = join(dir, 'empty.mp3');
    writeFileSync(empty, '');
    const silent = join(dir, 'no-samples.wav');
    execFileSync('sox', ['-n', '-r', '16000', '-c', '1', '-b', '16', silent, 'trim', '0', '0']);
    for (const ffmpeg of [true, false]) {
      await expect(probeAudioFile(text, { ffmpeg })).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
      await expect(probeAudioFile(empty, { ffmpeg })).rejects.toMatchObject({ code: 'AUDIO_EMPTY' });
      await expect(probeAudioFile(silent, { ffmpeg })).rejects.toMatchObject({ code: 'AUDIO_EMPTY' });
      await expect(probeAudioFile(join(dir, 'stereo.flac'), { ffmpeg, maxSeconds: 5 })).rejects.toMatchObject({ code: 'AUDIO_TOO_LONG' });
    }
  });

  it('probing keeps no samples when ffmpeg decodes, and reports the same facts as decoding', async () => {
    const path = join(dir, 'stereo.mp3');
    const facts = await probeAudioFile(path, { ffmpeg: true });
    expect(facts).not.toHaveProperty('samples');
    const { samples: _, ...decoded } = await decodeAudioFile(path, { ffmpeg: true });
    expect(facts).toEqual(decoded);
  });
});

describe('decoding is bounded', () => {
  const withEnv = async <T>(env: Record<string, string>, work: () => Promise<T>): Promise<T> => {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      return await work();
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  };
  let tenMinutes: string;
  beforeAll(() => {
    tenMinutes = join(dir, 'ten-minutes.mp3');
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'sine=d=600', '-c:a', 'libmp3lame', '-b:a', '32k', tenMinutes]);
  });

  it("in time: ffmpeg is stopped past its allowance for the audio's length", async () => {
    // A FIFO nobody writes to: ffmpeg waits on it for ever unless it is stopped.
    const fifo = join(dir, 'never.fifo');
    execFileSync('mkfifo', [fifo]);
    const stuck = withEnv({ MURMUR_DECODE_BASE_SECONDS: '1', MURMUR_DECODE_SECONDS_PER_MINUTE: '1' }, () =>
      ffmpegDecode(fifo, 'never.mp3', 'mp3', false, 0, 60),
    );
    await expect(stuck).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE', message: expect.stringMatching(/within 2 s/) });
    // 0.1 s + 0.01 s per minute: 0.2 s for ten minutes, far less than decoding them takes; the defaults are plenty.
    const short = withEnv({ MURMUR_DECODE_BASE_SECONDS: '0.1', MURMUR_DECODE_SECONDS_PER_MINUTE: '0.01' }, () =>
      decodeAudioFile(tenMinutes, { ffmpeg: true }).then((d) => d.durationSeconds),
    );
    await expect(short).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE', message: expect.stringMatching(/within/) });
    expect((await decodeAudioFile(tenMinutes, { ffmpeg: true })).durationSeconds).toBeCloseTo(600, 0);
  }, 30_000);

  it('in memory: ffmpeg runs under an address-space limit', async () => {
    // 64 MB is too little even to load ffmpeg's libraries: the limit is applied.
    const refused = withEnv({ MURMUR_DECODE_MEMORY_MB: '64' }, () =>
      decodeAudioFile(tenMinutes, { ffmpeg: true }).then((d) => d.durationSeconds),
    );
    await expect(refused).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
  });
});
