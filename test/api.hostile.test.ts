// Requests an attacker or a careless client sends, through the real server:
// each gets a typed refusal, leaves nothing behind, and the server goes on
// serving everyone else.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeAudioFile } from '../src/audio/decode.ts';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { startServer, startWorker, wavBytes, wavHeader, WORKER_TOKEN, type Server } from './helpers/service.ts';

let model: string;
let server: Server;
beforeAll(async () => {
  model = await generatedModel();
  server = await startServer({
    MURMUR_MODEL_DIR: model,
    MURMUR_MAX_WORKERS: '0',
    MURMUR_UPLOAD_IDLE_SECONDS: '1',
    MURMUR_CORS_ORIGINS: 'https://app.example.com',
  });
});
afterAll(() => server?.stop());

const uploadsDir = () => join(server.dataDir, 'blobs', 'uploads');
/** Partial blobs (an upload being written), and whole ones beside the jobs' own. */
const leftovers = () => (existsSync(uploadsDir()) ? readdirSync(uploadsDir()) : []);
const partials = () => leftovers().filter((f) => f.endsWith('.partial'));
const openFiles = () => readdirSync(`/proc/${server.process.pid}/fd`).length;
const settle = () => new Promise((r) => setTimeout(r, 300));

/** A multipart createJob built by hand, so that every part of it can be wrong. */
function multipart(parts: { name: string; value: string | Uint8Array; filename?: string }[], boundary = 'xBOUNDARYx'): Buffer {
  const chunks = parts.map((p) =>
    Buffer.concat([
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}\r\n\r\n`,
      ),
      Buffer.from(p.value),
      Buffer.from('\r\n'),
    ]),
  );
  return Buffer.concat([...chunks, Buffer.from(`--${boundary}--\r\n`)]);
}
const OPERATIONS = JSON.stringify({
  query: 'mutation ($file: File!) { createJob(input: { file: $file }) { id input { filename bytes } } }',
  variables: { file: null },
});
const post = (body: Buffer | string, headers: Record<string, string>) =>
  fetch(server.url, { method: 'POST', body: typeof body === 'string' ? body : new Uint8Array(body), headers }).then(async (r) => ({
    status: r.status,
    headers: r.headers,
    body: (await r.json().catch(() => null)) as any,
  }));
const MULTIPART = { 'content-type': 'multipart/form-data; boundary=xBOUNDARYx', 'graphql-preflight': '1' };

describe('a hostile or careless client', () => {
  it("cannot pollute the server's objects through the upload map; the server keeps answering JSON", async () => {
    for (const path of ['__proto__.x', 'variables.__proto__.x', 'constructor.prototype.x']) {
      const res = await post(
        multipart([
          { name: 'operations', value: OPERATIONS },
          { name: 'map', value: JSON.stringify({ 0: ['variables.file', path] }) },
          { name: '0', value: wavBytes(tone(300, 1)), filename: 'a.wav' },
        ]),
        MULTIPART,
      );
      expect(res.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    }
    // Before the fix, every JSON request after one such upload was refused ("Unexpected parameter x").
    const after = await server.gql(`{ queue { pending } }`);
    expect(after.errors).toBeUndefined();
    expect(await post(JSON.stringify({ query: '{ queue { pending } }' }), { 'content-type': 'application/json' })).toMatchObject({
      status: 200,
    });
    await settle();
    expect(leftovers()).toEqual([]);
  });

  it('can upload up to MURMUR_MAX_UPLOAD_BYTES, far past 25 MB', async () => {
    const big = wavBytes(tone(300, 16 * 60)); // 30.7 MB
    expect(big.length).toBeGreaterThan(30_000_000);
    const res = await server.upload(big, 'long.wav');
    expect(res.errors).toBeUndefined();
    expect(res.data.createJob.input.bytes).toBe(big.length);
  });

  it('that aborts uploads midway leaves no partial files and no open files', async () => {
    await settle();
    const before = openFiles();
    const blobs = leftovers();
    const body = multipart([
      { name: 'operations', value: OPERATIONS },
      { name: 'map', value: JSON.stringify({ 0: ['variables.file'] }) },
      { name: '0', value: wavBytes(tone(300, 60)), filename: 'a.wav' },
    ]);
    await Promise.all(
      Array.from({ length: 20 }, () => {
        return new Promise<void>((resolve) => {
          const req = request(server.url, { method: 'POST', headers: { ...MULTIPART, 'content-length': String(body.length) } });
          req.on('error', () => resolve());
          req.on('close', () => resolve());
          req.write(body.subarray(0, 1_000_000));
          setTimeout(() => req.destroy(), 200);
        });
      }),
    );
    await expect.poll(() => leftovers(), { timeout: 10_000 }).toEqual(blobs);
    expect(partials()).toEqual([]);
    await expect.poll(() => openFiles(), { timeout: 10_000 }).toBeLessThanOrEqual(before + 2);
  });

  it('that stops sending mid-upload is answered UPLOAD_STALLED, and nothing stays behind', async () => {
    const blobs = leftovers();
    const body = multipart([
      { name: 'operations', value: OPERATIONS },
      { name: 'map', value: JSON.stringify({ 0: ['variables.file'] }) },
      { name: '0', value: wavBytes(tone(300, 60)), filename: 'a.wav' },
    ]);
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(server.url, { method: 'POST', headers: { ...MULTIPART, 'content-length': String(body.length) } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      });
      req.on('error', reject);
      req.write(body.subarray(0, 500_000)); // and then nothing, with the connection open
    });
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.text).errors[0].extensions.code).toBe('UPLOAD_STALLED');
    await expect.poll(() => leftovers(), { timeout: 5000 }).toEqual(blobs);
  });

  it('that hangs up just as a whole small upload has arrived (its file still being stored) does not take the server down', async () => {
    const body = multipart([
      { name: 'operations', value: OPERATIONS },
      { name: 'map', value: JSON.stringify({ 0: ['variables.file'] }) },
      { name: '0', value: wavBytes(tone(300, 0.3)), filename: 'a.wav' },
    ]);
    for (let wave = 0; wave < 10; wave++) {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          return new Promise<void>((resolve) => {
            const req = request(server.url, { method: 'POST', headers: { ...MULTIPART, 'content-length': String(body.length) } });
            req.on('error', () => resolve());
            req.on('close', () => resolve());
            req.end(body);
            setTimeout(() => req.destroy(), i % 5);
          });
        }),
      );
    }
    expect((await fetch(server.url.replace('/graphql', '/healthz'))).status).toBe(200);
  });

  it('gets typed 4xx answers for malformed requests, not INTERNAL_SERVER_ERROR', async () => {
    const wrongType = await server.gql(`query ($first: Int) { jobs(first: $first) { nodes { id } } }`, { first: 'ten' });
    expect(wrongType.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const mapNotList = await post(
      multipart([
        { name: 'operations', value: OPERATIONS },
        { name: 'map', value: '{"0":"variables.file"}' },
        { name: '0', value: wavBytes(tone(300, 1)), filename: 'a.wav' },
      ]),
      MULTIPART,
    );
    expect([mapNotList.status, mapNotList.body.errors[0].extensions.code]).toEqual([400, 'BAD_USER_INPUT']);
    const noBoundary = await post('whatever', { 'content-type': 'multipart/form-data', 'graphql-preflight': '1' });
    expect([noBoundary.status, noBoundary.body.errors[0].extensions.code]).toEqual([400, 'BAD_USER_INPUT']);
    const badPath = await fetch(server.url.replace('/graphql', '/audio/%E0%A4%A'), {
      headers: { authorization: `Bearer ${WORKER_TOKEN}` },
    });
    expect(badPath.status).toBe(400);
    const form = await post('query=%7B%20queue%20%7B%20pending%20%7D%20%7D', { 'content-type': 'application/x-www-form-urlencoded' });
    expect([form.status, form.body.errors[0].extensions.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const huge = await post(JSON.stringify({ query: '{ queue { pending } }', variables: { pad: 'x'.repeat(2 << 20) } }), {
      'content-type': 'application/json',
    });
    expect([huge.status, huge.body.errors[0].extensions.code]).toEqual([413, 'INPUT_TOO_LARGE']);
  });

  it('cannot send a multipart request without the preflight header (a foreign page could), nor read answers from a foreign origin', async () => {
    const jobsBefore = (await server.gql(`{ jobs(first: 100) { nodes { id } } }`)).data.jobs.nodes.length;
    const noHeader = await post(
      multipart([
        { name: 'operations', value: OPERATIONS },
        { name: 'map', value: JSON.stringify({ 0: ['variables.file'] }) },
        { name: '0', value: wavBytes(tone(300, 1)), filename: 'a.wav' },
      ]),
      {
        'content-type': 'multipart/form-data; boundary=xBOUNDARYx',
      },
    );
    expect([noHeader.status, noHeader.body.errors[0].extensions.code]).toEqual([400, 'PREFLIGHT_REQUIRED']);
    expect((await server.gql(`{ jobs(first: 100) { nodes { id } } }`)).data.jobs.nodes.length).toBe(jobsBefore);

    const foreign = await post(JSON.stringify({ query: '{ queue { pending } }' }), {
      'content-type': 'application/json',
      origin: 'https://evil.example',
    });
    // Not this origin: the browser keeps the answer from the page.
    expect(foreign.headers.get('access-control-allow-origin')).not.toBe('https://evil.example');
    expect(foreign.headers.get('access-control-allow-origin')).not.toBe('*');
    const allowed = await post(JSON.stringify({ query: '{ queue { pending } }' }), {
      'content-type': 'application/json',
      origin: 'https://app.example.com',
    });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
  });

  it('has WAV headers the decoders cannot read refused at createJob with AUDIO_UNSUPPORTED', async () => {
    for (const header of [{ channels: 0 }, { channels: 64 }, { rate: 1 }, { codec: 0x11, bits: 4 }, { codec: 0x55 }]) {
      const res = await server.upload(wavHeader(header), 'odd.wav');
      expect(res.errors?.[0]?.extensions?.code, JSON.stringify(header)).toBe('AUDIO_UNSUPPORTED');
    }
    expect((await server.upload(wavHeader({ channels: 2, rate: 44100 }), 'fine.wav')).errors).toBeUndefined();
  });

  it('whose bad subscription fails alone: the socket and the other subscriptions carry on', async () => {
    const { id } = (await server.upload(wavBytes(tone(300, 1)), 'follow.wav')).data.createJob;
    const client = createClient({ url: server.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    const seen: string[] = [];
    const good = new Promise<void>((resolve, reject) =>
      client.subscribe<{ jobUpdated: { status: string } }>(
        { query: 'subscription ($id: ID!) { jobUpdated(id: $id) { status } }', variables: { id } },
        { next: (v) => seen.push(v.data!.jobUpdated.status), error: reject, complete: resolve },
      ),
    );
    await expect.poll(() => seen.length).toBeGreaterThan(0);
    const bad = await new Promise<unknown>((resolve) =>
      client.subscribe({ query: 'subscription { jobUpdated(id: ' }, { next: () => {}, error: resolve, complete: () => resolve(null) }),
    );
    expect(JSON.stringify(bad)).toMatch(/Syntax Error/);
    // The first subscription is still open: cancelling the job reaches it.
    await server.gql(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id });
    await good;
    expect(seen.at(-1)).toBe('CANCELLED');
    await client.dispose();
  });

  it('gets back the filename it sent, in any script', async () => {
    const res = await server.upload(wavBytes(tone(300, 1)), 'räume größe 音声.wav');
    expect(res.data.createJob.input.filename).toBe('räume größe 音声.wav');
  });
});

describe('media that points elsewhere', () => {
  // Real audio outside the upload: a decoder that followed a reference to it would accept the upload as 2 s of sound.
  let canary: string;
  beforeAll(() => {
    canary = join(mkdtempSync(join(tmpdir(), 'murmur-canary-')), 'canary.aac');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=d=2', '-c:a', 'aac', canary]);
  });
  /** An HLS playlist behind an ID3 tag: ffmpeg left to guess the format reads the playlist's segments. */
  const hlsBehindId3 = (padTo = 0) => {
    const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n${canary}\n#EXT-X-ENDLIST\n`;
    const pad = padTo > playlist.length ? `#${'x'.repeat(padTo - playlist.length - 2)}\n` : '';
    return Buffer.concat([Buffer.from([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 0]), Buffer.from(playlist + pad)]);
  };
  /** A DASH manifest behind an `ftyp` box. */
  const dashBehindFtyp = () => {
    const mpd = `<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S"><Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="1000"><BaseURL>${canary}</BaseURL></Representation></AdaptationSet></Period></MPD>`;
    return Buffer.concat([Buffer.from([0, 0, 0, 16]), Buffer.from('ftypdash'), Buffer.alloc(4), Buffer.from(mpd)]);
  };

  it('createJob refuses them without opening what they name (ffprobe and ffmpeg get the sniffed demuxer and one file)', async () => {
    // Over 4 MB, an MP3 is probed by ffprobe and ffmpeg rather than in-process.
    for (const [bytes, name] of [
      [hlsBehindId3(5_000_000), 'playlist.mp3'],
      [dashBehindFtyp(), 'manifest.m4a'],
    ] as const) {
      const res = await server.upload(bytes, name);
      expect(res.errors?.[0]?.extensions?.code, name).toBe('AUDIO_UNDECODABLE');
    }
  });

  it("the worker's decoder refuses them too", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-hostile-'));
    const file = join(dir, 'upload');
    writeFileSync(file, hlsBehindId3());
    await expect(decodeAudioFile(file, { name: 'playlist.mp3' })).rejects.toMatchObject({ code: 'AUDIO_UNDECODABLE' });
  });
});

describe('at start and in workers', () => {
  it('a model folder murmur cannot load stops the server naming MURMUR_MODEL_DIR', async () => {
    const empty = join(tmpdir(), `murmur-no-model-${process.pid}`);
    mkdirSync(empty, { recursive: true });
    const run = spawnSync(process.execPath, [new URL('../src/cli/bin.js', import.meta.url).pathname, 'serve'], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MURMUR_MODEL_DIR: empty, MURMUR_DATA_DIR: join(empty, 'data') },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/CONFIG_INVALID: MURMUR_MODEL_DIR: .* is not a Whisper model folder/);
  });

  it('a worker decodes no more than the server allows now: a job accepted under a higher limit fails AUDIO_TOO_LONG', async () => {
    const first = await startServer({ MURMUR_MODEL_DIR: model, MURMUR_MAX_WORKERS: '0', MURMUR_MAX_DURATION_SECONDS: '60' });
    const { id } = (await first.upload(wavBytes(tone(300, 20)), 'twenty.wav')).data.createJob;
    await first.stop();
    const second = await startServer(
      { MURMUR_MODEL_DIR: model, MURMUR_MAX_WORKERS: '1', MURMUR_MAX_DURATION_SECONDS: '10', MURMUR_SEGMENTATION: 'fixed' },
      first.dataDir,
    );
    try {
      await expect
        .poll(async () => (await second.gql(`query ($id: ID!) { job(id: $id) { status error { code } } }`, { id })).data.job, {
          timeout: 60_000,
        })
        .toEqual({ status: 'FAILED', error: { code: 'AUDIO_TOO_LONG' } });
    } finally {
      await second.stop();
    }
  });

  it('a worker removes the audio folders of workers that died before cleaning up', async () => {
    // A process that has exited: its pid names a folder nobody will clean.
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => gone.once('exit', r));
    const orphan = join(tmpdir(), `murmur-audio-${gone.pid}-test`);
    mkdirSync(orphan, { recursive: true });
    // No API to reach (nothing to claim, so nothing else to wait for): the sweep comes first, at start.
    const worker = startWorker('http://127.0.0.1:1/graphql', model, ['--exit-after', '1']);
    await new Promise((r) => worker.process.once('exit', r));
    expect(existsSync(orphan)).toBe(false);
  });
});
