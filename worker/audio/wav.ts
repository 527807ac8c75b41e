// WAV → 16 kHz mono float32 for the runtime, through node-wav (PCM 8/16/24/32-bit
// and float). Other sample rates need resampling, which arrives with the
// audio-formats work; until then they are refused with a clear error.
import wav from 'node-wav';
import { SAMPLE_RATE } from '../whisper/features.ts';
import { AudioError } from './errors.ts';

export interface DecodedAudio {
  samples: Float32Array;
  sampleRate: number;
  channels: number;
  durationSeconds: number;
}

export function decodeWav(bytes: Uint8Array, name = 'input'): DecodedAudio {
  if (bytes.length === 0) throw new AudioError('AUDIO_EMPTY', `${name} is empty`);
  let decoded: { sampleRate: number; channelData: Float32Array[] } | undefined;
  try {
    // node-wav reads from offset 0 of the underlying buffer: give it its own copy.
    decoded = wav.decode(Uint8Array.from(bytes));
  } catch (err) {
    throw new AudioError('AUDIO_UNDECODABLE', `${name} is not a WAV file this build can read: ${(err as Error).message}`);
  }
  if (!decoded) throw new AudioError('AUDIO_UNDECODABLE', `${name} has no audio data chunk`);
  const { sampleRate, channelData } = decoded;
  const channels = channelData.length;
  const length = channelData[0]?.length ?? 0;
  // node-wav sizes its output from the header; a file cut short leaves NaN at the end.
  if (channels > 0 && length > 0 && channelData.some((c) => Number.isNaN(c[length - 1]))) {
    throw new AudioError('AUDIO_UNDECODABLE', `${name} is truncated: the header promises more samples than the file holds`);
  }
  if (length === 0) throw new AudioError('AUDIO_EMPTY', `${name} holds no samples`);
  if (sampleRate !== SAMPLE_RATE) {
    throw new AudioError('AUDIO_UNSUPPORTED', `${name} is sampled at ${sampleRate} Hz; this build reads 16000 Hz WAV only`);
  }
  let samples = channelData[0];
  if (channels > 1) {
    samples = new Float32Array(length);
    for (const c of channelData) for (let i = 0; i < length; i++) samples[i] += c[i] / channels;
  }
  return { samples, sampleRate, channels, durationSeconds: length / sampleRate };
}
