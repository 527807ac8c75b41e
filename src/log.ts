// murmur's log: pino, one JSON object a line, each with `event` (what
// happened, a stable name such as `job.failed` or `worker.died`) and the ids
// it concerns (`requestId`, `jobId`, `workerId`, `workerPid`). On a terminal
// the same lines are printed readably (pino-pretty). Programs make one logger
// at their edge and pass it down; modules add their ids with `child()`.
import { AsyncLocalStorage } from 'node:async_hooks';
import { isatty } from 'node:tty';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export interface LogSettings {
  level: (typeof LOG_LEVELS)[number];
  /** auto: readable on a terminal, JSON lines otherwise. */
  format: 'auto' | 'json' | 'pretty';
}

export type { Logger };

/** The HTTP request being handled, so every line written on its behalf carries its id. */
const request = new AsyncLocalStorage<string>();

export function inRequest<T>(requestId: string, run: () => T): T {
  return request.run(requestId, run);
}

export function currentRequestId(): string | undefined {
  return request.getStore();
}

/**
 * A logger writing to `fd` (stdout; the CLI's own commands use stderr, keeping stdout for their
 * output). Writes are synchronous: a line about a crash is out before the process ends.
 */
export function createLogger(settings: LogSettings, fd: 1 | 2 = 1): Logger {
  const readable = settings.format === 'pretty' || (settings.format === 'auto' && isatty(fd));
  const options = {
    level: settings.level,
    base: { pid: process.pid },
    mixin: () => {
      const requestId = request.getStore();
      return requestId ? { requestId } : {};
    },
  };
  if (readable)
    return pino(
      options,
      pretty({ destination: fd, sync: true, singleLine: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }),
    );
  return pino(options, pino.destination({ dest: fd, sync: true }));
}

/** Writes nothing (tests, and library callers that pass no logger). */
export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * One line a child process printed (a worker's JSON log line), written again through `log` with
 * `bindings` added (say, the child's pid), at the child's level; a line that is not a log entry
 * (a native library's warning on stderr) is kept as `event: "child.output"`.
 */
export function relayLine(log: Logger, line: string, bindings: Record<string, unknown>): void {
  let entry: unknown;
  try {
    entry = line.startsWith('{') ? JSON.parse(line) : undefined;
  } catch {
    entry = undefined;
  }
  if (entry && typeof entry === 'object' && typeof (entry as { level?: unknown }).level === 'number') {
    const { level, time: _time, pid: _pid, hostname: _hostname, msg, ...fields } = entry as Record<string, unknown>;
    const label = log.levels.labels[level as number] ?? 'info';
    (log as unknown as Record<string, (obj: object, msg?: string) => void>)[label]({ ...fields, ...bindings }, msg as string | undefined);
    return;
  }
  if (line.trim()) log.warn({ event: 'child.output', ...bindings }, line);
}
