// Whisper's log-mel spectrogram, as openai/whisper `audio.py` computes it:
// 16 kHz, n_fft 400, hop 160, periodic Hann, centred STFT with reflect padding,
// last frame dropped, power spectrum, Slaney mel filters, log10 with a 1e-10
// floor, max − 8 clamp, (x + 4) / 4; 3000 frames per 30 s window.
import FFT from 'fft.js';

export const SAMPLE_RATE = 16000;
export const N_FFT = 400;
export const HOP = 160;
export const WINDOW_SAMPLES = 30 * SAMPLE_RATE; // 480 000
export const WINDOW_FRAMES = WINDOW_SAMPLES / HOP; // 3000
const N_BINS = N_FFT / 2 + 1; // 201

/**
 * A 400-point DFT through fft.js, which only does powers of two: Bluestein's
 * chirp-z turns it into a 1024-point circular convolution. Two real frames go
 * through one complex transform (one as the real part, one as the imaginary).
 */
class Dft400 {
  private readonly m = 1024;
  private readonly fft = new FFT(this.m);
  private readonly chirp = new Float64Array(2 * N_FFT); // exp(-iπ n²/N)
  private readonly kernel: Float64Array; // FFT of the conjugate chirp, wrapped
  private readonly a: Float64Array;
  private readonly spectrum: Float64Array;
  private readonly product: Float64Array;
  private readonly result: Float64Array;

  constructor() {
    const { m } = this;
    for (let n = 0; n < N_FFT; n++) {
      const phase = (-Math.PI * ((n * n) % (2 * N_FFT))) / N_FFT;
      this.chirp[2 * n] = Math.cos(phase);
      this.chirp[2 * n + 1] = Math.sin(phase);
    }
    const b = new Float64Array(2 * m);
    for (let n = 0; n < N_FFT; n++) {
      const re = this.chirp[2 * n];
      const im = -this.chirp[2 * n + 1];
      b[2 * n] = re;
      b[2 * n + 1] = im;
      if (n > 0) {
        b[2 * (m - n)] = re;
        b[2 * (m - n) + 1] = im;
      }
    }
    this.kernel = new Float64Array(2 * m);
    this.fft.transform(this.kernel, b);
    this.a = new Float64Array(2 * m);
    this.spectrum = new Float64Array(2 * m);
    this.product = new Float64Array(2 * m);
    this.result = new Float64Array(2 * m);
  }

  /** Power spectra (bins 0..200) of two real frames of 400 samples. */
  powerPair(x1: Float64Array, x2: Float64Array, out1: Float64Array, out2: Float64Array): void {
    const { a, chirp, spectrum, kernel, product, result, m } = this;
    // a[800..2047] stays zero from construction; a[0..799] is overwritten below.
    for (let n = 0; n < N_FFT; n++) {
      const cr = chirp[2 * n];
      const ci = chirp[2 * n + 1];
      a[2 * n] = x1[n] * cr - x2[n] * ci;
      a[2 * n + 1] = x1[n] * ci + x2[n] * cr;
    }
    this.fft.transform(spectrum, a);
    for (let k = 0; k < m; k++) {
      const sr = spectrum[2 * k];
      const si = spectrum[2 * k + 1];
      const kr = kernel[2 * k];
      const ki = kernel[2 * k + 1];
      product[2 * k] = sr * kr - si * ki;
      product[2 * k + 1] = sr * ki + si * kr;
    }
    this.fft.inverseTransform(result, product);
    // Z[k] = chirp[k] · result[k]; Z = X1 + i·X2, so X1[k] = (Z[k] + conj Z[N−k]) / 2 and
    // X2[k] = (Z[k] − conj Z[N−k]) / 2i.
    for (let k = 0; k < N_BINS; k++) {
      const j = k === 0 ? 0 : N_FFT - k;
      const ar = result[2 * k] * chirp[2 * k] - result[2 * k + 1] * chirp[2 * k + 1];
      const ai = result[2 * k] * chirp[2 * k + 1] + result[2 * k + 1] * chirp[2 * k];
      const cr = result[2 * j] * chirp[2 * j] - result[2 * j + 1] * chirp[2 * j + 1];
      const ci = result[2 * j] * chirp[2 * j + 1] + result[2 * j + 1] * chirp[2 * j];
      out1[k] = ((ar + cr) ** 2 + (ai - ci) ** 2) / 4;
      out2[k] = ((ar - cr) ** 2 + (ai + ci) ** 2) / 4;
    }
  }
}

function hzToMel(f: number): number {
  const minLogHz = 1000;
  const minLogMel = minLogHz / (200 / 3);
  const logStep = Math.log(6.4) / 27;
  return f < minLogHz ? f / (200 / 3) : minLogMel + Math.log(f / minLogHz) / logStep;
}

function melToHz(m: number): number {
  const minLogHz = 1000;
  const minLogMel = minLogHz / (200 / 3);
  const logStep = Math.log(6.4) / 27;
  return m < minLogMel ? m * (200 / 3) : minLogHz * Math.exp(logStep * (m - minLogMel));
}

/** librosa.filters.mel(sr=16000, n_fft=400, n_mels, fmin=0, fmax=8000, htk=False, norm='slaney'), row-major [nMels, 201]. */
export function melFilters(nMels: number): Float64Array {
  const fftFreqs = Array.from({ length: N_BINS }, (_, k) => (k * SAMPLE_RATE) / N_FFT);
  const maxMel = hzToMel(SAMPLE_RATE / 2);
  const melF = Array.from({ length: nMels + 2 }, (_, i) => melToHz((i * maxMel) / (nMels + 1)));
  const weights = new Float64Array(nMels * N_BINS);
  for (let i = 0; i < nMels; i++) {
    const enorm = 2 / (melF[i + 2] - melF[i]);
    for (let k = 0; k < N_BINS; k++) {
      const lower = (fftFreqs[k] - melF[i]) / (melF[i + 1] - melF[i]);
      const upper = (melF[i + 2] - fftFreqs[k]) / (melF[i + 2] - melF[i + 1]);
      weights[i * N_BINS + k] = Math.max(0, Math.min(lower, upper)) * enorm;
    }
  }
  return weights;
}

/** Each filter's non-zero bins, so the mel projection skips the zeros (~93% of the matrix). */
interface SparseFilter {
  start: number;
  weights: Float64Array;
}

const filterCache = new Map<number, SparseFilter[]>();

function sparseFilters(nMels: number): SparseFilter[] {
  let filters = filterCache.get(nMels);
  if (!filters) {
    const dense = melFilters(nMels);
    filters = [];
    for (let i = 0; i < nMels; i++) {
      const row = dense.subarray(i * N_BINS, (i + 1) * N_BINS);
      let start = 0;
      while (start < N_BINS && row[start] === 0) start++;
      let end = N_BINS;
      while (end > start && row[end - 1] === 0) end--;
      filters.push({ start, weights: row.slice(start, end) });
    }
    filterCache.set(nMels, filters);
  }
  return filters;
}

const hann = Float64Array.from({ length: N_FFT }, (_, n) => 0.5 - 0.5 * Math.cos((2 * Math.PI * n) / N_FFT));
let dft: Dft400 | null = null;

/**
 * Log-mel features of one window: the samples (16 kHz mono, at most 30 s) are
 * zero-padded to 30 s first, as transformers.js and openai/whisper do.
 * Returns row-major [nMels, 3000].
 */
export function logMelSpectrogram(samples: Float32Array, nMels: 80 | 128): Float32Array {
  const out = new Float32Array(nMels * WINDOW_FRAMES);
  writeLogMel(samples, nMels, out);
  return out;
}

/** Same as logMelSpectrogram, into `out` (length nMels × 3000), e.g. one row of a batch. */
export function writeLogMel(samples: Float32Array, nMels: 80 | 128, out: Float32Array): void {
  if (samples.length > WINDOW_SAMPLES)
    throw new RangeError(`a window holds at most ${WINDOW_SAMPLES} samples (30 s), got ${samples.length}`);
  if (out.length !== nMels * WINDOW_FRAMES) throw new RangeError(`output must hold ${nMels} × ${WINDOW_FRAMES} values`);
  dft ??= new Dft400();
  const pad = N_FFT / 2;
  // Centred frames with reflect padding at both ends of the 30 s window.
  const at = (i: number): number => {
    const j = i < 0 ? -i : i >= WINDOW_SAMPLES ? 2 * (WINDOW_SAMPLES - 1) - i : i;
    return j < samples.length ? samples[j] : 0;
  };
  const filters = sparseFilters(nMels);
  const frame1 = new Float64Array(N_FFT);
  const frame2 = new Float64Array(N_FFT);
  const power1 = new Float64Array(N_BINS);
  const power2 = new Float64Array(N_BINS);
  const fill = (frame: Float64Array, t: number) => {
    const start = t * HOP - pad;
    if (start >= 0 && start + N_FFT <= samples.length) {
      for (let n = 0; n < N_FFT; n++) frame[n] = samples[start + n] * hann[n];
    } else {
      for (let n = 0; n < N_FFT; n++) frame[n] = at(start + n) * hann[n];
    }
  };
  const project = (power: Float64Array, t: number) => {
    for (let m = 0; m < nMels; m++) {
      const { start, weights } = filters[m];
      let sum = 0;
      for (let k = 0; k < weights.length; k++) sum += weights[k] * power[start + k];
      out[m * WINDOW_FRAMES + t] = Math.log10(Math.max(sum, 1e-10));
    }
  };
  // Frames wholly in the zero padding after the samples have zero power: no transform needed.
  const lastFrame = Math.min(WINDOW_FRAMES, Math.ceil((samples.length + pad) / HOP));
  const silent = Math.log10(1e-10);
  for (let t = lastFrame; t < WINDOW_FRAMES; t++) for (let m = 0; m < nMels; m++) out[m * WINDOW_FRAMES + t] = silent;
  for (let t = 0; t < lastFrame; t += 2) {
    fill(frame1, t);
    fill(frame2, t + 1);
    dft.powerPair(frame1, frame2, power1, power2);
    project(power1, t);
    if (t + 1 < WINDOW_FRAMES) project(power2, t + 1);
  }
  let max = -Infinity;
  for (let i = 0; i < out.length; i++) if (out[i] > max) max = out[i];
  const floor = max - 8;
  for (let i = 0; i < out.length; i++) out[i] = (Math.max(out[i], floor) + 4) / 4;
}
