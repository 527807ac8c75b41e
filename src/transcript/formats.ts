// A transcript's segments as SubRip and WebVTT subtitles, through the
// `subtitle` library (numbering, HH:MM:SS,mmm and HH:MM:SS.mmm times). The
// library passes text through as it is, so the text rules are here: WebVTT
// escapes &, < and > (which also keeps "-->" out of cue text); SubRip has no
// escapes, so a cue's text never holds a blank line (it would end the cue).
import { stringifySync } from 'subtitle';
import type { Segment } from './transcript.ts';

const escapeVtt = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function cues(segments: Segment[], text: (t: string) => string) {
  return segments
    .map((s) => ({ ...s, text: s.text.trim().replace(/\s*\n\s*\n\s*/g, '\n') }))
    .filter((s) => s.text !== '')
    .map((s) => ({
      type: 'cue' as const,
      data: { start: Math.round(s.start * 1000), end: Math.round(Math.max(s.end, s.start) * 1000), text: text(s.text) },
    }));
}

/** One segment a word, for word-level cues. */
export function wordCues(segments: Segment[]): Segment[] {
  return segments.flatMap((s) => (s.words ?? []).map((w) => ({ start: w.start, end: w.end, text: w.word })));
}

export const toSrt = (segments: Segment[]): string =>
  stringifySync(
    cues(segments, (t) => t),
    { format: 'SRT' },
  );
export function toVtt(segments: Segment[]): string {
  const list = cues(segments, escapeVtt);
  // A WebVTT file starts with its header even when it has no cues (the library writes nothing then).
  return list.length ? stringifySync(list, { format: 'WebVTT' }) : 'WEBVTT\n';
}
