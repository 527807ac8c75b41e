// Uploads that bypass the API: createUpload hands out a presigned PUT into the
// blob store under a fresh key, and createJob({ uploadKey }) takes the object
// from there. The key carries the filename, so nothing is stored until the job.
import { randomUUID } from 'node:crypto';
import { ApiError } from './errors.ts';

export const UPLOAD_PREFIX = 'incoming/';
const KEY = /^incoming\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\/([A-Za-z0-9._-]{1,100})$/;

export function newUploadKey(filename: string): string {
  const safe =
    filename
      .normalize('NFKD')
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+/, '')
      .slice(-100) || 'audio';
  return `${UPLOAD_PREFIX}${randomUUID()}/${safe}`;
}

/** The filename inside a key createUpload made; anything else is refused. */
export function uploadFilename(key: string): string {
  const m = KEY.exec(key);
  if (!m) throw new ApiError('UPLOAD_NOT_FOUND', `"${key}" is not an upload key createUpload handed out`);
  return m[1];
}
