// The whole schema: each file adds its part to the builder.
import { lexicographicSortSchema, printSchema } from 'graphql';
import { builder } from '../builder.ts';
import './job.ts';
import './queue.ts';
import './upload.ts';
import './worker.ts';

export const schema = builder.toSchema();

/** The SDL as committed in schema/schema.graphql. */
export const printedSchema = () => printSchema(lexicographicSortSchema(schema)) + '\n';
