// The bad-input corpus: broken, hostile and huge audio, crafted containers,
// abusive GraphQL, abusive multipart, slow clients and hostile URLs, each sent
// to one real server with keys on. Every case must be refused with its typed
// code; afterwards the server still answers, nothing refused was stored (no
// job, no file), and its memory is reported.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { murmur, startServer, wavBytes, wavHeader, WORKER_TOKEN, type Server } from './helpers/service.ts';

let server: Server;
let key: string;
let work: string;
const MAX_UPLOAD = 8 << 20;

beforeAll(async () => {
  server = await startServer({
    MURMUR_AUTH: 'keys',
    MURMUR_MAX_WORKERS: '0',
    MURMUR_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
    MURMUR_MAX_DURATION_SECONDS: '120',
    MURMUR_UPLOAD_IDLE_SECONDS: '1',
    MURMUR_KEY_JOBS_PER_MINUTE: '0',
  });
  await server.waitForLine(/export MURMUR_API_KEY=(\S+)/);
  key = (await murmur(['keys', 'create', '--name', 'corpus', '--tenant', 'corpus'], { MURMUR_DATA_DIR: server.dataDir })).trim();
  work = mkdtempSync(join(tmpdir(), 'murmur-corpus-'));
}, 120_000);

afterAll(() => server?.stop());

// ---- ways to send ----------------------------------------------------------

type Answer = { status: number; code?: string };
const bearer = () => ({ authorization: `Bearer ${key}` });

async function answer(res: Response): Promise<Answer> {
  const body = (await res.json().catch(() => null)) as any;
  // GraphQL's typed code, or the type of an OpenAI-style error (the /v1 routes).
  return { status: res.status, code: body?.errors?.[0]?.extensions?.code ?? body?.error?.type };
}

function form(bytes: Uint8Array, filename: string, input: Record<string, unknown> = {}): FormData {
  const f = new FormData();
  f.set(
    'operations',
    JSON.stringify({
      query: 'mutation ($input: CreateJobInput!) { createJob(input: $input) { id } }',
      variables: { input: { ...input, file: null } },
    }),
  );
  f.set('map', JSON.stringify({ 0: ['variables.input.file'] }));
  f.set('0', new Blob([new Uint8Array(bytes)]), filename);
  return f;
}

const upload =
  (bytes: Uint8Array, filename: string, input?: Record<string, unknown>, headers: Record<string, string> = bearer()) =>
  () =>
    fetch(server.url, { method: 'POST', body: form(bytes, filename, input), headers: { 'graphql-preflight': '1', ...headers } }).then(
      answer,
    );

const json =
  (body: unknown, headers: Record<string, string> = {}) =>
  () =>
    fetch(server.url, {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...bearer(), ...headers },
    }).then(answer);

const query = (q: string, variables: Record<string, unknown> = {}) => json({ query: q, variables });

const raw = (body: string | Buffer, headers: Record<string, string>) => () =>
  fetch(server.url, {
    method: 'POST',
    body: typeof body === 'string' ? body : new Uint8Array(body),
    headers: { ...bearer(), ...headers },
  }).then(answer);

/** A body sent in chunks of 64 kB with no content-length, as a stream is. */
const chunked = (body: Buffer) => () =>
  fetch(server.url, {
    method: 'POST',
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < body.length; i += 65_536) c.enqueue(new Uint8Array(body.subarray(i, i + 65_536)));
        c.close();
      },
    }),
    duplex: 'half',
    headers: { 'content-type': 'application/json', ...bearer() },
  } as RequestInit).then(answer);

function multipart(parts: { name: string; value: string | Uint8Array; filename?: string }[], boundary = 'xBOUNDARYx'): Buffer {
  return Buffer.concat([
    ...parts.map((p) =>
      Buffer.concat([
        Buffer.from(
          `--${boundary}\r\ncontent-disposition: form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}\r\n\r\n`,
        ),
        Buffer.from(p.value),
        Buffer.from('\r\n'),
      ]),
    ),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
}
const MULTIPART = { 'content-type': 'multipart/form-data; boundary=xBOUNDARYx', 'graphql-preflight': '1' };
const OPS = JSON.stringify({ query: 'mutation ($file: File!) { createJob(input: { file: $file }) { id } }', variables: { file: null } });
const MAP = JSON.stringify({ 0: ['variables.file'] });

const url = (u: string) => query(`mutation ($u: String!) { createJob(input: { url: $u }) { id } }`, { u });

/** Sends the head of an upload and then nothing: the server must give up (UPLOAD_STALLED) on its own. */
const stalled = () => () =>
  new Promise<Answer>((resolve, reject) => {
    const { port, hostname } = new URL(server.url);
    const socket = connect(Number(port), hostname);
    const head = multipart([
      { name: 'operations', value: OPS },
      { name: 'map', value: MAP },
    ]).subarray(0, -16);
    socket.write(
      `POST /graphql HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ngraphql-preflight: 1\r\ncontent-type: multipart/form-data; boundary=xBOUNDARYx\r\ncontent-length: 1000000\r\n\r\n`,
    );
    socket.write(
      Buffer.concat([head, Buffer.from(`--xBOUNDARYx\r\ncontent-disposition: form-data; name="0"; filename="slow.wav"\r\n\r\nRIFF`)]),
    );
    let text = '';
    socket.on('data', (d) => (text += d));
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(text.match(/^HTTP\/1\.1 (\d+)/)?.[1]);
      resolve({ status, code: text.match(/"code":"([A-Z_]+)"/)?.[1] });
    });
    setTimeout(() => socket.end(), 5000);
  });

// ---- audio made for the corpus ---------------------------------------------

const tone = (seconds: number) => new Float32Array(Math.round(16000 * seconds)).map((_, i) => 0.3 * Math.sin(i / 7));
function ffmpegMake(name: string, args: string[]): Buffer {
  const out = join(work, name);
  execFileSync('ffmpeg', ['-v', 'error', '-y', ...args, out]);
  return readFileSync(out);
}
const cut = (bytes: Buffer, fraction: number) => bytes.subarray(0, Math.floor(bytes.length * fraction));

// ---- the corpus ---------------------------------------------------------------

interface Case {
  name: string;
  send: () => Promise<Answer>;
  code: string;
}

function corpus(): Case[] {
  const canary = ffmpegMake('canary.aac', ['-f', 'lavfi', '-i', 'sine=d=2', '-c:a', 'aac']);
  const canaryPath = join(work, 'canary.aac');
  writeFileSync(canaryPath, canary);
  const mp3 = ffmpegMake('a.mp3', ['-f', 'lavfi', '-i', 'sine=d=5', '-c:a', 'libmp3lame']);
  const ogg = ffmpegMake('a.ogg', ['-f', 'lavfi', '-i', 'sine=d=5', '-c:a', 'libvorbis']);
  const opus = ffmpegMake('a.opus', ['-f', 'lavfi', '-i', 'sine=d=5', '-c:a', 'libopus']);
  const flac = ffmpegMake('a.flac', ['-f', 'lavfi', '-i', 'sine=d=5', '-c:a', 'flac']);
  const m4a = ffmpegMake('a.m4a', ['-f', 'lavfi', '-i', 'sine=d=5', '-c:a', 'aac']);
  const videoOnly = ffmpegMake('v.mp4', ['-f', 'lavfi', '-i', 'color=c=red:s=64x64:d=1', '-c:v', 'mpeg4']);
  const long = ffmpegMake('long.mp3', ['-f', 'lavfi', '-i', 'sine=d=180', '-c:a', 'libmp3lame', '-b:a', '32k']);
  const good = wavBytes(tone(1));
  const hls = (pad = 0) => {
    const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n${canaryPath}\n#EXT-X-ENDLIST\n`;
    return Buffer.concat([
      Buffer.from([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 0]),
      Buffer.from(playlist + (pad ? `#${'x'.repeat(pad)}\n` : '')),
    ]);
  };
  const dash = `<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S"><Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="1000"><BaseURL>${canaryPath}</BaseURL></Representation></AdaptationSet></Period></MPD>`;
  const ffconcat = `ffconcat version 1.0\nfile '${canaryPath}'\n`;
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
  const sdp = 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n';
  const aliases = (n: number, field = '__typename') => `{ ${Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ')} }`;
  const random = Buffer.alloc(100_000).map((_, i) => (i * 2654435761) >>> 24);

  return [
    // Broken audio
    { name: 'an empty file', send: upload(new Uint8Array(0), 'empty.wav'), code: 'AUDIO_EMPTY' },
    { name: 'random bytes', send: upload(random, 'noise.mp3'), code: 'AUDIO_UNDECODABLE' },
    { name: 'a text file', send: upload(Buffer.from('hello, this is not audio\n'.repeat(100)), 'notes.wav'), code: 'AUDIO_UNDECODABLE' },
    { name: 'a PNG named .wav', send: upload(png, 'picture.wav'), code: 'AUDIO_UNDECODABLE' },
    { name: 'a WAV header with no samples', send: upload(wavHeader({ dataBytes: 0 }), 'silent.wav'), code: 'AUDIO_EMPTY' },
    { name: 'a WAV of MP3 frames (codec 85)', send: upload(wavHeader({ codec: 85 }), 'codec.wav'), code: 'AUDIO_UNSUPPORTED' },
    { name: 'a WAV with 0 channels', send: upload(wavHeader({ channels: 0, align: 2 }), 'zero.wav'), code: 'AUDIO_UNSUPPORTED' },
    { name: 'a WAV with 9 channels', send: upload(wavHeader({ channels: 9 }), 'nine.wav'), code: 'AUDIO_UNSUPPORTED' },
    { name: 'a WAV at 1 kHz', send: upload(wavHeader({ rate: 1000 }), 'slow.wav'), code: 'AUDIO_UNSUPPORTED' },
    { name: 'a WAV at 1 MHz', send: upload(wavHeader({ rate: 1_000_000 }), 'fast.wav'), code: 'AUDIO_UNSUPPORTED' },
    { name: 'a WAV whose block align disagrees', send: upload(wavHeader({ align: 7 }), 'align.wav'), code: 'AUDIO_UNDECODABLE' },
    // A size past the end reads as "to the end" (what pipes leave, ffmpeg and sox read it so): the length is the file's real one.
    {
      name: 'a WAV declaring 4 GB of samples and holding none',
      send: upload(wavHeader({ declared: 0xfffffff0, dataBytes: 0 }), 'liar.wav'),
      code: 'AUDIO_EMPTY',
    },
    { name: 'an MP3 cut in half', send: upload(cut(mp3, 0.5), 'cut.mp3'), code: 'AUDIO_UNDECODABLE' },
    { name: 'an OGG Vorbis cut in half', send: upload(cut(ogg, 0.5), 'cut.ogg'), code: 'AUDIO_UNDECODABLE' },
    { name: 'an Opus file cut in half', send: upload(cut(opus, 0.5), 'cut.opus'), code: 'AUDIO_UNDECODABLE' },
    { name: 'a FLAC cut in half', send: upload(cut(flac, 0.5), 'cut.flac'), code: 'AUDIO_UNDECODABLE' },
    { name: 'an M4A cut in half', send: upload(cut(m4a, 0.5), 'cut.m4a'), code: 'AUDIO_UNDECODABLE' },
    { name: 'an MP4 with video and no audio', send: upload(videoOnly, 'video.m4a'), code: 'AUDIO_UNDECODABLE' },
    // Huge audio
    {
      name: 'a file over MURMUR_MAX_UPLOAD_BYTES',
      send: upload(Buffer.concat([good, Buffer.alloc(MAX_UPLOAD)]), 'huge.wav'),
      code: 'INPUT_TOO_LARGE',
    },
    { name: 'audio over MURMUR_MAX_DURATION_SECONDS (WAV)', send: upload(wavBytes(tone(121)), 'long.wav'), code: 'AUDIO_TOO_LONG' },
    { name: 'audio over MURMUR_MAX_DURATION_SECONDS (MP3)', send: upload(long, 'long.mp3'), code: 'AUDIO_TOO_LONG' },
    // Crafted containers that name other files
    // In-process, the MP3 decoder finds no frame in it; ffmpeg, told the demuxer, finds none either. Neither reads the canary.
    { name: 'an HLS playlist behind an ID3 tag (probed in-process)', send: upload(hls(), 'playlist.mp3'), code: 'AUDIO_EMPTY' },
    {
      name: 'an HLS playlist behind an ID3 tag, over 4 MB (probed by ffmpeg)',
      send: upload(hls(5_000_000), 'big-playlist.mp3'),
      code: 'AUDIO_UNDECODABLE',
    },
    {
      name: 'a DASH manifest behind an ftyp box',
      send: upload(
        Buffer.concat([Buffer.from([0, 0, 0, 16]), Buffer.from('ftypdash'), Buffer.alloc(4), Buffer.from(dash)]),
        'manifest.m4a',
      ),
      code: 'AUDIO_UNDECODABLE',
    },
    {
      name: 'a plain HLS playlist',
      send: upload(Buffer.from(`#EXTM3U\n#EXTINF:2,\n${canaryPath}\n`), 'list.m3u8'),
      code: 'AUDIO_UNDECODABLE',
    },
    { name: 'an ffconcat script', send: upload(Buffer.from(ffconcat), 'concat.txt'), code: 'AUDIO_UNDECODABLE' },
    {
      name: 'an ffconcat script behind a RIFF/WAVE header',
      send: upload(Buffer.concat([wavHeader({ dataBytes: 0 }).subarray(0, 36), Buffer.from(ffconcat)]), 'concat.wav'),
      code: 'AUDIO_UNDECODABLE',
    },
    { name: 'an SDP description (RTP from an address)', send: upload(Buffer.from(sdp), 'stream.sdp'), code: 'AUDIO_UNDECODABLE' },
    {
      name: 'an OGG header around a playlist',
      send: upload(Buffer.concat([Buffer.from('OggS'), Buffer.alloc(24), Buffer.from(`#EXTM3U\n${canaryPath}\n`)]), 'list.ogg'),
      code: 'AUDIO_UNDECODABLE',
    },
    // Abusive GraphQL
    { name: '20,000 aliases', send: query(aliases(20_000)), code: 'QUERY_TOO_COMPLEX' },
    { name: '31 aliases of the queue', send: query(aliases(31, 'jobs { nodes { id } }')), code: 'QUERY_TOO_COMPLEX' },
    { name: '21 directives', send: query(aliases(21, '__typename @include(if: true)')), code: 'QUERY_TOO_COMPLEX' },
    {
      name: 'a query over the cost limit',
      send: query(
        aliases(
          25,
          'jobs(first: 100) { edges { node { id status input { filename bytes format } result { text srt vtt segments { start end text } } } } }',
        ),
      ),
      code: 'QUERY_TOO_COMPLEX',
    },
    { name: 'a batch of two operations', send: json([{ query: '{ __typename }' }, { query: '{ __typename }' }]), code: 'BAD_USER_INPUT' },
    { name: 'a body that is not JSON', send: json('{"query": "{ __typename }"'), code: 'BAD_USER_INPUT' },
    {
      name: 'a chunked JSON body over MURMUR_MAX_REQUEST_BYTES (no length declared)',
      send: chunked(Buffer.from(JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(2 << 20) } }))),
      code: 'INPUT_TOO_LARGE',
    },
    {
      name: 'a model name that is not percent-encoding',
      send: () => fetch(server.url.replace(/\/graphql$/, '/v1/models/%E0%A4%A'), { headers: bearer() }).then(answer),
      code: 'invalid_request_error',
    },
    {
      name: 'a JSON body over MURMUR_MAX_REQUEST_BYTES',
      send: json({ query: '{ __typename }', variables: { pad: 'x'.repeat(2 << 20) } }),
      code: 'INPUT_TOO_LARGE',
    },
    {
      name: 'a form-encoded POST',
      send: raw('query=%7B__typename%7D', { 'content-type': 'application/x-www-form-urlencoded' }),
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    { name: 'a query that does not parse', send: query('{ jobs { '), code: 'GRAPHQL_PARSE_FAILED' },
    { name: 'an unknown field', send: query('{ secrets }'), code: 'GRAPHQL_VALIDATION_FAILED' },
    {
      name: 'a variable of the wrong type',
      send: query('query ($n: Int) { jobs(first: $n) { nodes { id } } }', { n: 'ten' }),
      code: 'BAD_USER_INPUT',
    },
    { name: 'a page of 1000 jobs', send: query('{ jobs(first: 1000) { nodes { id } } }'), code: 'BAD_USER_INPUT' },
    { name: 'a forged cursor', send: query('{ jobs(after: "garbage") { nodes { id } } }'), code: 'BAD_USER_INPUT' },
    { name: 'createJob with no audio', send: query('mutation { createJob(input: { language: "en" }) { id } }'), code: 'BAD_USER_INPUT' },
    {
      name: 'createJob with an upload key and a URL',
      send: query('mutation { createJob(input: { uploadKey: "incoming/x/a.wav", url: "https://example.com/a.mp3" }) { id } }'),
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'an idempotency key of 201 characters',
      send: query(`mutation { createJob(input: { url: "https://example.com/a.mp3", idempotencyKey: "${'k'.repeat(201)}" }) { id } }`),
      code: 'BAD_USER_INPUT',
    },
    { name: 'an unknown language', send: upload(good, 'a.wav', { language: 'klingon' }), code: 'UNKNOWN_LANGUAGE' },
    {
      name: 'an upload key nobody handed out',
      send: query('mutation { createJob(input: { uploadKey: "incoming/00000000-0000-0000-0000-000000000000/a.wav" }) { id } }'),
      code: 'UPLOAD_NOT_FOUND',
    },
    // Abusive multipart
    {
      name: 'a multipart request without the preflight header',
      send: upload(good, 'a.wav', {}, { ...bearer(), 'graphql-preflight': '' }),
      code: 'PREFLIGHT_REQUIRED',
    },
    {
      name: 'a multipart request without a boundary',
      send: raw('whatever', { 'content-type': 'multipart/form-data', 'graphql-preflight': '1' }),
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'operations that are not JSON',
      send: raw(
        multipart([
          { name: 'operations', value: '{nope' },
          { name: 'map', value: MAP },
          { name: '0', value: good, filename: 'a.wav' },
        ]),
        MULTIPART,
      ),
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a map that is not a list of paths',
      send: raw(
        multipart([
          { name: 'operations', value: OPS },
          { name: 'map', value: '{"0":"variables.file"}' },
          { name: '0', value: good, filename: 'a.wav' },
        ]),
        MULTIPART,
      ),
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a map through __proto__',
      send: raw(
        multipart([
          { name: 'operations', value: OPS },
          { name: 'map', value: '{"0":["__proto__.polluted"]}' },
          { name: '0', value: good, filename: 'a.wav' },
        ]),
        MULTIPART,
      ),
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a map naming a file that never comes',
      send: raw(
        multipart([
          { name: 'operations', value: OPS },
          { name: 'map', value: MAP },
        ]),
        MULTIPART,
      ),
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'files before the map',
      send: raw(
        multipart([
          { name: '0', value: good, filename: 'a.wav' },
          { name: 'operations', value: OPS },
          { name: 'map', value: MAP },
        ]),
        MULTIPART,
      ),
      code: 'BAD_USER_INPUT',
    },
    {
      name: '17 files in one request',
      send: raw(
        multipart([
          { name: 'operations', value: OPS },
          { name: 'map', value: JSON.stringify(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [String(i), ['variables.file']]))) },
          ...Array.from({ length: 17 }, (_, i) => ({ name: String(i), value: good, filename: `${i}.wav` })),
        ]),
        MULTIPART,
      ),
      code: 'INPUT_TOO_LARGE',
    },
    {
      name: 'a field over 1 MB',
      send: raw(
        multipart([
          { name: 'operations', value: JSON.stringify({ query: OPS, pad: 'x'.repeat(1.5 * (1 << 20)) }) },
          { name: 'map', value: MAP },
          { name: '0', value: good, filename: 'a.wav' },
        ]),
        MULTIPART,
      ),
      code: 'INPUT_TOO_LARGE',
    },
    {
      name: '30 extra fields',
      send: raw(
        multipart([
          { name: 'operations', value: OPS },
          { name: 'map', value: MAP },
          ...Array.from({ length: 30 }, (_, i) => ({ name: `f${i}`, value: 'x' })),
        ]),
        MULTIPART,
      ),
      code: 'INPUT_TOO_LARGE',
    },
    // Slow clients
    { name: 'an upload that stops sending', send: stalled(), code: 'UPLOAD_STALLED' },
    // Hostile URLs
    ...[
      ['a file: URL', 'file:///etc/passwd'],
      ['loopback', 'http://127.0.0.1:4000/graphql'],
      ['localhost', 'http://localhost/'],
      ['loopback as one decimal number', 'http://2130706433/'],
      ['IPv4-mapped IPv6 loopback', 'http://[::ffff:127.0.0.1]/'],
      ['IPv6 loopback', 'http://[::1]/'],
      ['cloud metadata', 'http://169.254.169.254/latest/meta-data/'],
      ['a private address', 'http://10.0.0.1/a.mp3'],
      ['credentials in the URL', 'https://user:secret@example.com/a.mp3'],
      ['gopher', 'gopher://example.com/'],
      ['ftp', 'ftp://example.com/a.mp3'],
      ['multicast', 'http://224.0.0.1/'],
    ].map(([name, u]) => ({ name: `a URL: ${name}`, send: url(u), code: 'URL_FORBIDDEN' })),
    // Hostile webhook addresses
    {
      name: 'a callbackUrl on loopback',
      send: upload(good, 'a.wav', { callbackUrl: 'http://127.0.0.1:4000/graphql' }),
      code: 'URL_FORBIDDEN',
    },
    {
      name: 'a callbackUrl at the cloud metadata address',
      send: upload(good, 'a.wav', { callbackUrl: 'http://169.254.169.254/latest' }),
      code: 'URL_FORBIDDEN',
    },
    { name: 'a callbackUrl that is not http', send: upload(good, 'a.wav', { callbackUrl: 'file:///etc/passwd' }), code: 'URL_FORBIDDEN' },
    // Keys
    { name: 'an upload with no key', send: upload(good, 'a.wav', {}, {}), code: 'UNAUTHENTICATED' },
    {
      name: 'an upload with a made-up key',
      send: upload(good, 'a.wav', {}, { authorization: 'Bearer mk_' + 'A'.repeat(43) }),
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'an upload with the worker token',
      send: upload(good, 'a.wav', {}, { authorization: `Bearer ${WORKER_TOKEN}` }),
      code: 'FORBIDDEN',
    },
  ];
}

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.process.pid}/status`, 'utf8'))![1]);
const blobs = () => {
  const dir = join(server.dataDir, 'blobs');
  return existsSync(dir)
    ? readdirSync(dir, { recursive: true })
        .map(String)
        .filter((f) => !['uploads', 'incoming'].includes(f))
    : [];
};

describe('the bad-input corpus', () => {
  it('refuses every case with its code, stores nothing, and stays up', async () => {
    const cases = corpus();
    expect(cases.length).toBeGreaterThanOrEqual(50);
    const before = rssKb();
    const results: { name: string; got: Answer; want: string }[] = [];
    for (const c of cases) results.push({ name: c.name, got: await c.send(), want: c.code });
    const wrong = results.filter((r) => r.got.code !== r.want);
    expect(wrong.map((r) => `${r.name}: ${r.got.code} (${r.got.status}), wanted ${r.want}`)).toEqual([]);
    expect(results.every((r) => r.got.status < 500)).toBe(true);

    expect((await fetch(server.url.replace('/graphql', '/healthz'))).status).toBe(200);
    const jobs = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer() },
      body: JSON.stringify({ query: '{ jobs { nodes { id } } }' }),
    });
    expect(((await jobs.json()) as any).data.jobs.nodes).toEqual([]);
    await new Promise((r) => setTimeout(r, 500));
    expect(blobs()).toEqual([]);
    const after = rssKb();
    console.log(
      `bad-input corpus: ${cases.length} cases refused; API RSS ${(before / 1024).toFixed(0)} MiB before, ${(after / 1024).toFixed(0)} MiB after`,
    );
    expect(after).toBeLessThan(before + 150 * 1024);
  });
});
