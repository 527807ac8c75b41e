// Byte-level BPE decoding from tokenizer.json: ids → byte-level strings →
// bytes → UTF-8. Special tokens are skipped; timestamps are read as times.
// Encoding (prompts) goes through @huggingface/tokenizers on the same file.
import { Tokenizer } from '@huggingface/tokenizers';
import type { ModelFolder } from './modelFolder.ts';

/** GPT-2's printable stand-in character for each byte, inverted: character → byte. */
function byteDecoder(): Map<string, number> {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCharCode(printable(b) ? b : 256 + extra++), b);
  return map;
}

const TIMESTAMP = /^<\|(\d+\.\d\d)\|>$/;

export class WhisperTokenizer {
  private readonly pieces: (string | undefined)[] = [];
  private readonly special = new Set<number>();
  private readonly bytes = byteDecoder();
  private readonly utf8 = new TextDecoder('utf-8');
  private readonly utf8Encoder = new TextEncoder();

  constructor(
    private readonly file: ModelFolder['tokenizer'],
    private readonly timestampBegin: number,
  ) {
    for (const [piece, id] of Object.entries(file.model.vocab)) this.pieces[id] = piece;
    for (const t of file.added_tokens) {
      this.pieces[t.id] = t.content;
      if (t.special) this.special.add(t.id);
    }
  }

  private encoder: Tokenizer | null = null;

  /** Text tokens of `text` as openai/whisper encodes a prompt: " " + the trimmed text, no special tokens. */
  encodePrompt(text: string): number[] {
    this.encoder ??= new Tokenizer(this.file as never, {});
    return this.encoder.encode(` ${text.trim()}`, { add_special_tokens: false }).ids;
  }

  isTimestamp(id: number): boolean {
    return id >= this.timestampBegin;
  }

  /** Seconds for a timestamp token (0.02 s steps). */
  timeOf(id: number): number {
    const match = TIMESTAMP.exec(this.pieces[id] ?? '');
    return match ? Number(match[1]) : Math.round((id - this.timestampBegin) * 2) / 100;
  }

  /** Text of the ids, without special tokens and timestamps. */
  decode(ids: number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      if (this.special.has(id) || this.isTimestamp(id)) continue;
      const piece = this.pieces[id];
      if (piece === undefined) continue;
      for (const ch of piece) {
        const b = this.bytes.get(ch);
        if (b !== undefined) bytes.push(b);
        else bytes.push(...this.utf8Encoder.encode(ch)); // an added token that is plain text
      }
    }
    return this.utf8.decode(Uint8Array.from(bytes));
  }
}
