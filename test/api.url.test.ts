// Audio by URL through the real API, against a real HTTP server on loopback:
// the SSRF guard refuses every loopback form (and the server sees no request),
// and with private addresses allowed the fetch follows redirects, stops at the
// size limit and at the timeout, and names an unreachable URL.
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicAddress } from '../src/api/urlFetch.ts';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { startServer, wavBytes, type Server } from './helpers/service.ts';

let guarded: Server;
let open: Server;
let origin: HttpServer;
let port: number;
const requests: string[] = [];
const wav = Buffer.from(wavBytes(tone(300, 2)));

beforeAll(async () => {
  origin = createServer((req, res) => {
    requests.push(req.url!);
    if (req.url === '/talk.wav') return void res.writeHead(200, { 'content-type': 'audio/wav', 'content-length': wav.length }).end(wav);
    if (req.url === '/hop') return void res.writeHead(302, { location: '/hop2' }).end();
    if (req.url === '/hop2') return void res.writeHead(301, { location: `http://127.0.0.1:${port}/talk.wav` }).end();
    if (req.url === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
    if (req.url === '/big') {
      // No length declared: the limit must hold while the body streams.
      res.writeHead(200, { 'content-type': 'audio/wav' });
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      const more = () => {
        while (sent < 2_000_000) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      return more();
    }
    if (req.url === '/stall') {
      res.writeHead(200, { 'content-type': 'audio/wav' });
      return void res.write(wav.subarray(0, 1000)); // and nothing more
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as AddressInfo).port;
  const model = await generatedModel();
  [guarded, open] = await Promise.all([
    startServer({ MURMUR_MODEL_DIR: model, MURMUR_MAX_WORKERS: '0' }),
    startServer({
      MURMUR_MODEL_DIR: model,
      MURMUR_MAX_WORKERS: '0',
      MURMUR_ALLOW_PRIVATE_URLS: '1',
      MURMUR_MAX_UPLOAD_BYTES: '500000',
      MURMUR_URL_TIMEOUT_SECONDS: '1',
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([guarded?.stop(), open?.stop()]);
  origin?.closeAllConnections();
  origin?.close();
});

const CREATE = `mutation ($url: String!) { createJob(input: { url: $url }) { id status input { filename bytes format durationSeconds } } }`;
const code = async (server: Server, url: string) => (await server.gql(CREATE, { url })).errors?.[0]?.extensions?.code;

describe('audio by URL', () => {
  it('refuses every way of naming this machine, other schemes and credentials, without sending a request', async () => {
    const before = requests.length;
    for (const host of ['127.0.0.1', 'localhost', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '127.1.2.3', '0.0.0.0', '2130706433']) {
      expect(await code(guarded, `http://${host}:${port}/talk.wav`), host).toBe('URL_FORBIDDEN');
    }
    expect(await code(guarded, `file:///etc/passwd`)).toBe('URL_FORBIDDEN');
    expect(await code(guarded, `ftp://127.0.0.1:${port}/talk.wav`)).toBe('URL_FORBIDDEN');
    expect(await code(guarded, `http://user:secret@127.0.0.1:${port}/talk.wav`)).toBe('URL_FORBIDDEN');
    expect(await code(guarded, 'not a url')).toBe('BAD_USER_INPUT');
    expect(requests.length).toBe(before);
    expect((await guarded.gql(`{ queue { pending } }`)).data.queue.pending).toBe(0);
  });

  it('tells public addresses from the rest, IPv4-mapped IPv6 included', () => {
    for (const a of [
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '127.0.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fc00::1',
      'fe80::1',
      '::ffff:10.0.0.1',
      '::ffff:169.254.169.254',
      'ff02::1',
    ]) {
      expect(publicAddress(a), a).toBe(false);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(publicAddress(a), a).toBe(true);
  });

  it('with private addresses allowed, fetches the audio (through redirects) and makes a job of it', async () => {
    for (const path of ['/talk.wav', '/hop']) {
      const res = await open.gql(CREATE, { url: `http://127.0.0.1:${port}${path}` });
      expect(res.errors).toBeUndefined();
      expect(res.data.createJob).toMatchObject({ status: 'PENDING', input: { bytes: wav.length, format: 'wav', durationSeconds: 2 } });
    }
    expect((await open.gql(CREATE, { url: `http://127.0.0.1:${port}/talk.wav` })).data.createJob.input.filename).toBe('talk.wav');
  });

  it('stops at the size limit, the timeout, a redirect loop and an error answer, leaving nothing stored', async () => {
    expect(await code(open, `http://127.0.0.1:${port}/big`)).toBe('INPUT_TOO_LARGE');
    expect(await code(open, `http://127.0.0.1:${port}/stall`)).toBe('URL_UNREACHABLE');
    expect(await code(open, `http://127.0.0.1:${port}/loop`)).toBe('URL_UNREACHABLE');
    expect(await code(open, `http://127.0.0.1:${port}/missing.wav`)).toBe('URL_UNREACHABLE');
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const nobody = (closed.address() as AddressInfo).port;
    closed.close();
    expect(await code(open, `http://127.0.0.1:${nobody}/talk.wav`)).toBe('URL_UNREACHABLE');
    const { readdirSync, existsSync } = await import('node:fs');
    const dir = `${open.dataDir}/blobs/uploads`;
    const jobs = (await open.gql(`{ jobs(first: 100) { nodes { id } } }`)).data.jobs.nodes.length;
    expect(existsSync(dir) ? readdirSync(dir).length : 0).toBe(jobs);
  });
});
