// Execution providers: an ordered preference list. onnxruntime-node throws
// (rather than falling back) when a provider's libraries are missing, so each
// is tried in turn and the first that creates every session wins.
import ort from 'onnxruntime-node';
import { WhisperError } from './errors.ts';
import { silentLogger, type Logger } from '../log.ts';

// Read when the first session starts (src/cli/bin.js tells why); here too for programs that use the runtime alone.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

export const KNOWN_PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'webgpu', 'dml', 'coreml'] as const;
export type ProviderName = (typeof KNOWN_PROVIDERS)[number];

export function parseProviders(list: string | string[]): ProviderName[] {
  const names = (Array.isArray(list) ? list : list.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (names.length === 0) throw new WhisperError('INVALID_OPTIONS', 'the execution provider list is empty');
  for (const name of names) {
    if (!(KNOWN_PROVIDERS as readonly string[]).includes(name)) {
      throw new WhisperError('INVALID_OPTIONS', `unknown execution provider "${name}": expected some of ${KNOWN_PROVIDERS.join(', ')}`);
    }
  }
  return names as ProviderName[];
}

export interface SessionSettings {
  providers: ProviderName[];
  /** Threads per session (intra-op); 0 lets onnxruntime choose. */
  threads: number;
  log?: Logger;
}

export interface OpenedSessions {
  provider: ProviderName;
  sessions: ort.InferenceSession[];
  skipped: { provider: ProviderName; reason: string }[];
}

export interface SessionFile {
  /** A file, or a model's bytes. */
  path: string | Uint8Array;
  /** Symbolic dimensions fixed at load time, so onnxruntime can plan with static shapes. */
  freeDimensions?: Record<string, number>;
}

/** `files` may differ by provider (a CPU encoder runs one window at a time, with a fixed batch axis). */
/**
 * Sessions do not spin their threads while idle: each session has its own pool,
 * and the encoder's and the token selector's spinning threads took the cores
 * from the decoder (whisper-tiny, batch 16: 67 → 49 ms a step).
 */
const NO_SPINNING = { session: { 'intra_op.allow_spinning': '0' } };

export async function openSessions(files: (provider: ProviderName) => SessionFile[], settings: SessionSettings): Promise<OpenedSessions> {
  // onnxruntime's own logger would print each skipped provider's failure in
  // several native lines; the reason is reported in the one line below instead.
  ort.env.logLevel = 'fatal';
  const skipped: OpenedSessions['skipped'] = [];
  for (const provider of settings.providers) {
    const sessions: ort.InferenceSession[] = [];
    try {
      for (const file of files(provider)) {
        sessions.push(await openSession(file, provider, settings.threads));
      }
    } catch (err) {
      await Promise.all(sessions.map((s) => s.release()));
      skipped.push({ provider, reason: firstLine((err as Error).message) });
      continue;
    }
    const why = skipped.length ? `; skipped ${skipped.map((s) => `${s.provider} (${s.reason})`).join(', ')}` : '';
    (settings.log ?? silentLogger)[skipped.length ? 'warn' : 'info'](
      { event: 'model.provider', provider, skipped },
      `whisper: execution provider ${provider}${why}`,
    );
    return { provider, sessions, skipped };
  }
  throw new WhisperError(
    'PROVIDER_UNAVAILABLE',
    `no execution provider could load the model: ${skipped.map((s) => `${s.provider}: ${s.reason}`).join('; ')}`,
  );
}

/** One session on a provider already chosen (by openSessions). */
export function openSession(file: SessionFile, provider: ProviderName, threads: number): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    logSeverityLevel: 3,
    extra: NO_SPINNING,
    ...(file.freeDimensions && { freeDimensionOverrides: file.freeDimensions }),
  };
  // two overloads, one for a path and one for bytes
  return typeof file.path === 'string' ? ort.InferenceSession.create(file.path, options) : ort.InferenceSession.create(file.path, options);
}

function firstLine(message: string): string {
  return message.split('\n')[0].slice(0, 300);
}
