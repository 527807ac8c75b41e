// The vocabulary of a generated model: a byte-level BPE text vocabulary followed
// by Whisper's special tokens in Whisper's own order, so that the ids line up
// with the real checkpoints when the sizes are the real ones
// (multilingual 50257 text tokens → 51865 in all; `.en` 50256 → 51864;
// large-v3 50257 + 100 languages → 51866).
import { WHISPER_LANGUAGES } from '../languages.ts';
import type { Rng } from '../rng.ts';

const WHISPER_LANGUAGE_CODES = WHISPER_LANGUAGES.map(([code]) => code);

export type VocabularyKind = 'multilingual' | 'english' | 'v3';

export interface SpecialIds {
  eot: number;
  sot: number;
  languages: Record<string, number>; // '<|en|>' → id
  translate: number;
  transcribe: number;
  startOfLm: number;
  startOfPrev: number;
  noSpeech: number;
  noTimestamps: number;
  timestampBegin: number;
  size: number;
}

export const TIMESTAMP_COUNT = 1501; // <|0.00|> … <|30.00|>

export function specialIds(textSize: number, kind: VocabularyKind): SpecialIds {
  const codes = kind === 'v3' ? [...WHISPER_LANGUAGE_CODES, 'yue'] : [...WHISPER_LANGUAGE_CODES];
  let id = textSize;
  const eot = id++;
  const sot = id++;
  const languages: Record<string, number> = {};
  for (const code of codes) languages[`<|${code}|>`] = id++;
  const translate = id++;
  const transcribe = id++;
  const startOfLm = id++;
  const startOfPrev = id++;
  const noSpeech = id++;
  const noTimestamps = id++;
  const timestampBegin = id;
  return {
    eot,
    sot,
    languages,
    translate,
    transcribe,
    startOfLm,
    startOfPrev,
    noSpeech,
    noTimestamps,
    timestampBegin,
    size: timestampBegin + TIMESTAMP_COUNT,
  };
}

/** GPT-2's byte → printable character map, in GPT-2's id order (space byte 0x20 lands on id 220). */
export function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars = new Map<number, string>(printable.map((b) => [b, String.fromCharCode(b)]));
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!chars.has(b)) chars.set(b, String.fromCharCode(256 + extra++));
  const order = [...printable, ...Array.from({ length: 256 }, (_, b) => b).filter((b) => !printable.includes(b))];
  return order.map((b) => chars.get(b)!);
}

const SPACE = 'Ġ'; // byte-level form of ' '
const CONSONANTS = 'bdfghklmnprstvz';
const VOWELS = 'aeiou';

export interface TextVocabulary {
  tokens: string[]; // id → byte-level string
  merges: [string, string][];
  /** Ids of tokens made of lower-case letters, optionally led by a space: what the model may say. */
  speakable: Set<number>;
}

/**
 * The 256 byte tokens, then syllable tokens and their space-led forms, then
 * words of two syllables, each added with the merges that build it, so the
 * file is a consistent BPE vocabulary and decoded text reads like words.
 */
export function textVocabulary(size: number, rng: Rng): TextVocabulary {
  const tokens = byteLevelAlphabet();
  const merges: [string, string][] = [];
  const index = new Map(tokens.map((t, i) => [t, i]));
  const speakable = new Set<number>();
  const add = (left: string, right: string): boolean => {
    const token = left + right;
    if (index.has(token) || tokens.length >= size) return false;
    merges.push([left, right]);
    index.set(token, tokens.length);
    tokens.push(token);
    return true;
  };
  for (const c of CONSONANTS + VOWELS) speakable.add(index.get(c)!);
  const syllables: string[] = [];
  for (const c of CONSONANTS) for (const v of VOWELS) syllables.push(c + v);
  for (const s of syllables) add(s[0], s[1]);
  for (const s of syllables) add(SPACE, s);
  const pick = () => syllables[rng.int(syllables.length)];
  while (tokens.length < size) {
    const a = pick();
    const b = pick();
    if (add(SPACE + a, b) || add(a, b)) continue;
    add(SPACE + a + b, pick()); // both two-syllable spellings exist: grow a three-syllable word
  }
  if (tokens.length > size) throw new Error(`text vocabulary overflow: ${tokens.length} > ${size}`);
  for (let id = 256; id < tokens.length; id++) speakable.add(id);
  return { tokens, merges, speakable };
}

export function tokenizerJson(text: TextVocabulary, ids: SpecialIds): object {
  const vocab: Record<string, number> = {};
  text.tokens.forEach((t, i) => (vocab[t] = i));
  const added: { id: number; content: string; special: boolean }[] = [
    { id: ids.eot, content: '<|endoftext|>', special: true },
    { id: ids.sot, content: '<|startoftranscript|>', special: true },
    ...Object.entries(ids.languages).map(([content, id]) => ({ id, content, special: true })),
    { id: ids.translate, content: '<|translate|>', special: true },
    { id: ids.transcribe, content: '<|transcribe|>', special: true },
    { id: ids.startOfLm, content: '<|startoflm|>', special: true },
    { id: ids.startOfPrev, content: '<|startofprev|>', special: true },
    { id: ids.noSpeech, content: '<|nospeech|>', special: true },
    { id: ids.noTimestamps, content: '<|notimestamps|>', special: true },
  ];
  // As in the Hugging Face exports, timestamps are added tokens that are not special.
  for (let i = 0; i < TIMESTAMP_COUNT; i++)
    added.push({ id: ids.timestampBegin + i, content: `<|${(i * 0.02).toFixed(2)}|>`, special: false });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added.map((t) => ({ ...t, single_word: false, lstrip: false, rstrip: false, normalized: false })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: text.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
