// A logger that keeps what it is given, for tests that learn what happened from structured events.
import { pino, type Logger } from 'pino';

export interface LogEntry {
  level: number;
  event?: string;
  msg?: string;
  [field: string]: unknown;
}

export function recordingLogger(): { log: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void entries.push(JSON.parse(line)) });
  return { log, entries };
}
