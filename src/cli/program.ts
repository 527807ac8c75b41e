// The `murmur` command and its subcommands (commander), each in its own module.
import { Command } from 'commander';
import { jobsCommand, submitCommand } from './client.ts';
import { keysCommand } from './keys.ts';
import { modelCommand } from './model.ts';
import { schemaCommand } from './schema.ts';
import { serveCommand } from './serve.ts';
import { transcribeCommand } from './transcribe.ts';
import { workerCommand } from './worker.ts';

export function buildProgram(): Command {
  const program = new Command('murmur').description('murmur: a self-hostable speech-to-text job service');
  program.addCommand(transcribeCommand());
  program.addCommand(modelCommand());
  program.addCommand(serveCommand());
  program.addCommand(schemaCommand());
  program.addCommand(workerCommand());
  program.addCommand(keysCommand());
  program.addCommand(submitCommand());
  program.addCommand(jobsCommand());
  return program;
}
