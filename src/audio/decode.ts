// Any audio file murmur takes → 16 kHz mono float32, with the facts a job
// records (format, duration, sample rate, channels). ffmpeg does the work when
// it is installed; otherwise the JavaScript/WebAssembly decoders do, with
// libsamplerate for the resampling. Refusals are typed: AUDIO_EMPTY,
// AUDIO_UNDECODABLE (not audio, or cut short), AUDIO_UNSUPPORTED,
// AUDIO_TOO_LONG.
import { createReadStream } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { SAMPLE_RATE } from '../whisper/features.ts';
import { AudioError } from './errors.ts';
import { ffmpegAvailable, ffmpegDecode, ffprobe } from './ffmpeg.ts';
import { flacDeclaredSeconds, JS_FORMATS, mp3DeclaredSeconds, oggComplete, sniffFormat, type AudioFormat } from './formats.ts';
import { readWav, wavFacts } from './wav.ts';
import { countWithJs, decodeWithJs } from './jsDecoders.ts';
import { mixToMono, resampleTo16k } from './resample.ts';

/** Up to this size, a file the WebAssembly decoders read is probed in-process (~4 minutes of 128 kb/s MP3). */
const IN_PROCESS_PROBE_BYTES = 4 * 1024 * 1024;

export interface AudioFacts {
  format: AudioFormat;
  /** Of the file, before resampling. */
  sampleRate: number;
  channels: number;
  durationSeconds: number;
}

export interface DecodedAudio extends AudioFacts {
  /** 16 kHz mono. */
  samples: Float32Array;
}

export interface DecodeOptions {
  /** Longer audio is refused with AUDIO_TOO_LONG. */
  maxSeconds?: number;
  /** Use ffmpeg (default: when it is installed and MURMUR_FFMPEG is not "off"). */
  ffmpeg?: boolean;
}

export async function decodeAudioFile(path: string, options: DecodeOptions & { name?: string } = {}): Promise<DecodedAudio> {
  return (await decode(path, options.name ?? basename(path), options, true)) as DecodedAudio;
}

/** Checks that the file decodes whole, and returns its facts without keeping the samples or holding the file in memory. */
export async function probeAudioFile(path: string, options: DecodeOptions & { name?: string } = {}): Promise<AudioFacts> {
  const { samples: _, ...facts } = (await decode(path, options.name ?? basename(path), options, false)) as DecodedAudio;
  return facts;
}

/** The bytes probeHead reads. */
export const HEAD_BYTES = 4096;

/**
 * The facts of a file told from its first HEAD_BYTES and its size alone, where the container allows
 * it (WAV); null where the whole file must be decoded. Refuses what the head already shows to be
 * empty, not audio, cut short or too long. With it the API probes a WAV in a remote store with one
 * ranged read.
 */
export function probeHead(head: Uint8Array, size: number, name: string, options: DecodeOptions = {}): AudioFacts | null {
  const format = sniffHead(head, size, name);
  // A WAV's header says it all once its size checks out: probing it needs no decoder, no process
  // (the API's createJob went from 188 to 8 requests a second when every WAV went through ffmpeg).
  return format === 'wav' ? factsOf(format, wavFacts(head, name, size), name, options) : null;
}

function sniffHead(head: Uint8Array, size: number, name: string): AudioFormat {
  if (size === 0) throw new AudioError('AUDIO_EMPTY', `${name} is empty`);
  const format = sniffFormat(head);
  if (!format)
    throw new AudioError('AUDIO_UNDECODABLE', `${name} is not audio murmur reads (WAV, FLAC, MP3, OGG Vorbis, Opus, M4A/AAC, WebM)`);
  return format;
}

function tooLong(seconds: number, name: string, options: DecodeOptions): void {
  if (options.maxSeconds !== undefined && seconds > options.maxSeconds) {
    throw new AudioError('AUDIO_TOO_LONG', `${name} lasts ${seconds.toFixed(1)} s; the limit is ${options.maxSeconds} s`);
  }
}

function factsOf(
  format: AudioFormat,
  c: { frames: number; sampleRate: number; channels: number },
  name: string,
  options: DecodeOptions,
): AudioFacts {
  if (c.frames === 0) throw new AudioError('AUDIO_EMPTY', `${name} holds no samples`);
  tooLong(c.frames / c.sampleRate, name, options);
  return {
    format,
    sampleRate: c.sampleRate,
    channels: c.channels,
    durationSeconds: Math.round((c.frames / c.sampleRate) * SAMPLE_RATE) / SAMPLE_RATE,
  };
}

async function decode(path: string, name: string, options: DecodeOptions, keep: boolean): Promise<AudioFacts & { samples?: Float32Array }> {
  const size = (await stat(path)).size;
  const head = size === 0 ? new Uint8Array(0) : await readAt(path, 0, Math.min(size, HEAD_BYTES));
  if (!keep) {
    const facts = probeHead(head, size, name, options);
    if (facts) return facts;
  }
  const format = sniffHead(head, size, name);
  // A WAV header the decoders cannot read is refused here too, before any decoder tries.
  // Its length from its own sizes, read to the end of the file where they say more (ffprobe takes a pipe's 0xFFFFFFFF at its word).
  const wav = format === 'wav' ? wavFacts(head, name, size) : null;
  if ((format === 'ogg' || format === 'opus') && !oggComplete(await readAt(path, Math.max(0, size - 65536), Math.min(size, 65536))))
    throw new AudioError('AUDIO_UNDECODABLE', `${name} is cut short: its last OGG page is missing or incomplete`);
  const useFfmpeg = options.ffmpeg ?? ffmpegAvailable();

  // A WAV already at 16 kHz mono needs no decoder: its samples scaled to [-1, 1] are what ffmpeg would give, bit for bit
  // (each scale is a power of two). Two process starts a file saved (16 × 20 s files: 4.8 s of a worker's CPU).
  if (keep && wav && wav.sampleRate === SAMPLE_RATE && wav.channels === 1) {
    tooLong(wav.frames / wav.sampleRate, name, options);
    const samples = readWav(await readFile(path), name).channelData[0];
    return { format, sampleRate: SAMPLE_RATE, channels: 1, durationSeconds: samples.length / SAMPLE_RATE, samples };
  }

  // Small files in the formats the WebAssembly decoders read are probed in this process: two ffmpeg
  // process starts cost ~280 ms of CPU an upload (7 createJob/s for 1 s MP3s on 2 cores), decoding
  // a few MB here a few milliseconds at a time. Longer files go to ffmpeg, off the event loop.
  const inProcess = !keep && JS_FORMATS.includes(format) && size <= IN_PROCESS_PROBE_BYTES;

  if (useFfmpeg && !inProcess) {
    const probe = await ffprobe(path, name, format);
    if (wav) probe.declaredSeconds = wav.frames / wav.sampleRate;
    if (probe.declaredSeconds !== null) tooLong(probe.declaredSeconds, name, options);
    // The time limit follows the declared length, or the most the file may hold when it declares none.
    const bound = probe.declaredSeconds ?? options.maxSeconds ?? 4 * 3600;
    const { samples, count, warnings } = await ffmpegDecode(path, name, format, keep, (probe.declaredSeconds ?? 0) * SAMPLE_RATE, bound);
    if (count === 0) throw new AudioError('AUDIO_EMPTY', `${name} holds no samples`);
    const seconds = count / SAMPLE_RATE;
    // A WAV's last partial frame draws "Packet corrupt" from ffmpeg: it is read for what it holds.
    if (!wav) truncated(name, seconds, probe.declaredSeconds, warnings);
    tooLong(seconds, name, options);
    return { format, sampleRate: probe.sampleRate, channels: probe.channels, durationSeconds: seconds, ...(keep && { samples }) };
  }

  if (!keep) {
    // Probing in-process: the decoders fed 256 kB at a time, so the file is never whole in memory.
    const counted = await countWithJs(createReadStream(path, { highWaterMark: 256 * 1024 }), format, name);
    if (counted.frames > 0) truncated(name, counted.frames / counted.sampleRate, declaredSeconds(format, head), '');
    return factsOf(format, counted, name, options);
  }
  const pcm = await decodeWithJs(await readFile(path), format, name);
  const frames = pcm.channelData[0]?.length ?? 0;
  if (frames > 0) truncated(name, frames / pcm.sampleRate, declaredSeconds(format, head), '');
  const facts = factsOf(format, { frames, sampleRate: pcm.sampleRate, channels: pcm.channelData.length }, name, options);
  const samples = await resampleTo16k(mixToMono(pcm.channelData), pcm.sampleRate);
  return { ...facts, durationSeconds: samples.length / SAMPLE_RATE, samples };
}

async function readAt(path: string, position: number, length: number): Promise<Buffer> {
  const file = await open(path);
  try {
    const out = Buffer.alloc(length);
    await file.read(out, 0, length, position);
    return out;
  } finally {
    await file.close();
  }
}

/** The length a file's own headers declare, where the JavaScript path can read it. */
const declaredSeconds = (format: AudioFormat, head: Uint8Array) =>
  format === 'flac' ? flacDeclaredSeconds(head) : format === 'mp3' ? mp3DeclaredSeconds(head) : null;

/**
 * A file cut short decodes to less than its headers declare, or makes ffmpeg
 * complain of missing data. 1% or 100 ms of slack absorbs encoder padding.
 */
function truncated(name: string, seconds: number, declared: number | null, warnings: string): void {
  const complaint = warnings
    .split('\n')
    .find((l) => /partial file|truncat|invalid data|end of file|corrupt|error while decoding|incomplete|do not match/i.test(l));
  if (complaint) throw new AudioError('AUDIO_UNDECODABLE', `${name} is damaged or cut short: ${complaint.trim()}`);
  if (declared !== null && seconds < declared - Math.max(0.1, declared * 0.01)) {
    throw new AudioError(
      'AUDIO_UNDECODABLE',
      `${name} is cut short: it decodes to ${seconds.toFixed(2)} s of the ${declared.toFixed(2)} s its headers declare`,
    );
  }
}
