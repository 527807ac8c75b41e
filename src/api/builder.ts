// The Pothos schema builder: the context type and the scalars. Each part of
// the schema is a file under schema/ that adds its types to this builder.
import SchemaBuilder from '@pothos/core';
import { GraphQLError } from 'graphql';
import type { Context } from './context.ts';
import { StoredUpload } from './uploads.ts';

export const builder = new SchemaBuilder<{
  Context: Context;
  Scalars: {
    File: { Input: StoredUpload; Output: never };
    DateTime: { Input: never; Output: number };
  };
  DefaultFieldNullability: false;
}>({ defaultFieldNullability: false });

builder.scalarType('File', {
  description: 'An uploaded file (GraphQL multipart request)',
  serialize: () => {
    throw new Error('File is an input type');
  },
  // Only uploads.ts makes these: a string or object sent as JSON is not a file.
  parseValue: (value) => {
    if (value instanceof StoredUpload) return value;
    throw new GraphQLError('a File is sent as a part of a GraphQL multipart request, not as JSON', {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  },
});

builder.scalarType('DateTime', {
  description: 'An ISO 8601 date and time in UTC',
  serialize: (ms) => new Date(ms).toISOString(),
});
