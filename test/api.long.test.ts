// A 30-minute MP3 through a job end to end: probed at upload, segmented by
// voice activity in the worker, progress visible in the subscription, segments
// in order on the recording's timeline. The worker's peak memory is printed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POCKETSPHINX, RECORDINGS } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { collect, startServer, type Server } from './helpers/service.ts';

const MINUTES = 30;
let server: Server;
let mp3: Uint8Array;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-long-'));
  // Recorded speech with 4 s of silence after each recording, looped for 30 minutes.
  const talk = join(dir, 'talk.wav');
  const parts = RECORDINGS.map((r, i) => {
    const out = join(dir, `part-${i}.wav`);
    execFileSync('sox', [join(POCKETSPHINX, r), '-r', '16000', '-c', '1', out, 'pad', '0', '4']);
    return out;
  });
  execFileSync('sox', [...parts, talk]);
  execFileSync('ffmpeg', [
    '-v',
    'error',
    '-stream_loop',
    '-1',
    '-i',
    talk,
    '-t',
    String(MINUTES * 60),
    '-ac',
    '1',
    '-ar',
    '22050',
    '-b:a',
    '48k',
    join(dir, 'long.mp3'),
  ]);
  mp3 = readFileSync(join(dir, 'long.mp3'));
  server = await startServer({ MURMUR_MODEL_DIR: await generatedModel(), MURMUR_MAX_WORKERS: '1' });
});
afterAll(() => server?.stop());

describe('a 30-minute recording', () => {
  it('goes through a job with progress along the way and its segments in order', async () => {
    const created = await server.upload(mp3, 'meeting.mp3', { language: 'en' });
    expect(created.errors).toBeUndefined();
    const job = created.data.createJob;
    expect(job.input).toMatchObject({ format: 'mp3', sampleRate: 22050, channels: 1 });
    expect(Math.abs(job.input.durationSeconds - MINUTES * 60)).toBeLessThan(0.05);

    const client = server.ws();
    const updates = await collect<{ jobUpdated: any }>(
      client,
      `subscription ($id: ID!) { jobUpdated(id: $id) { status progress result { segments { start end text } } } }`,
      { id: job.id },
    );
    await client.dispose();
    const done = updates.at(-1)!.jobUpdated;
    expect(done.status).toBe('DONE');
    const progress = updates.map((u) => u.jobUpdated.progress);
    expect(progress.some((p) => p > 0 && p < 1)).toBe(true);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);

    const segments: { start: number; end: number }[] = done.result.segments;
    expect(segments.length).toBeGreaterThan(20); // one or more a chunk
    for (const [i, s] of segments.entries()) {
      expect(s.end).toBeGreaterThanOrEqual(s.start);
      if (i > 0) expect(s.start).toBeGreaterThanOrEqual(segments[i - 1].start);
    }
    expect(segments.at(-1)!.end).toBeGreaterThan(MINUTES * 60 - 60);
    expect(segments.at(-1)!.end).toBeLessThanOrEqual(MINUTES * 60);

    const found = await server.waitForEvent('batch.speech');
    const [chunks, speech] = [found.chunks as number, found.speechSeconds as number];
    const { peakMiB } = await server.waitForEvent('batch.done');
    console.log(`30-minute MP3: ${chunks} speech chunks, ${speech.toFixed(1)} s of speech; worker peak memory ${peakMiB} MiB`);
    expect(speech).toBeLessThan(MINUTES * 60);
  });
});
