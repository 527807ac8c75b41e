// Band-limited resampling to 16 kHz with libsamplerate (compiled to
// WebAssembly), for the decoders that do not resample themselves.
import libsamplerate from '@alexanderolsen/libsamplerate-js';
import { SAMPLE_RATE } from '../whisper/features.ts';

export async function resampleTo16k(samples: Float32Array, fromRate: number): Promise<Float32Array> {
  if (fromRate === SAMPLE_RATE) return samples;
  // CommonJS module: its named exports are reached through the default import.
  const src = await libsamplerate.create(1, fromRate, SAMPLE_RATE, { converterType: libsamplerate.ConverterType.SRC_SINC_MEDIUM_QUALITY });
  try {
    return src.full(samples);
  } finally {
    src.destroy();
  }
}

/**
 * One channel from many, as `ffmpeg -ac 1` makes it (which is how openai/whisper
 * loads audio): stereo as (L + R)·√½; more channels as their average.
 */
export function mixToMono(channels: Float32Array[]): Float32Array {
  if (channels.length === 1) return channels[0];
  const gain = channels.length === 2 ? Math.SQRT1_2 : 1 / channels.length;
  const out = new Float32Array(channels[0].length);
  for (const c of channels) for (let i = 0; i < out.length; i++) out[i] += c[i] * gain;
  return out;
}
