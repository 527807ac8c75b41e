// `murmur schema`: prints the GraphQL SDL (committed as schema/schema.graphql).
import { Command } from 'commander';

export function schemaCommand(): Command {
  return new Command('schema').description('print the GraphQL schema (SDL)').action(async () => {
    const { printedSchema } = await import('../api/schema/index.ts');
    process.stdout.write(printedSchema());
  });
}
