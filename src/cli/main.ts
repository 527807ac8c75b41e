// `murmur <command>`: parses the arguments and reports a failure with its code.
// The client commands talk to a server over HTTP: they start without loading
// the runtime, the queue or the server (3 s less before `murmur jobs list` answers).
const CLIENT_COMMANDS = new Set(['submit', 'jobs']);

try {
  const program = CLIENT_COMMANDS.has(process.argv[2])
    ? (await import('./client.ts')).clientProgram()
    : (await import('./program.ts')).buildProgram();
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as Error & { code?: string };
  console.error(`murmur: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exitCode = 1;
}
