// createUpload: a presigned PUT straight into the blob store, for files too
// large to send through the API. The client PUTs the bytes to `url` with
// `headers`, then calls createJob({ uploadKey: key }).
import { shuttingDown, tenantOf } from '../auth.ts';
import { builder } from '../builder.ts';
import { ApiError } from '../errors.ts';
import { newUploadKey } from '../presignedUploads.ts';

interface Upload {
  key: string;
  url: string;
  headers: Record<string, string>;
  expiresAt: number;
}

const HeaderRef = builder.objectRef<{ name: string; value: string }>('Header').implement({
  fields: (t) => ({ name: t.exposeString('name'), value: t.exposeString('value') }),
});

const UploadRef = builder.objectRef<Upload>('Upload').implement({
  fields: (t) => ({
    key: t.exposeString('key', { description: 'pass it to createJob as `uploadKey` once the PUT has succeeded' }),
    url: t.exposeString('url', { description: "PUT the file's bytes here (straight to the blob store)" }),
    headers: t.field({
      type: [HeaderRef],
      description: 'send these headers with the PUT, exactly',
      resolve: (u) => Object.entries(u.headers).map(([name, value]) => ({ name, value })),
    }),
    expiresAt: t.field({
      type: 'DateTime',
      description: 'the URL works until then; an upload no job takes is deleted after MURMUR_UPLOAD_EXPIRY_SECONDS',
      resolve: (u) => u.expiresAt,
    }),
  }),
});

const CreateUploadInput = builder.inputType('CreateUploadInput', {
  fields: (t) => ({ filename: t.string({ required: true, description: "the file's name, kept with the job" }) }),
});

builder.mutationField('createUpload', (t) =>
  t.field({
    type: UploadRef,
    description: 'A presigned URL to upload a large file straight to the blob store (S3 only), for createJob({ uploadKey }).',
    args: { input: t.arg({ type: CreateUploadInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      tenantOf(ctx);
      if (ctx.lateArrival) throw shuttingDown();
      const key = newUploadKey(input.filename);
      const put = await ctx.store.presignPut(key, ctx.config.uploadExpirySeconds);
      if (!put)
        throw new ApiError(
          'UPLOADS_UNSUPPORTED',
          'this server keeps audio in a local folder and cannot presign uploads: send the file in a multipart createJob, or configure S3 (MURMUR_S3_BUCKET)',
        );
      return { key, ...put };
    },
  }),
);
