// Fetches a Whisper model folder in the onnx-community layout from the Hugging
// Face hub (or any server with the same `/<repo>/resolve/<revision>/<path>`
// layout), for machines with internet access. Files stream to disk; the folder
// appears only once every file is in and the runtime can read it.
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DTYPE_SUFFIXES, parseDtype, readModelFolder } from '../whisper/modelFolder.ts';
import { WhisperError } from '../whisper/errors.ts';
import { silentLogger, type Logger } from '../log.ts';

export const DEFAULT_HUB = 'https://huggingface.co';

export interface DownloadOptions {
  hub?: string;
  revision?: string;
  dtypes?: string[];
  /** Sent as a bearer token (gated or private repositories). */
  token?: string;
  /** Each file as it arrives. */
  log?: Logger;
}

/** `whisper-tiny` → `onnx-community/whisper-tiny`; `owner/name` stays as it is. */
export const repoOf = (name: string) => (name.includes('/') ? name : `onnx-community/${name}`);

export async function downloadModel(name: string, out: string, options: DownloadOptions = {}): Promise<string[]> {
  const repo = repoOf(name);
  const hub = (options.hub ?? DEFAULT_HUB).replace(/\/+$/, '');
  const revision = options.revision ?? 'main';
  const log = options.log ?? silentLogger;
  const dtypes = (options.dtypes ?? ['fp32']).map(parseDtype);
  const required = ['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json'];
  const onnx = dtypes.flatMap((d) => ['encoder_model', 'decoder_model_merged'].map((m) => `onnx/${m}${DTYPE_SUFFIXES[d]}.onnx`));
  const partial = `${out}.partial`;
  await rm(partial, { recursive: true, force: true });
  const fetched: string[] = [];
  try {
    for (const path of [...required, ...onnx]) {
      await fetchFile(`${hub}/${repo}/resolve/${revision}/${path}`, join(partial, path), options.token, true);
      fetched.push(path);
      log.info({ event: 'model.file', repo, path }, `${repo}: ${path}`);
      // Models over 2 GB keep their weights beside the graph (ONNX external data).
      if (
        path.endsWith('.onnx') &&
        (await fetchFile(`${hub}/${repo}/resolve/${revision}/${path}_data`, join(partial, `${path}_data`), options.token, false))
      ) {
        fetched.push(`${path}_data`);
        log.info({ event: 'model.file', repo, path: `${path}_data` }, `${repo}: ${path}_data`);
      }
    }
    for (const optional of ['tokenizer_config.json', 'special_tokens_map.json']) {
      if (await fetchFile(`${hub}/${repo}/resolve/${revision}/${optional}`, join(partial, optional), options.token, false))
        fetched.push(optional);
    }
    for (const d of dtypes) readModelFolder(partial, d); // refuse a folder the runtime could not load
    await rm(out, { recursive: true, force: true });
    await mkdir(dirname(out), { recursive: true });
    await rename(partial, out);
    return fetched;
  } catch (err) {
    await rm(partial, { recursive: true, force: true });
    throw err;
  }
}

/** Streams one file to disk; false when it is absent and not required. */
async function fetchFile(url: string, to: string, token: string | undefined, required: boolean): Promise<boolean> {
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (err) {
    throw new WhisperError('MODEL_NOT_FOUND', `cannot reach ${url}: ${(err as Error).cause ?? (err as Error).message}`);
  }
  if (res.status === 404 && !required) return false;
  if (!res.ok || !res.body) throw new WhisperError('MODEL_NOT_FOUND', `GET ${url}: ${res.status} ${res.statusText}`);
  await mkdir(dirname(to), { recursive: true });
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(to));
  return true;
}

export const isModelFolder = (dir: string) => existsSync(join(dir, 'config.json'));
