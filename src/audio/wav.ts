// WAV through wavefile: PCM 8/16/24/32-bit and 32/64-bit float, plain or
// WAVE_FORMAT_EXTENSIBLE (what ffmpeg and most tools write beyond 16-bit
// stereo), any rate, any channel count; with a check of the header's promise.
import wavefile from 'wavefile';
import { SAMPLE_RATE } from '../whisper/features.ts';
import { AudioError } from './errors.ts';
import { mixToMono } from './resample.ts';

export interface PcmChannels {
  channelData: Float32Array[];
  sampleRate: number;
}

/** Full-scale value of each integer bit depth; float depths are already in [-1, 1]. */
const SCALE: Record<string, { offset: number; scale: number }> = {
  '8': { offset: 128, scale: 128 }, // 8-bit WAV is unsigned
  '16': { offset: 0, scale: 32768 },
  '24': { offset: 0, scale: 8388608 },
  '32': { offset: 0, scale: 2147483648 },
  '32f': { offset: 0, scale: 1 },
  '64': { offset: 0, scale: 1 },
};

export function readWav(bytes: Uint8Array, name = 'input'): PcmChannels {
  if (bytes.length === 0) throw new AudioError('AUDIO_EMPTY', `${name} is empty`);
  bytes = withRealSizes(bytes, name);
  let file: InstanceType<typeof wavefile.WaveFile>;
  try {
    file = new wavefile.WaveFile(bytes);
  } catch (err) {
    throw new AudioError('AUDIO_UNDECODABLE', `${name} is not a WAV file this decoder reads: ${(err as Error).message}`);
  }
  const fmt = file.fmt as { numChannels: number; sampleRate: number; audioFormat: number; subformat?: number[] };
  // WAVE_FORMAT_EXTENSIBLE (0xFFFE) names the sample format in its subformat GUID; wavefile reports float there as '32'.
  const float = fmt.audioFormat === 3 || (fmt.audioFormat === 0xfffe && fmt.subformat?.[0] === 3);
  const depth = SCALE[float && file.bitDepth === '32' ? '32f' : file.bitDepth];
  if (!depth)
    throw new AudioError('AUDIO_UNSUPPORTED', `${name} holds ${file.bitDepth}-bit samples; PCM 8/16/24/32-bit and float are read`);
  // Extensible float arrives as int32 bit patterns: read them as such and view them as float32, bit for bit.
  const floatBits = float && file.bitDepth === '32';
  const raw = file.getSamples(false, floatBits ? Int32Array : Float32Array) as unknown as
    (Float32Array | Int32Array) | (Float32Array | Int32Array)[];
  const channels = (Array.isArray(raw) ? raw : [raw]).map((c) =>
    c instanceof Int32Array ? new Float32Array(c.buffer, c.byteOffset, c.length) : c,
  );
  for (const c of channels) for (let i = 0; i < c.length; i++) c[i] = (c[i] - depth.offset) / depth.scale;
  if ((channels[0]?.length ?? 0) === 0) throw new AudioError('AUDIO_EMPTY', `${name} holds no samples`);
  return { channelData: channels.slice(0, fmt.numChannels), sampleRate: fmt.sampleRate };
}

/**
 * The bytes of the `data` chunk that are really there. Tools writing to a pipe cannot go back to fill
 * in sizes: ffmpeg writes 0xFFFFFFFF, sox 0x7ffff000, others 0; a size of one of those, or one past
 * the end of the file, means "to the end of the file", as ffmpeg and sox read it. The duration then
 * follows the file's real size, so a small file cannot claim hours.
 */
export function wavDataBytes(at: number, declared: number, fileSize: number): number {
  const there = Math.max(0, fileSize - (at + 8));
  return declared === 0 || declared === 0xffffffff || declared > there ? there : declared;
}

/** The RIFF chunks whose headers lie within `head`: id, offset of the chunk header, declared size. */
function* riffChunks(head: Uint8Array): Generator<{ id: string; at: number; size: number; view: DataView }> {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  for (let at = 12; at + 8 <= head.length;) {
    const size = view.getUint32(at + 4, true);
    yield { id: String.fromCharCode(...head.subarray(at, at + 4)), at, size, view };
    at += 8 + size + (size % 2);
  }
}

/** The file with its RIFF and data sizes set to what it holds (whole frames), when its header says otherwise. */
function withRealSizes(bytes: Uint8Array, name: string): Uint8Array {
  const facts = wavFacts(bytes.subarray(0, Math.min(bytes.length, 1 << 16)), name, bytes.length);
  for (const { id, at, size } of riffChunks(bytes.subarray(0, Math.min(bytes.length, 1 << 16)))) {
    if (id !== 'data') continue;
    const real = (facts.frames * wavBlockAlign(bytes)) >>> 0;
    if (real === size && bytes.length >= 8 && new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true) === bytes.length - 8)
      return bytes;
    const copy = bytes.slice(0, at + 8 + real);
    const view = new DataView(copy.buffer, copy.byteOffset, copy.byteLength);
    view.setUint32(4, copy.length - 8, true);
    view.setUint32(at + 4, real, true);
    return copy;
  }
  return bytes;
}

function wavBlockAlign(bytes: Uint8Array): number {
  for (const { id, at, view } of riffChunks(bytes.subarray(0, Math.min(bytes.length, 1 << 16))))
    if (id === 'fmt ') return view.getUint16(at + 20, true);
  return 1;
}

/** What murmur decodes: outside these a header is refused at once (the decoders fail on it later, or make nonsense). */
export const WAV_LIMITS = { maxChannels: 8, minRate: 4000, maxRate: 384_000 };

/**
 * Rate, channels and length from the RIFF header alone (for probing without reading the samples),
 * refusing a header the decoders cannot read: a codec other than PCM or float, odd sample sizes,
 * 0 or more than WAV_LIMITS.maxChannels channels, a rate outside WAV_LIMITS, a block size that
 * does not match.
 */
export function wavFacts(head: Uint8Array, name: string, fileSize: number): { frames: number; sampleRate: number; channels: number } {
  let fmt: { codec: number; channels: number; sampleRate: number; blockAlign: number; bits: number } | null = null;
  for (const { id, at, size, view } of riffChunks(head)) {
    if (id === 'fmt ' && at + 24 <= head.length) {
      let codec = view.getUint16(at + 8, true);
      // WAVE_FORMAT_EXTENSIBLE names the codec in the first two bytes of its subformat GUID.
      if (codec === 0xfffe && size >= 40 && at + 34 <= head.length) codec = view.getUint16(at + 32, true);
      fmt = {
        codec,
        channels: view.getUint16(at + 10, true),
        sampleRate: view.getUint32(at + 12, true),
        blockAlign: view.getUint16(at + 20, true),
        bits: view.getUint16(at + 22, true),
      };
    }
    if (id === 'data') {
      if (!fmt) break;
      checkFormat(fmt, name);
      return { frames: Math.floor(wavDataBytes(at, size, fileSize) / fmt.blockAlign), sampleRate: fmt.sampleRate, channels: fmt.channels };
    }
  }
  throw new AudioError('AUDIO_UNDECODABLE', `${name} is not a WAV file this decoder reads: no format and data chunks in its header`);
}

function checkFormat(f: { codec: number; channels: number; sampleRate: number; blockAlign: number; bits: number }, name: string): void {
  const pcm = f.codec === 1 && [8, 16, 24, 32].includes(f.bits);
  const float = f.codec === 3 && [32, 64].includes(f.bits);
  if (!pcm && !float)
    throw new AudioError(
      'AUDIO_UNSUPPORTED',
      `${name} is WAV with codec 0x${f.codec.toString(16)} at ${f.bits} bits; PCM 8/16/24/32-bit and 32/64-bit float are read`,
    );
  if (f.channels < 1 || f.channels > WAV_LIMITS.maxChannels)
    throw new AudioError('AUDIO_UNSUPPORTED', `${name} declares ${f.channels} channels; 1 to ${WAV_LIMITS.maxChannels} are read`);
  if (f.sampleRate < WAV_LIMITS.minRate || f.sampleRate > WAV_LIMITS.maxRate)
    throw new AudioError(
      'AUDIO_UNSUPPORTED',
      `${name} declares ${f.sampleRate} Hz; ${WAV_LIMITS.minRate} to ${WAV_LIMITS.maxRate} Hz are read`,
    );
  if (f.blockAlign !== (f.channels * f.bits) / 8)
    throw new AudioError(
      'AUDIO_UNDECODABLE',
      `${name} declares ${f.blockAlign}-byte frames for ${f.channels} channel(s) of ${f.bits} bits`,
    );
}

/** A 16 kHz WAV as mono samples, synchronously (fixtures, benchmarks); anything else goes through decodeAudioFile. */
export function decodeWav(bytes: Uint8Array, name = 'input'): { samples: Float32Array; channels: number; durationSeconds: number } {
  const { channelData, sampleRate } = readWav(bytes, name);
  if (sampleRate !== SAMPLE_RATE)
    throw new RangeError(`${name} is sampled at ${sampleRate} Hz: decode it with decodeAudioFile, which resamples`);
  const samples = mixToMono(channelData);
  return { samples, channels: channelData.length, durationSeconds: samples.length / SAMPLE_RATE };
}
