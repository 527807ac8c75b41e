import { AutoTokenizer } from '@huggingface/transformers';
import { beforeAll, describe, expect, it } from 'vitest';
import { readModelFolder } from '../src/whisper/modelFolder.ts';
import { timedSegments } from '../src/whisper/segments.ts';
import { WhisperTokenizer } from '../src/whisper/tokenizer.ts';
import { generatedModel } from './helpers/models.ts';
import './helpers/reference.ts'; // sets transformers.js to offline, local folders

describe('WhisperTokenizer', () => {
  let dir: string;
  let ours: WhisperTokenizer;
  let theirs: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  let begin: number;
  beforeAll(async () => {
    dir = await generatedModel();
    const folder = readModelFolder(dir);
    begin = folder.ids.timestampBegin;
    ours = new WhisperTokenizer(folder.tokenizer, begin);
    theirs = await AutoTokenizer.from_pretrained(`${dir}/`);
  });

  it('decodes byte-level BPE as transformers.js does, multi-byte UTF-8 included', () => {
    for (const text of [' hello world', ' héllo wörld — 日本語 🎤', 'kamu zedo pira', ' tabs\tand\nnewlines']) {
      const ids = theirs.encode(text, { add_special_tokens: false });
      expect(ours.decode(ids)).toBe(text);
      expect(ours.decode(ids)).toBe(theirs.decode(ids, { skip_special_tokens: true }));
    }
  });

  it('skips special tokens and timestamps in text', () => {
    const ids = theirs.encode(' kamu', { add_special_tokens: false });
    const folder = readModelFolder(dir);
    expect(ours.decode([folder.ids.sot, begin + 3, ...ids, begin + 10, folder.ids.eot])).toBe(' kamu');
  });

  it('reads timestamp tokens as times in 0.02 s steps', () => {
    expect(ours.timeOf(begin)).toBe(0);
    expect(ours.timeOf(begin + 1)).toBe(0.02);
    expect(ours.timeOf(begin + 1500)).toBe(30);
    expect(ours.isTimestamp(begin - 1)).toBe(false);
  });

  it('cuts segments at timestamps and ends an unclosed last one with the audio', () => {
    const word = (w: string) => theirs.encode(w, { add_special_tokens: false });
    const t = (s: number) => begin + Math.round(s / 0.02);
    const tokens = [t(0), ...word(' one'), ...word(' two'), t(1.5), t(1.5), ...word(' three'), t(2.4), t(3), ...word(' four')];
    // each segment keeps the tokens it was read from, its timestamps included
    expect(timedSegments(tokens, ours, 10, 5, true)).toEqual([
      { start: 10, end: 11.5, text: 'one two', tokens: [t(0), ...word(' one'), ...word(' two'), t(1.5)] },
      { start: 11.5, end: 12.4, text: 'three', tokens: [t(1.5), ...word(' three'), t(2.4)] },
      { start: 13, end: 15, text: 'four', tokens: [t(3), ...word(' four')] },
    ]);
    expect(timedSegments(word(' just text'), ours, 4, 2.5, false)).toEqual([
      { start: 4, end: 6.5, text: 'just text', tokens: word(' just text') },
    ]);
    // a timestamp in the window's padding, past the audio, is held to the audio's end
    expect(timedSegments([t(0.5), ...word(' late'), t(9.5)], ours, 30, 3.2, true)).toEqual([
      { start: 30.5, end: 33.2, text: 'late', tokens: [t(0.5), ...word(' late'), t(9.5)] },
    ]);
    expect(timedSegments([], ours, 0, 2.5, false)).toEqual([]);
  });
});
