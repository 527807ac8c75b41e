// Limits on what one GraphQL document may ask (graphql-armor): tokens (checked
// while parsing, so 20,000 aliases are refused before they are even read
// whole), depth, aliases, directives and an estimated cost. Refusals carry
// QUERY_TOO_COMPLEX (as validation errors: HTTP 200 for application/json, 400
// for application/graphql-response+json, as GraphQL over HTTP says). Field suggestions stay on: the schema is public
// (introspection, schema/schema.graphql) and GraphiQL is for exploring it.
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** Generous for every operation murmur's clients, workers and GraphiQL send (cost: objects 2, scalars 1, ×1.5 a level, ×`first`; 100 jobs with their transcripts cost about 12,700). */
export const QUERY_LIMITS = { tokens: 2000, depth: 10, aliases: 30, directives: 20, cost: 20_000 } as const;

const tag = (_ctx: unknown, error: GraphQLError) => {
  Object.assign(error.extensions, { code: 'QUERY_TOO_COMPLEX' });
};
const refuse = { exposeLimits: true, propagateOnRejection: true, onReject: [tag] };

export function useQueryLimits(): Plugin {
  return EnvelopArmorPlugin({
    maxTokens: { n: QUERY_LIMITS.tokens, ...refuse },
    maxDepth: { n: QUERY_LIMITS.depth, ignoreIntrospection: true, flattenFragments: true, ...refuse },
    maxAliases: { n: QUERY_LIMITS.aliases, ...refuse },
    maxDirectives: { n: QUERY_LIMITS.directives, ...refuse },
    costLimit: { maxCost: QUERY_LIMITS.cost, ignoreIntrospection: true, ...refuse },
    blockFieldSuggestion: { enabled: false },
  }) as Plugin;
}
