/**
 * `EventLog`: consumes an adapter's event stream (ASR, STS, anything with a `type`) in the background, keeps every
 * event, and lets a test wait for a condition over them. Shared by the adapter test suites.
 *
 *   const log = new EventLog(session.events);
 *   const done = await log.until(() => log.all.find((e) => e.type === 'response_done'), 'a reply');
 */
export class EventLog<E extends { readonly type: string }> {
  readonly all: E[] = [];
  ended = false;
  /** What the iterator threw, if it did. */
  failure: unknown;
  readonly done: Promise<void>;
  private readonly waiters = new Set<() => void>();

  constructor(events: AsyncIterable<E>) {
    this.done = (async () => {
      try {
        for await (const event of events) {
          this.all.push(event);
          this.notify();
        }
      } catch (error) {
        this.failure = error;
      } finally {
        this.ended = true;
        this.notify();
      }
    })();
  }

  /** Events of one type, in order. */
  of<T extends E['type']>(type: T): Extract<E, { type: T }>[] {
    return this.all.filter((event): event is Extract<E, { type: T }> => event.type === type);
  }

  /**
   * Resolves once `probe` returns something truthy (re-checked on every event); rejects when the stream ends first
   * or after `timeoutMs` (default 10000), naming `what` and the event types seen.
   */
  until<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 10_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const seen = (): string => JSON.stringify(this.all.map((event) => event.type));
      const check = (): boolean => {
        const value = probe();
        if (value !== undefined && value !== null && value !== false) {
          resolve(value);
          return true;
        }
        if (this.ended) {
          reject(new Error(`events ended before ${what}; events: ${seen()}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const waiter = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events: ${seen()}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
