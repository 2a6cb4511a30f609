/**
 * A socket between two owners: what it receives (and its close) is kept, in order, until the next owner takes it over.
 * `openWebSocket` and `firstMessageHandshake` hand sockets over this way, so no frame is lost in between.
 */
import type { RawData, WebSocket } from 'ws';

/** What the owner of a socket listens to. */
export interface SocketHandlers {
  readonly message: (data: RawData, isBinary: boolean) => void;
  readonly close: (code: number, reason: Buffer) => void;
}

/** What a held socket kept, handed over by `release()`. */
export interface HeldFrames {
  readonly frames: [RawData, boolean][];
  readonly closed: [number, Buffer] | undefined;
}

/** A socket whose frames (and close) are kept until its owner takes it over. */
export interface HeldSocket {
  readonly socket: WebSocket;
  /**
   * Hands the socket over: `handlers.message` first gets the frames held so far, in order, then every later one;
   * `handlers.close` runs once when the socket closes, also when that happened while it was held.
   */
  takeOver(handlers: SocketHandlers): void;
  /** Stops holding and returns what was kept; the caller listens to the socket itself from now on. */
  release(): HeldFrames;
}

/** Starts holding what `socket` receives, after `earlier` frames (and close) the caller already took off it. */
export function holdFrames(socket: WebSocket, earlier: Partial<HeldFrames> = {}): HeldSocket {
  const backlog: [RawData, boolean][] = [...(earlier.frames ?? [])];
  let closed = earlier.closed;
  let taken = false;
  const keep = (data: RawData, isBinary: boolean): void => void backlog.push([data, isBinary]);
  const noteClose = (code: number, reason: Buffer): void => {
    closed = [code, reason];
  };
  socket.on('message', keep);
  socket.on('close', noteClose);
  const release = (): HeldFrames => {
    if (taken) throw new Error('the socket was handed over already');
    taken = true;
    socket.off('message', keep);
    socket.off('close', noteClose);
    return { frames: backlog.splice(0), closed };
  };
  return {
    socket,
    release,
    takeOver(handlers) {
      const held = release();
      socket.on('message', handlers.message);
      socket.on('close', handlers.close);
      for (const [data, isBinary] of held.frames) handlers.message(data, isBinary);
      if (held.closed !== undefined) handlers.close(...held.closed);
    },
  };
}
