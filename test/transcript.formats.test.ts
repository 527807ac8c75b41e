import { describe, expect, it } from 'vitest';
import { toSrt, toVtt } from '../src/transcript/formats.ts';

const segments = [
  { start: 0.02, end: 4.15, text: ' Tom & Jerry <laugh> --> done ' },
  { start: 10, end: 10, text: '   ' }, // nothing to show: no cue, no number
  { start: 3723.004, end: 3725.5, text: 'an hour in,\n\n\nstill talking' },
];

describe('subtitles', () => {
  it('SubRip: numbered cues, comma milliseconds, hours, no blank line inside a cue', () => {
    expect(toSrt(segments)).toBe(
      '1\n00:00:00,020 --> 00:00:04,150\nTom & Jerry <laugh> --> done\n\n2\n01:02:03,004 --> 01:02:05,500\nan hour in,\nstill talking\n',
    );
  });

  it('WebVTT: header, dot milliseconds, &, < and > escaped', () => {
    expect(toVtt(segments)).toBe(
      'WEBVTT\n\n1\n00:00:00.020 --> 00:00:04.150\nTom &amp; Jerry &lt;laugh&gt; --&gt; done\n\n2\n01:02:03.004 --> 01:02:05.500\nan hour in,\nstill talking\n',
    );
  });

  it('no segments: an empty SubRip file and a bare WebVTT header', () => {
    expect(toSrt([])).toBe('');
    expect(toVtt([])).toBe('WEBVTT\n');
  });
});
