// A transcript's segments as SubRip and WebVTT subtitles.
import { stringifySync } from 'subtitle';

export interface Segment {
  start: number; // seconds
  end: number;
  text: string;
}

const cues = (segments: Segment[]) =>
  segments.filter((s) => s.text.trim() !== '').map((s) => ({ type: 'cue' as const, data: { start: Math.round(s.start * 1000), end: Math.round(s.end * 1000), text: s.text.trim() } }));

export const toSrt = (segments: Segment[]): string => stringifySync(cues(segments), { format: 'SRT' });
export const toVtt = (segments: Segment[]): string => stringifySync(cues(segments), { format: 'WebVTT' });
