// ffmpeg and ffprobe, when they are on the PATH (Debian's ffmpeg package):
// every format murmur takes, decoded straight to 16 kHz mono float32 with
// ffmpeg's band-limited resampler, streamed through a pipe.
//
// Confined to the upload's own bytes: ffmpeg is told the demuxer that murmur's
// own sniffing found, never left to guess one (an HLS playlist behind an ID3
// header, or a DASH manifest behind an `ftyp` box, would make it open other
// files or addresses), and may open nothing but the one file it is given.
//
// Bounded too: each run gets an address-space limit (MURMUR_DECODE_MEMORY_MB;
// decoding streams, so it needs the same at any length) and a time limit of
// MURMUR_DECODE_BASE_SECONDS (30) plus MURMUR_DECODE_SECONDS_PER_MINUTE (10)
// for each minute of audio the file
// declares (or may hold, at most), after which it is killed.
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { AudioError } from './errors.ts';
import type { AudioFormat } from './formats.ts';

/** ffmpeg's demuxer for each sniffed format: none of them follows references to other files or URLs. */
const DEMUXERS: Record<AudioFormat, string[]> = {
  wav: ['-f', 'wav'],
  flac: ['-f', 'flac'],
  ogg: ['-f', 'ogg'],
  opus: ['-f', 'ogg'],
  // The mov demuxer can follow data references to other files when asked to; it is told not to.
  m4a: ['-f', 'mov', '-enable_drefs', '0'],
  webm: ['-f', 'matroska'],
  mp3: ['-f', 'mp3'],
  aac: ['-f', 'aac'],
};

/** The input options that confine ffmpeg and ffprobe to `path`, read as `format`. */
const confined = (path: string, format: AudioFormat) => ['-protocol_whitelist', 'file', ...DEMUXERS[format], '-i', `file:${path}`];

let available: boolean | undefined;

/** The bounds every ffmpeg and ffprobe run gets, from the environment (read per run: tests change them). */
export function decodeBounds(env = process.env): { memoryMb: number; baseSeconds: number; secondsPerMinute: number } {
  const number = (name: string, fallback: number) => {
    const v = Number(env[name]);
    return env[name] && Number.isFinite(v) && v > 0 ? v : fallback;
  };
  return {
    memoryMb: number('MURMUR_DECODE_MEMORY_MB', 1024),
    baseSeconds: number('MURMUR_DECODE_BASE_SECONDS', 30),
    secondsPerMinute: number('MURMUR_DECODE_SECONDS_PER_MINUTE', 10),
  };
}

/** ffmpeg and ffprobe runs in progress, so a stopping worker leaves none behind. */
const running = new Set<{ kill(signal: NodeJS.Signals): boolean }>();

export function killDecoders(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** `cmd args` under an address-space limit (through sh's ulimit: Node's spawn sets none), killed after `seconds`. */
function bounded(
  cmd: string,
  args: string[],
  seconds: number,
): { child: ChildProcessByStdio<null, Readable, Readable>; timedOut: () => boolean } {
  const { memoryMb } = decodeBounds();
  const child = spawn('sh', ['-c', `ulimit -v ${Math.round(memoryMb * 1024)} && exec "$0" "$@"`, cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    child.kill('SIGKILL');
  }, seconds * 1000);
  running.add(child);
  child.on('close', () => {
    clearTimeout(timer);
    running.delete(child);
  });
  return { child, timedOut: () => late };
}

/** How long a run may take for audio of `seconds`. */
function timeLimit(audioSeconds: number): number {
  const { baseSeconds, secondsPerMinute } = decodeBounds();
  return baseSeconds + (audioSeconds / 60) * secondsPerMinute;
}

/** Whether ffmpeg and ffprobe run here. MURMUR_FFMPEG=off turns them off (the JavaScript decoders take over). */
export function ffmpegAvailable(): boolean {
  if (process.env.MURMUR_FFMPEG === 'off') return false;
  available ??= ['ffmpeg', 'ffprobe'].every((cmd) => spawnSync(cmd, ['-version'], { stdio: 'ignore' }).status === 0);
  return available;
}

export interface ProbedStream {
  /** ffprobe's container name, e.g. "wav", "mov,mp4,m4a,3gp,3g2,mj2". */
  container: string;
  codec: string;
  sampleRate: number;
  channels: number;
  /** As the file's headers declare it; null when they do not say. */
  declaredSeconds: number | null;
}

export async function ffprobe(path: string, name: string, format: AudioFormat): Promise<ProbedStream> {
  const { stdout, stderr, code, timedOut } = await run(
    'ffprobe',
    [
      '-v',
      'error',
      '-show_entries',
      'format=format_name,duration:stream=codec_type,codec_name,sample_rate,channels,duration',
      '-of',
      'json',
      ...confined(path, format),
    ],
    timeLimit(0),
  );
  if (timedOut) throw new AudioError('AUDIO_UNDECODABLE', `${name} could not be probed within ${timeLimit(0)} s`);
  if (code !== 0) throw new AudioError('AUDIO_UNDECODABLE', `${name} is not audio ffmpeg can read: ${lastLine(stderr)}`);
  const info = JSON.parse(stdout) as {
    format?: { format_name?: string; duration?: string };
    streams?: { codec_type?: string; codec_name?: string; sample_rate?: string; channels?: number; duration?: string }[];
  };
  const audio = info.streams?.find((s) => s.codec_type === 'audio');
  if (!audio) throw new AudioError('AUDIO_UNDECODABLE', `${name} has no audio stream`);
  const declared = Number(audio.duration ?? info.format?.duration);
  return {
    container: info.format?.format_name ?? 'unknown',
    codec: audio.codec_name ?? 'unknown',
    sampleRate: Number(audio.sample_rate),
    channels: audio.channels ?? 0,
    declaredSeconds: Number.isFinite(declared) ? declared : null,
  };
}

/**
 * Decodes the first audio stream to 16 kHz mono float32. The result holds the
 * samples unless `keep` is false (then only their count). `boundSeconds`: the
 * audio's length for the time limit (what the file declares, or the most it may hold).
 */
export async function ffmpegDecode(
  path: string,
  name: string,
  format: AudioFormat,
  keep = true,
  expectedSamples = 0,
  boundSeconds = expectedSamples / 16000,
): Promise<{ samples: Float32Array; count: number; warnings: string }> {
  const limit = timeLimit(boundSeconds);
  const { child, timedOut } = bounded(
    'ffmpeg',
    ['-nostdin', '-v', 'warning', ...confined(path, format), '-map', '0:a:0', '-ac', '1', '-ar', '16000', '-f', 'f32le', 'pipe:1'],
    limit,
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let out = new Float32Array(keep ? Math.max(16000, Math.ceil(expectedSamples * 1.01)) : 0);
  let count = 0;
  let carry = Buffer.alloc(0);
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    const usable = data.length - (data.length % 4);
    carry = Buffer.from(data.subarray(usable));
    const n = usable / 4;
    if (keep) {
      if (count + n > out.length) {
        const grown = new Float32Array(Math.max(out.length * 2, count + n));
        grown.set(out.subarray(0, count));
        out = grown;
      }
      // Copied byte-wise: the chunk's offset need not be 4-aligned.
      new Uint8Array(out.buffer, count * 4, usable).set(data.subarray(0, usable));
    }
    count += n;
  }
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  if (timedOut())
    throw new AudioError(
      'AUDIO_UNDECODABLE',
      `${name} could not be decoded within ${Math.round(limit)} s (${decodeBounds().secondsPerMinute} s per minute of audio)`,
    );
  // Warnings too: a cut or damaged file often decodes with only a warning ("corrupt input packet").
  if (code !== 0) throw new AudioError('AUDIO_UNDECODABLE', `${name} could not be decoded: ${lastLine(stderr)}`);
  return { samples: keep ? out.subarray(0, count) : out, count, warnings: stderr };
}

function run(cmd: string, args: string[], seconds: number): Promise<{ stdout: string; stderr: string; code: number; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const { child, timedOut } = bounded(cmd, args, seconds);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code: code ?? 1, timedOut: timedOut() }));
  });
}

const lastLine = (text: string) =>
  text
    .trim()
    .split('\n')
    .at(-1)
    ?.replace(/^.*?: /, '') || 'no details';
