// @huggingface/transformers as the independent implementation, loading the
// same model folder offline.
import {
  AutoProcessor,
  env,
  Tensor,
  WhisperForConditionalGeneration,
  type Processor,
  type PreTrainedModel,
} from '@huggingface/transformers';

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '/';

export class Reference {
  private constructor(
    private readonly model: PreTrainedModel,
    private readonly processor: Processor,
  ) {}

  static async load(dir: string, dtype: 'fp32' | 'fp16' | 'q8' = 'fp32'): Promise<Reference> {
    const id = dir.endsWith('/') ? dir : `${dir}/`;
    const model = await WhisperForConditionalGeneration.from_pretrained(id, { dtype, device: 'cpu' });
    const processor = await AutoProcessor.from_pretrained(id);
    return new Reference(model, processor);
  }

  async features(audio: Float32Array): Promise<Float32Array> {
    const { input_features } = await this.processor(audio);
    return input_features.data as Float32Array;
  }

  /** Greedy tokens after the prompt, without the closing <|endoftext|>. */
  async generate(
    audio: Float32Array,
    options: { language?: string; task?: 'transcribe' | 'translate'; timestamps?: boolean; eot: number },
  ): Promise<number[]> {
    const { input_features } = await this.processor(audio);
    const out = (await this.model.generate({
      inputs: input_features,
      ...(options.language && { language: options.language }),
      ...(options.task && { task: options.task }),
      return_timestamps: options.timestamps ?? false,
    } as never)) as unknown as { tolist(): bigint[][] };
    const ids = out.tolist()[0].map(Number);
    // <|sot|> [<|lang|> <|task|>] [<|notimestamps|>]
    const multilingual = (this.model.generation_config as { is_multilingual?: boolean }).is_multilingual;
    const promptLength = (multilingual ? 3 : 1) + (options.timestamps ? 0 : 1);
    const sampled = ids.slice(promptLength);
    return sampled[sampled.length - 1] === options.eot ? sampled.slice(0, -1) : sampled;
  }

  /** Greedy tokens after a decoder prompt given whole (`decoder_input_ids`: <|startofprev|> … <|startoftranscript|> …), without the closing <|endoftext|>. */
  async generateFrom(audio: Float32Array, decoderInputIds: number[], eot: number): Promise<number[]> {
    const { input_features } = await this.processor(audio);
    const out = (await this.model.generate({ inputs: input_features, decoder_input_ids: decoderInputIds } as never)) as unknown as {
      tolist(): bigint[][];
    };
    const sampled = out.tolist()[0].map(Number).slice(decoderInputIds.length);
    return sampled[sampled.length - 1] === eot ? sampled.slice(0, -1) : sampled;
  }

  /**
   * transformers.js's token timestamps (generate with return_token_timestamps,
   * no timestamp tokens): the text tokens, each token's time, and its words
   * as its tokenizer groups them.
   */
  async tokenTimestamps(
    audio: Float32Array,
    language: string,
    eot: number,
  ): Promise<{ tokens: number[]; times: number[]; words: string[]; wordTokens: number[][] }> {
    const { input_features } = await this.processor(audio);
    const multilingual = (this.model.generation_config as { is_multilingual?: boolean }).is_multilingual;
    const out = (await this.model.generate({
      inputs: input_features,
      ...(multilingual && { language }),
      return_token_timestamps: true,
    } as never)) as unknown as { sequences: Tensor; token_timestamps: Tensor };
    const sequence = (out.sequences.tolist() as bigint[][])[0].map(Number);
    const times = (out.token_timestamps.tolist() as number[][])[0];
    const begin = multilingual ? 4 : 2;
    const end = sequence[sequence.length - 1] === eot ? sequence.length - 1 : sequence.length;
    const tokens = sequence.slice(begin, end);
    const tokenizer = (
      this.processor as unknown as { tokenizer: { combineTokensIntoWords(t: number[], l: string): [string[], number[][], number[][]] } }
    ).tokenizer;
    const [words, wordTokens] = tokenizer.combineTokensIntoWords(tokens, 'english');
    return { tokens, times: times.slice(begin, end), words, wordTokens };
  }

  /** One forward pass: the decoder's logits after `prefix` (the last position). */
  async logitsAfter(audio: Float32Array, prefix: number[]): Promise<Float32Array> {
    const { input_features } = await this.processor(audio);
    const decoder_input_ids = new Tensor('int64', BigInt64Array.from(prefix.map(BigInt)), [1, prefix.length]);
    const { logits } = (await (this.model as unknown as (x: object) => Promise<{ logits: Tensor }>)({
      input_features,
      decoder_input_ids,
    })) as { logits: Tensor };
    const V = logits.dims[2];
    return (logits.data as Float32Array).slice((prefix.length - 1) * V, prefix.length * V);
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}
