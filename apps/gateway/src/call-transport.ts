import type { RawData, WebSocket } from 'ws';
import { encodeAvrAudio, encodeAvrOutbound, type AvrOutbound, type AvrPeer, type CallCloseCode, type PeerBacklog } from '@stsgate/core';

/** What a transport delivers to its call (implemented by CallSession). */
export interface CallInbound {
  /** One AVR WebSocket message: JSON text as a string, or the bytes of a binary frame (refused). */
  handleAvrMessage(data: string | Uint8Array): void;
  handleInit(uuid: string): void;
  /** Caller audio, PCM 8 kHz. */
  handleAudio(samples: Int16Array): void;
  handleDtmf(digit: string): void;
  /** AVR Core hung up (closed the socket, ended the request or went away). */
  transportClosed(code?: number): void;
  transportError(error: Error): void;
}

/** How a call reaches AVR Core: the call logic never sees the wire. */
export interface CallTransport {
  /** Start delivering to `call`. Called once, synchronously by the CallSession constructor. */
  attach(call: CallInbound): void;
  /** One 20 ms frame of agent audio (PCM 8 kHz). */
  sendAudio(samples: Int16Array): void;
  /** interruption / transcript / error: never behind queued audio. */
  sendControl(message: AvrOutbound): void;
  /** Bytes written but not yet taken by the peer (pacing stops above a limit). */
  readonly backlogBytes: number;
  readonly open: boolean;
  /**
   * Stop delivering inbound messages and end the call towards AVR Core if it is still open. `dropConnection`: the peer
   * misbehaved; stop reading from it and drop the connection right after the close (no waiting for its goodbye).
   */
  close(code: number, reason?: string, dropConnection?: boolean): void;
  /** The call is fully closed: remove the remaining listeners. */
  dispose(): void;
}

/** WebSocket close codes used towards AVR Core (other transports map them to their own terms). */
export const CLOSE = { normal: 1000, goingAway: 1001, protocolError: 1002, policyViolation: 1008, providerFailure: 1011 } as const;

const CLOSE_CODES = {
  normal: CLOSE.normal,
  going_away: CLOSE.goingAway,
  protocol_error: CLOSE.protocolError,
  policy_violation: CLOSE.policyViolation,
  provider_failure: CLOSE.providerFailure,
} as const satisfies Record<CallCloseCode, number>;

/** Stop writing audio (and error replies) while this much is unsent on the transport: the peer is not reading. */
const MAX_TRANSPORT_BACKLOG_BYTES = 64 * 1024;
/** Past this much unsent the peer is not reading at all: the call ends (so does 15 s of audio held back). */
const MAX_CONTROL_BACKLOG_BYTES = 1024 * 1024;

/** A transport as the core call runtime's peer: its backlog in bytes becomes a level, close reasons WebSocket codes. */
export class TransportPeer implements AvrPeer {
  constructor(private readonly transport: CallTransport) {}

  get open(): boolean {
    return this.transport.open;
  }

  get backlog(): PeerBacklog {
    const bytes = this.transport.backlogBytes;
    if (bytes > MAX_CONTROL_BACKLOG_BYTES) return 'overflowing';
    return bytes > MAX_TRANSPORT_BACKLOG_BYTES ? 'congested' : 'clear';
  }

  sendAudio(frame: Int16Array): void {
    this.transport.sendAudio(frame);
  }

  sendControl(message: AvrOutbound): void {
    this.transport.sendControl(message);
  }

  close(code: CallCloseCode, reason: string | undefined, dropConnection: boolean): void {
    this.transport.close(CLOSE_CODES[code], reason, dropConnection);
  }

  dispose(): void {
    this.transport.dispose();
  }
}

const DROP_CONNECTION_AFTER_MS = 250;

/** The TCP connection under a WebSocket: writes made while it is corked leave in one system call. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/**
 * AVR's STS protocol over WebSocket: one JSON text message per audio frame or control message. Given the TCP
 * connection, everything sent in one event-loop turn (the frames a pacer tick tops up, a control message with them)
 * is written together: a system call per turn instead of one per message, in the same order.
 */
export class WebSocketTransport implements CallTransport {
  private call: CallInbound | undefined;
  private corked = false;

  constructor(
    private readonly socket: WebSocket,
    private readonly connection?: Corkable,
  ) {}

  attach(call: CallInbound): void {
    this.call = call;
    this.socket.on('message', this.onMessage);
    this.socket.on('close', this.onClose);
    this.socket.on('error', this.onError);
  }

  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  get backlogBytes(): number {
    return this.socket.bufferedAmount;
  }

  sendAudio(samples: Int16Array): void {
    this.send(encodeAvrAudio(samples));
  }

  sendControl(message: AvrOutbound): void {
    this.send(encodeAvrOutbound(message));
  }

  private send(text: string): void {
    if (this.connection !== undefined && !this.corked) {
      this.corked = true;
      this.connection.cork();
      process.nextTick(this.uncork);
    }
    this.socket.send(text);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.connection?.uncork();
  };

  close(code: number, reason?: string, dropConnection = false): void {
    this.socket.off('message', this.onMessage);
    if (this.socket.readyState === this.socket.OPEN || this.socket.readyState === this.socket.CONNECTING) this.socket.close(code, reason);
    if (!dropConnection) return;
    // Reading on would keep parsing a flood for ws's 30 s closing handshake: the close frame gets a moment to leave, then the socket goes.
    this.socket.pause();
    const socket = this.socket;
    const timer = setTimeout(() => socket.terminate(), DROP_CONNECTION_AFTER_MS);
    socket.once('close', () => clearTimeout(timer));
  }

  dispose(): void {
    this.socket.off('close', this.onClose);
    this.socket.off('error', this.onError);
  }

  private readonly onMessage = (data: RawData, isBinary: boolean): void => {
    const bytes = rawToBuffer(data);
    this.call?.handleAvrMessage(isBinary ? bytes : bytes.toString('utf8'));
  };

  private readonly onClose = (code: number): void => this.call?.transportClosed(code);

  private readonly onError = (error: Error): void => this.call?.transportError(error);
}

function rawToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
