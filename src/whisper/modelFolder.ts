// Reads a Whisper model folder in the onnx-community layout. Every dimension
// and token id comes from the folder's own files.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WhisperError } from './errors.ts';

/** File-name suffixes by dtype, as transformers.js names them (utils/dtypes.js). */
export const DTYPE_SUFFIXES = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
} as const;
export type Dtype = keyof typeof DTYPE_SUFFIXES;
const DTYPE_ALIASES: Record<string, Dtype> = { quantized: 'q8', float32: 'fp32', float16: 'fp16' };

export function parseDtype(value: string): Dtype {
  const dtype = DTYPE_ALIASES[value] ?? value;
  if (!(dtype in DTYPE_SUFFIXES)) {
    throw new WhisperError(
      'INVALID_OPTIONS',
      `unknown model dtype "${value}": expected one of ${Object.keys(DTYPE_SUFFIXES).join(', ')}, quantized`,
    );
  }
  return dtype as Dtype;
}

export interface ModelDimensions {
  dModel: number;
  decoderLayers: number;
  decoderHeads: number;
  headDim: number;
  nMels: 80 | 128;
  vocabSize: number;
  maxTargetPositions: number;
  /** Encoder output frames: 1500 for 30 s windows. */
  audioContext: number;
}

export interface TokenIds {
  eot: number;
  sot: number;
  noTimestamps: number;
  timestampBegin: number;
  noSpeech: number | null;
  /** <|startofprev|>: the prompt (earlier text) comes after it, before <|startoftranscript|>. */
  startOfPrev: number | null;
  transcribe: number | null;
  translate: number | null;
  /** language code ('en') → token id; empty for English-only models */
  languages: Map<string, number>;
}

/** Word timings' settings: the cross-attention heads that follow the audio ([layer, head]; null: the folder lists none), and the median filter's width. */
export interface AlignmentSettings {
  heads: [number, number][] | null;
  medianFilterWidth: number;
}

export interface GenerationRules {
  suppressTokens: number[];
  beginSuppressTokens: number[];
  maxInitialTimestampIndex: number | null;
  maxLength: number;
}

export interface ModelFolder {
  dir: string;
  dtype: Dtype;
  encoderPath: string;
  decoderPath: string;
  dims: ModelDimensions;
  ids: TokenIds;
  rules: GenerationRules;
  alignment: AlignmentSettings;
  multilingual: boolean;
  tokenizer: TokenizerFile;
  /** Present in folders written by `murmur model synthetic`: the weights are random. */
  synthetic: { seed: number; tokensPerWindow: number } | null;
}

export interface TokenizerFile {
  model: { vocab: Record<string, number> };
  added_tokens: { id: number; content: string; special: boolean }[];
}

type Json = Record<string, unknown>;

function readJson(dir: string, name: string): Json {
  const path = join(dir, name);
  if (!existsSync(path)) throw new WhisperError('MODEL_NOT_FOUND', `model folder ${dir} has no ${name}`);
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
    return value as Json;
  } catch (err) {
    throw new WhisperError('MODEL_INVALID', `cannot read ${path}: ${(err as Error).message}`);
  }
}

function int(file: string, obj: Json, key: string, fallback?: number): number {
  const value = obj[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value))
    throw new WhisperError('MODEL_INVALID', `${file}: "${key}" must be an integer, got ${JSON.stringify(obj[key])}`);
  return value;
}

function intList(file: string, obj: Json, key: string): number[] {
  const value = obj[key] ?? [];
  if (!Array.isArray(value) || !value.every((v) => Number.isInteger(v)))
    throw new WhisperError('MODEL_INVALID', `${file}: "${key}" must be a list of token ids`);
  return value as number[];
}

function onnxFile(dir: string, base: string, dtype: Dtype): string {
  const path = join(dir, 'onnx', `${base}${DTYPE_SUFFIXES[dtype]}.onnx`);
  if (!existsSync(path)) {
    throw new WhisperError(
      'MODEL_VARIANT_MISSING',
      `model folder ${dir} has no ${dtype} variant: onnx/${base}${DTYPE_SUFFIXES[dtype]}.onnx is missing`,
    );
  }
  return path;
}

export function readModelFolder(dir: string, dtype: Dtype = 'fp32'): ModelFolder {
  if (!existsSync(dir)) throw new WhisperError('MODEL_NOT_FOUND', `model folder ${dir} does not exist`);
  const config = readJson(dir, 'config.json');
  const generation = readJson(dir, 'generation_config.json');
  const preprocessor = readJson(dir, 'preprocessor_config.json');
  const tokenizer = readJson(dir, 'tokenizer.json') as unknown as TokenizerFile;
  if (typeof tokenizer.model?.vocab !== 'object' || !Array.isArray(tokenizer.added_tokens)) {
    throw new WhisperError('MODEL_INVALID', `${join(dir, 'tokenizer.json')}: expected a BPE "model.vocab" and "added_tokens"`);
  }
  if (config.model_type !== 'whisper')
    throw new WhisperError(
      'MODEL_INVALID',
      `${join(dir, 'config.json')}: model_type is ${JSON.stringify(config.model_type)}, not "whisper"`,
    );

  const nMels = int('preprocessor_config.json', preprocessor, 'feature_size', config.num_mel_bins as number);
  if (nMels !== 80 && nMels !== 128)
    throw new WhisperError('MODEL_INVALID', `preprocessor_config.json: feature_size ${nMels} is not 80 or 128`);
  const dModel = int('config.json', config, 'd_model');
  const decoderHeads = int('config.json', config, 'decoder_attention_heads');
  const dims: ModelDimensions = {
    dModel,
    decoderLayers: int('config.json', config, 'decoder_layers'),
    decoderHeads,
    headDim: dModel / decoderHeads,
    nMels,
    vocabSize: int('config.json', config, 'vocab_size'),
    maxTargetPositions: int('config.json', config, 'max_target_positions', 448),
    audioContext: int('config.json', config, 'max_source_positions', 1500),
  };

  const byContent = new Map(tokenizer.added_tokens.map((t) => [t.content, t.id]));
  const noTimestamps = int('generation_config.json', generation, 'no_timestamps_token_id');
  const langToId = (generation.lang_to_id ?? {}) as Record<string, number>;
  const taskToId = (generation.task_to_id ?? {}) as Record<string, number>;
  const multilingual = generation.is_multilingual === true || Object.keys(langToId).length > 0;
  const ids: TokenIds = {
    eot: Array.isArray(generation.eos_token_id)
      ? (generation.eos_token_id[0] as number)
      : int('generation_config.json', generation, 'eos_token_id'),
    sot: int('generation_config.json', generation, 'decoder_start_token_id'),
    noTimestamps,
    timestampBegin: noTimestamps + 1,
    noSpeech: byContent.get('<|nospeech|>') ?? byContent.get('<|nocaptions|>') ?? null,
    startOfPrev: byContent.get('<|startofprev|>') ?? null,
    transcribe: taskToId.transcribe ?? byContent.get('<|transcribe|>') ?? null,
    translate: taskToId.translate ?? byContent.get('<|translate|>') ?? null,
    languages: new Map(Object.entries(langToId).map(([token, id]) => [token.replace(/^<\|(.*)\|>$/, '$1'), id])),
  };
  const maxInitial = generation.max_initial_timestamp_index;
  const rules: GenerationRules = {
    suppressTokens: intList('generation_config.json', generation, 'suppress_tokens'),
    beginSuppressTokens: intList('generation_config.json', generation, 'begin_suppress_tokens'),
    maxInitialTimestampIndex: typeof maxInitial === 'number' ? maxInitial : null,
    maxLength: int('generation_config.json', generation, 'max_length', dims.maxTargetPositions),
  };
  const heads = generation.alignment_heads;
  const validHeads =
    Array.isArray(heads) &&
    heads.every(
      (h) =>
        Array.isArray(h) &&
        h.length === 2 &&
        Number.isInteger(h[0]) &&
        Number.isInteger(h[1]) &&
        h[0] >= 0 &&
        h[0] < dims.decoderLayers &&
        h[1] >= 0 &&
        h[1] < dims.decoderHeads,
    );
  if (heads !== undefined && !validHeads)
    throw new WhisperError('MODEL_INVALID', 'generation_config.json: "alignment_heads" must list [layer, head] pairs of the decoder');
  const alignment: AlignmentSettings = {
    heads: validHeads && heads.length > 0 ? (heads as [number, number][]) : null,
    medianFilterWidth: int('config.json', config, 'median_filter_width', 7),
  };
  const murmur = config.murmur as { synthetic?: boolean; seed: number; tokensPerWindow: number } | undefined;
  return {
    dir,
    dtype,
    encoderPath: onnxFile(dir, 'encoder_model', dtype),
    decoderPath: onnxFile(dir, 'decoder_model_merged', dtype),
    dims,
    ids,
    rules,
    alignment,
    multilingual,
    tokenizer,
    synthetic: murmur?.synthetic ? { seed: murmur.seed, tokensPerWindow: murmur.tokensPerWindow } : null,
  };
}
