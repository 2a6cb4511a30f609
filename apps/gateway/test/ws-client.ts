import type { WebSocket } from 'ws';
import { avrOutboundSchema, type AvrOutbound } from '@stsgate/core';

/** Collects what the gateway sends to one simulated AVR Core connection. */
export class AvrRecorder {
  readonly messages: AvrOutbound[] = [];
  closeCode: number | undefined;
  private readonly waiters: { predicate: () => boolean; resolve: () => void }[] = [];

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      this.messages.push(avrOutboundSchema.parse(JSON.parse(data.toString('utf8'))));
      this.check();
    });
    socket.on('close', (code: number) => {
      this.closeCode = code;
      this.check();
    });
  }

  send(message: unknown): void {
    this.socket.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  sendAudio(samples: Int16Array): void {
    this.send({ type: 'audio', audio: Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).toString('base64') });
  }

  of<T extends AvrOutbound['type']>(type: T): Extract<AvrOutbound, { type: T }>[] {
    return this.messages.filter((m): m is Extract<AvrOutbound, { type: T }> => m.type === type);
  }

  errors(): string[] {
    return this.of('error').map((m) => m.message);
  }

  /** Resolves when the predicate holds (checked on every message and on close). */
  until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`condition not met within ${timeoutMs} ms; got ${JSON.stringify(this.summary())}`)), timeoutMs);
      this.waiters.push({
        predicate,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  summary(): { types: string[]; closeCode: number | undefined } {
    return { types: this.messages.map((m) => (m.type === 'error' ? `error:${m.message}` : m.type)), closeCode: this.closeCode };
  }

  private check(): void {
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate()) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  }
}
