import { Session } from 'node:inspector/promises';
import type { Logger } from 'pino';

/**
 * A full, memory-reducing garbage collection of this process (the one V8 runs on a low-memory notification: heap pages
 * and freed buffers go back to the system). Through an in-process inspector session: no port is opened, and Node needs
 * no `--expose-gc`.
 */
export async function collectAllGarbage(): Promise<void> {
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.collectGarbage');
  } finally {
    session.disconnect();
  }
}

export interface IdleMemoryReleaseOptions {
  /** How long the gateway must have had no call before the collection runs. */
  readonly quietMs: number;
  readonly logger: Logger;
  /** Default: {@link collectAllGarbage}. */
  readonly collect?: () => Promise<void>;
}

/**
 * Gives the memory of ended calls back to the system once the gateway is idle. V8 collects garbage when it allocates,
 * so a process that served hundreds of calls and then has none keeps their garbage (heap and buffers, tens of MB)
 * resident: nothing allocates any more to trigger a collection. After `quietMs` without a call, one full collection
 * runs (tens of ms on one core, when no call can suffer from it); not again until calls have come and gone.
 */
export class IdleMemoryRelease {
  private timer: NodeJS.Timeout | undefined;
  private collecting: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: IdleMemoryReleaseOptions) {}

  /** The number of calls in progress changed. */
  callsChanged(activeCalls: number): void {
    if (this.closed) return;
    if (activeCalls > 0) {
      this.cancel();
      return;
    }
    this.cancel();
    this.timer = setTimeout(() => this.release(), this.options.quietMs);
    // An idle gateway waiting to collect must not keep a process that is otherwise done alive.
    this.timer.unref();
  }

  /** Stop: no collection starts after this; one already running is awaited. */
  async close(): Promise<void> {
    this.closed = true;
    this.cancel();
    await this.collecting;
  }

  private cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private release(): void {
    this.timer = undefined;
    const before = process.memoryUsage.rss();
    const started = performance.now();
    this.collecting = (this.options.collect ?? collectAllGarbage)()
      .then(() => {
        this.options.logger.debug(
          { rssBeforeMB: megabytes(before), rssAfterMB: megabytes(process.memoryUsage.rss()), durationMs: Math.round(performance.now() - started) },
          'no calls: memory of ended calls released',
        );
      })
      .catch((error: unknown) => this.options.logger.warn({ err: error }, 'idle memory release failed'))
      .finally(() => (this.collecting = undefined));
  }
}

const megabytes = (bytes: number) => Math.round(bytes / 1048576);
