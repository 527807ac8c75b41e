// drizzle-kit's settings for PostgreSQL: `npm run db:generate` writes a migration into drizzle/postgres after a change to schema.ts.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/queue/postgres/schema.ts',
  out: './drizzle/postgres',
});
