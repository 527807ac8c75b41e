// Real and synthesized speech for tests: Debian's pocketsphinx-testdata
// recordings and espeak-ng, resampled to 16 kHz by sox.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeWav } from '../../src/audio/wav.ts';

export const POCKETSPHINX = '/usr/share/pocketsphinx/test/data';
export const RECORDINGS = [
  'cards/001.wav',
  'cards/003.wav',
  'librivox/sense_and_sensibility_01_austen_64kb-0870.wav',
  'librivox/sense_and_sensibility_01_austen_64kb-0930.wav',
];

export function recording(name: string): Float32Array {
  return decodeWav(readFileSync(join(POCKETSPHINX, name)), name).samples;
}

/** Writes espeak-ng speech as a 16 kHz mono 16-bit WAV and returns its path. */
export function speechFile(text: string, voice = 'en'): string {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-speech-'));
  const raw = join(dir, 'espeak.wav');
  const out = join(dir, 'speech.wav');
  execFileSync('espeak-ng', ['-v', voice, '-w', raw, text]);
  execFileSync('sox', [raw, '-r', '16000', '-c', '1', '-b', '16', out]);
  return out;
}

export function speech(text: string, voice = 'en'): Float32Array {
  return decodeWav(readFileSync(speechFile(text, voice))).samples;
}

export function tone(hz: number, seconds: number, amplitude = 0.3): Float32Array {
  const out = new Float32Array(Math.round(seconds * 16000));
  for (let i = 0; i < out.length; i++) out[i] = amplitude * Math.sin((2 * Math.PI * hz * i) / 16000);
  return out;
}
