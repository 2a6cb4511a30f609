/**
 * The first-message handshake many streaming APIs open with: the client sends a start (or configuration) message and
 * waits for the server's go-ahead (`RecognitionStarted`, `ConversationStarted`, `session.updated`) or its refusal.
 * Frames that follow the go-ahead, even in the same read, are held until the owner takes the socket over.
 */
import type { RawData } from 'ws';
import { ProviderError } from '../errors/provider-error.js';
import { frameToText } from './frames.js';
import { holdFrames } from './hold.js';
import type { HeldSocket } from './hold.js';
import { abortedError, connectionClassifiers } from './open.js';
import type { ConnectionNames } from './errors.js';
import type { WebSocketClassifiers } from './open.js';

/** What a frame received during the handshake is. */
export type HandshakeStep =
  /** The go-ahead: the handshake is done. */
  | 'ready'
  /** Not part of the handshake, but the owner wants it: held with what follows the go-ahead. */
  | 'hold'
  /** Not part of the handshake: dropped. */
  | 'ignore'
  /** The server refused (its error message): the attempt fails with it, also when the server closes right after. */
  | ProviderError;

export interface HandshakeOptions extends ConnectionNames {
  /** Sent at once; omit it when the server speaks first (then `classify` replies with `send`). */
  readonly start?: string;
  /** From the start message to the go-ahead: a retryable `timeout` error after it. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** Names the step in messages: "start recognition" gives "X did not start recognition within N ms". */
  readonly what: string;
  /** Reads one frame; `send` answers the server (a multi-step handshake). */
  readonly classify: (text: string, isBinary: boolean, send: (message: string) => void) => HandshakeStep;
  /** A close during the handshake, when no refusal came first (default: the core close classifier). */
  readonly classifyClose?: WebSocketClassifiers['close'];
}

/**
 * Sends the start message and resolves once the go-ahead arrives, with the socket held again for its owner (frames
 * after the go-ahead, and those classified `hold`, in order); rejects (and terminates the socket) on a refusal, a
 * close, the timeout or the signal.
 */
export function firstMessageHandshake(held: HeldSocket, options: HandshakeOptions): Promise<HeldSocket> {
  const classifyClose = connectionClassifiers(options, { ...(options.classifyClose === undefined ? {} : { close: options.classifyClose }) }).close;
  const socket = held.socket;
  return new Promise<HeldSocket>((resolve, reject) => {
    let settled = false;
    let refusal: ProviderError | undefined;
    /** Frames the owner wants that came before the go-ahead. */
    const kept: [RawData, boolean][] = [];
    const early = held.release();
    const finish = (error: ProviderError | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      socket.off('message', onMessage);
      socket.off('close', onClose);
      if (error === undefined) {
        // What is left of the early frames came after the go-ahead.
        resolve(holdFrames(socket, { frames: [...kept, ...early.frames.splice(0)], closed: early.closed }));
        return;
      }
      socket.terminate();
      reject(error);
    };
    const onAbort = (): void => finish(abortedError(options, 'session'));
    const timer = setTimeout(
      () => finish(new ProviderError(options.provider, 'timeout', `${options.label} did not ${options.what} within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const send = (message: string): void => socket.send(message);
    const onMessage = (data: RawData, isBinary: boolean): void => {
      const step = options.classify(frameToText(data), isBinary, send);
      if (step === 'ready') finish(undefined);
      else if (step === 'hold') kept.push([data, isBinary]);
      else if (step instanceof ProviderError) {
        // The server closes right after its refusal: report the refusal, not the close.
        refusal = step;
        finish(step);
      }
    };
    const onClose = (code: number, reason: Buffer): void => finish(refusal ?? classifyClose({ code, reason: reason.toString('utf8') }));
    if (options.signal.aborted) {
      onAbort();
      return;
    }
    options.signal.addEventListener('abort', onAbort, { once: true });
    socket.on('message', onMessage);
    socket.on('close', onClose);
    if (options.start !== undefined) socket.send(options.start);
    // Frames that came before the handshake began, then the close if it came then too.
    while (!settled && early.frames.length > 0) {
      const [data, isBinary] = early.frames.shift() as [RawData, boolean];
      onMessage(data, isBinary);
    }
    if (!settled && early.closed !== undefined) onClose(...early.closed);
  });
}
