// Decoders in JavaScript and WebAssembly for installations without ffmpeg:
// node-wav for WAV, and eshaz's wasm-audio-decoders (mpg123, libFLAC,
// libvorbis, libopus) for MP3, FLAC, OGG Vorbis and Opus. They take the whole
// file and return every channel at the file's own rate.
import { FLACDecoder } from '@wasm-audio-decoders/flac';
import { OggVorbisDecoder } from '@wasm-audio-decoders/ogg-vorbis';
import { MPEGDecoder } from 'mpg123-decoder';
import { OggOpusDecoder } from 'ogg-opus-decoder';
import { AudioError } from './errors.ts';
import type { AudioFormat } from './formats.ts';
import { readWav, type PcmChannels } from './wav.ts';

interface WasmDecoder {
  ready: Promise<void>;
  decodeFile?: (data: Uint8Array) => Promise<PcmChannels & { errors: { message: string }[] }>;
  decode: (data: Uint8Array) => (PcmChannels & { errors: { message: string }[] }) | Promise<PcmChannels & { errors: { message: string }[] }>;
  free: () => void;
}

const WASM: Partial<Record<AudioFormat, () => WasmDecoder>> = {
  mp3: () => new MPEGDecoder() as unknown as WasmDecoder,
  flac: () => new FLACDecoder() as unknown as WasmDecoder,
  ogg: () => new OggVorbisDecoder() as unknown as WasmDecoder,
  opus: () => new OggOpusDecoder() as unknown as WasmDecoder,
};

export async function decodeWithJs(bytes: Uint8Array, format: AudioFormat, name: string): Promise<PcmChannels> {
  if (format === 'wav') return readWav(bytes, name);
  const make = WASM[format];
  if (!make) throw new AudioError('AUDIO_UNSUPPORTED', `${name} is ${format.toUpperCase()}, which needs ffmpeg: install it (Debian: apt-get install ffmpeg)`);
  const decoder = make();
  try {
    await decoder.ready;
    const out = await (decoder.decodeFile ? decoder.decodeFile(bytes) : decoder.decode(bytes));
    if (out.errors.length > 0) throw new AudioError('AUDIO_UNDECODABLE', `${name} is damaged or cut short: ${out.errors[0].message}`);
    return { channelData: out.channelData, sampleRate: out.sampleRate };
  } finally {
    decoder.free();
  }
}
