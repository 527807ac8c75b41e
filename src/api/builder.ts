// The Pothos schema builder: the context type and the scalars. Each part of
// the schema is a file under schema/ that adds its types to this builder.
import SchemaBuilder from '@pothos/core';
import type { Context } from './context.ts';

export const builder = new SchemaBuilder<{
  Context: Context;
  Scalars: {
    File: { Input: File; Output: never };
    DateTime: { Input: never; Output: number };
  };
  DefaultFieldNullability: false;
}>({ defaultFieldNullability: false });

builder.scalarType('File', {
  description: 'An uploaded file (GraphQL multipart request)',
  serialize: () => {
    throw new Error('File is an input type');
  },
});

builder.scalarType('DateTime', {
  description: 'An ISO 8601 date and time in UTC',
  serialize: (ms) => new Date(ms).toISOString(),
});
