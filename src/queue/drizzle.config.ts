// drizzle-kit's settings: `npm run db:generate` writes a migration into drizzle/ after a change to schema.ts.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'sqlite',
  schema: './src/queue/schema.ts',
  out: './drizzle',
});
