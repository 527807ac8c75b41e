// `murmur <command>`: parses the arguments and reports a failure with its code.
import { buildProgram } from './program.ts';

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  const e = err as Error & { code?: string };
  console.error(`murmur: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exitCode = 1;
}
