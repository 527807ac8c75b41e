// Types for node-wav, which the tests and benchmarks use to write WAV fixtures (the product reads WAV with wavefile).
declare module 'node-wav' {
  export function decode(buffer: ArrayBuffer | ArrayBufferView): { sampleRate: number; channelData: Float32Array[] } | undefined;
  export function encode(channelData: Float32Array[], opts: { sampleRate?: number; float?: boolean; bitDepth?: number }): Buffer;
  const wav: { decode: typeof decode; encode: typeof encode };
  export default wav;
}
