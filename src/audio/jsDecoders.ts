// Decoders in JavaScript and WebAssembly for installations without ffmpeg:
// wavefile for WAV, and eshaz's wasm-audio-decoders (mpg123, libFLAC,
// libvorbis, libopus) for MP3, FLAC, OGG Vorbis and Opus. They take the whole
// file and return every channel at the file's own rate.
import { FLACDecoder } from '@wasm-audio-decoders/flac';
import { OggVorbisDecoder } from '@wasm-audio-decoders/ogg-vorbis';
import { MPEGDecoder } from 'mpg123-decoder';
import { OggOpusDecoder } from 'ogg-opus-decoder';
import { AudioError } from './errors.ts';
import type { AudioFormat } from './formats.ts';
import { readWav, type PcmChannels } from './wav.ts';

type Decoded = PcmChannels & { samplesDecoded: number; errors: { message: string }[] };

interface WasmDecoder {
  ready: Promise<void>;
  decodeFile?: (data: Uint8Array) => Promise<Decoded>;
  decode: (data: Uint8Array) => Decoded | Promise<Decoded>;
  flush?: () => Promise<Decoded>;
  free: () => void;
}

const WASM: Partial<Record<AudioFormat, () => WasmDecoder>> = {
  mp3: () => new MPEGDecoder() as unknown as WasmDecoder,
  flac: () => new FLACDecoder() as unknown as WasmDecoder,
  ogg: () => new OggVorbisDecoder() as unknown as WasmDecoder,
  opus: () => new OggOpusDecoder() as unknown as WasmDecoder,
};

async function wasmDecoder(format: AudioFormat, name: string): Promise<WasmDecoder> {
  const make = WASM[format];
  if (!make)
    throw new AudioError(
      'AUDIO_UNSUPPORTED',
      `${name} is ${format.toUpperCase()}, which needs ffmpeg: install it (Debian: apt-get install ffmpeg)`,
    );
  const decoder = make();
  await decoder.ready;
  return decoder;
}

function checked(out: Decoded, name: string): Decoded {
  if (out.errors.length > 0) throw new AudioError('AUDIO_UNDECODABLE', `${name} is damaged or cut short: ${out.errors[0].message}`);
  return out;
}

export async function decodeWithJs(bytes: Uint8Array, format: AudioFormat, name: string): Promise<PcmChannels> {
  if (format === 'wav') return readWav(bytes, name);
  const decoder = await wasmDecoder(format, name);
  try {
    const out = checked(await (decoder.decodeFile ? decoder.decodeFile(bytes) : decoder.decode(bytes)), name);
    return { channelData: out.channelData, sampleRate: out.sampleRate };
  } finally {
    decoder.free();
  }
}

/**
 * Decodes chunk by chunk, keeping nothing but the count: what the API needs to
 * check an upload without holding it in memory. Returns samples per channel,
 * the rate and the channel count.
 */
export async function countWithJs(
  chunks: AsyncIterable<Uint8Array>,
  format: AudioFormat,
  name: string,
): Promise<{ frames: number; sampleRate: number; channels: number }> {
  const decoder = await wasmDecoder(format, name);
  let frames = 0;
  let sampleRate = 0;
  let channels = 0;
  const take = (decoded: Decoded) => {
    const out = checked(decoded, name);
    frames += out.samplesDecoded;
    if (out.samplesDecoded > 0) {
      sampleRate = out.sampleRate;
      channels = out.channelData.length;
    }
  };
  try {
    for await (const chunk of chunks) take(await decoder.decode(chunk));
    if (decoder.flush) take(await decoder.flush());
  } finally {
    decoder.free();
  }
  return { frames, sampleRate, channels };
}
