// The queue's change events. Listeners are the API's subscribers, waiting
// requests, long-poll claims and the webhook sender; the emitter is whatever
// claim, completion or lease sweep just committed. Node's EventEmitter calls
// listeners in turn and lets a throw out of emit(): one listener that threw
// (a subscriber's full buffer once did) failed the committed write that
// emitted and every listener after it. Here each listener runs on its own.
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../log.ts';
import type { QueueEvents } from './jobQueue.ts';

export class QueueEventEmitter extends EventEmitter<QueueEvents> {
  constructor(private readonly log: Logger = silentLogger) {
    super();
    // Every subscriber and waiting request is a listener: hundreds are normal.
    this.setMaxListeners(0);
  }

  override emit<K extends keyof QueueEvents>(event: K, ...args: QueueEvents[K]): boolean {
    const listeners = this.rawListeners(event) as ((...a: unknown[]) => void)[];
    for (const listener of listeners) {
      try {
        listener.apply(this, args);
      } catch (err) {
        this.log.error(
          { event: 'queue.listener_failed', on: event, err },
          `a listener of the queue's "${String(event)}" events threw: ${(err as Error)?.message ?? err}`,
        );
      }
    }
    return listeners.length > 0;
  }
}
