// Voice-activity segmentation: Silero's probabilities → speech regions → chunks of at most 30 s.
import { SileroVad } from './silero.ts';
import { DEFAULT_SPEECH, speechChunks, speechRegions, type Chunk, type SpeechOptions } from './speech.ts';

export { SileroVad } from './silero.ts';
export {
  chunkAudio,
  DEFAULT_SPEECH,
  recordingTime,
  speechChunks,
  speechRegions,
  type Chunk,
  type Segmentation,
  type SpeechOptions,
  type Span,
} from './speech.ts';

export async function speechChunksOf(vad: SileroVad, samples: Float32Array, options: SpeechOptions = DEFAULT_SPEECH): Promise<Chunk[]> {
  const probs = await vad.probabilities(samples);
  return speechChunks(speechRegions(probs, samples.length, options), probs, options);
}
