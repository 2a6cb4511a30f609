// One raw HTTP/1.1 POST over node:net whose body never ends: the request behind tricklePosts and hangingRequest.
import { headerLines, type HostPort } from './common.js';
import { RawTcpClient, responseStatus } from './tcp-client.js';

export interface RawPostEvents {
  /** Connected and the request head written. */
  onConnected(post: RawPost): void;
  /** The response status line arrived. */
  onStatus(post: RawPost, status: number): void;
  /** The socket closed, for whatever reason. */
  onClose(post: RawPost): void;
}

export interface PostHeadOptions {
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly contentType?: string | undefined;
  readonly contentLength?: number | undefined;
}

/** The request head: chunked unless a (never reached) Content-Length is declared. */
export function postHead(target: HostPort, path: string, options: PostHeadOptions): string {
  const framing = options.contentLength === undefined ? 'Transfer-Encoding: chunked' : `Content-Length: ${options.contentLength}`;
  return (
    `POST ${path} HTTP/1.1\r\nHost: ${target.hostHeader}\r\nContent-Type: ${options.contentType ?? 'application/json'}\r\n` +
    `${framing}\r\n${headerLines(options.headers)}\r\n`
  );
}

/** One raw HTTP/1.1 POST over node:net whose body is written by the caller, byte by byte, and never ended. */
export class RawPost extends RawTcpClient {
  connected = false;
  status: number | undefined;
  private bodyBytes = 0;
  private response = '';

  constructor(
    target: HostPort,
    private readonly head: string,
    private readonly chunked: boolean,
    private readonly events: RawPostEvents,
  ) {
    super(target);
  }

  /** Write body bytes (as one chunk with chunked framing). */
  writeBody(bytes: Buffer): void {
    if (!this.connected || this.socket.destroyed || !this.socket.writable || bytes.length === 0) return;
    this.bodyBytes += bytes.length;
    this.socket.write(this.chunked ? Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]) : bytes);
  }

  get bodySent(): number {
    return this.bodyBytes;
  }

  destroy(): void {
    this.socket.destroy();
  }

  protected onConnect(): void {
    this.connected = true;
    this.socket.write(this.head);
    this.events.onConnected(this);
  }

  protected onData(chunk: Buffer): void {
    if (this.status !== undefined) return;
    this.response += chunk.toString('latin1', 0, Math.min(chunk.length, 256));
    const lineEnd = this.response.indexOf('\r\n');
    if (lineEnd < 0 && this.response.length < 256) return;
    const status = responseStatus(this.response);
    this.status = status;
    this.events.onStatus(this, status);
  }

  protected onClose(): void {
    this.events.onClose(this);
  }
}
