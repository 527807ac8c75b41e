// What the Whisper benchmarks share: a whisper-tiny-sized generated model,
// written anew each run (so the numbers are for the generator as it is now),
// and real recorded speech looped into segments, each starting elsewhere.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeWav } from '../src/audio/wav.ts';
import { syntheticShape, writeSyntheticModel } from '../src/whisper/synthetic/index.ts';

export async function writeTinyModel(dir: string, tokensPerWindow: number): Promise<void> {
  console.log(`writing a whisper-tiny-sized model to ${dir} …`);
  await writeSyntheticModel(dir, syntheticShape('tiny', { tokensPerWindow }), 1);
}

export function speechSegments(segments: number, seconds: number): Float32Array[] {
  const dataDir = '/usr/share/pocketsphinx/test/data/librivox';
  const speech = ['0870', '0880', '0890', '0920', '0930']
    .map((n) => decodeWav(readFileSync(join(dataDir, `sense_and_sensibility_01_austen_64kb-${n}.wav`))).samples)
    .reduce((all, s) => Float32Array.from([...all, ...s]), new Float32Array());
  return Array.from({ length: segments }, (_, i) => {
    const out = new Float32Array(seconds * 16000);
    for (let j = 0; j < out.length; j++) out[j] = speech[(j + i * 37_000) % speech.length];
    return out;
  });
}
