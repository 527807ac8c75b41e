// drizzle-kit's settings for SQLite: `npm run db:generate` writes a migration into drizzle/sqlite after a change to schema.ts.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'sqlite',
  schema: './src/queue/sqlite/schema.ts',
  out: './drizzle/sqlite',
});
