// One call from the browser, as AVR Core makes it: init, then the caller's audio in 20 ms frames; agent audio,
// interruptions, transcripts and errors back. Times are AudioContext times, which start at 0 with each call.
import { SAMPLE_RATES } from '../../../../packages/core/src/contracts/common.js';
import { CAPTURE_PROCESSOR, PLAYBACK_PROCESSOR, type CapturedFrame, type PlaybackCommand, type PlaybackReport } from './messages.js';
import { pcmLevelDbfs } from './pcm.js';
import { audioMessage, initMessage, parseServerMessage, type ServerMessage } from './protocol.js';
import { TurnTimer, VoiceDetector } from './turns.js';

export interface CallSettings {
  /** The gateway's WebSocket URL with the query (`from`, `to`, `token`) already set. */
  readonly url: URL;
  readonly uuid: string;
  readonly echoCancellation: boolean;
}

/** `at`: seconds since the call started. */
export type CallEvent =
  | { readonly type: 'connected'; readonly at: number }
  | { readonly type: 'transcript'; readonly at: number; readonly role: 'user' | 'agent'; readonly text: string }
  | { readonly type: 'turn'; readonly at: number; readonly latencyMs: number }
  | {
      readonly type: 'barge_in';
      readonly at: number;
      /** From the interruption's arrival until the speaker goes silent: the page's part plus the output latency. */
      readonly silentAfterMs: number;
      readonly outputLatencyMs: number;
      /** Queued agent audio thrown away; 0 when nothing was playing. */
      readonly discardedMs: number;
      readonly wasSpeaking: boolean;
    }
  | { readonly type: 'error'; readonly at: number; readonly message: string }
  | {
      readonly type: 'levels';
      readonly callerDbfs: number;
      readonly callerSpeaking: boolean;
      readonly agentDbfs: number;
      readonly agentSpeaking: boolean;
      /** Audible agent audio played so far. */
      readonly agentAudibleMs: number;
    }
  | { readonly type: 'ended'; readonly at: number; readonly reason: string };

/** Malformed server messages shown one by one; later ones are only counted. */
const MAX_PROBLEMS_SHOWN = 3;
/** Caller frames are skipped while this much is still unsent (a stalled connection must not queue minutes of audio). */
const MAX_SEND_BACKLOG_BYTES = 256 * 1024;

export class PlaygroundCall {
  private readonly context: AudioContext;
  private readonly voice = new VoiceDetector();
  private readonly turns = new TurnTimer();
  /** Context times at which interruptions arrived, waiting for their flush report. */
  private readonly interruptions: number[] = [];
  private socket: WebSocket | undefined;
  private stream: MediaStream | undefined;
  private capture: AudioWorkletNode | undefined;
  private playback: AudioWorkletNode | undefined;
  private opened = false;
  private ended = false;
  private problems = 0;
  private callerPeakDbfs = -120;
  private agentSpeaking = false;

  /** Call from a user gesture (a click): browsers start audio only then. Events arrive through `onEvent`. */
  constructor(
    private readonly settings: CallSettings,
    private readonly onEvent: (event: CallEvent) => void,
  ) {
    this.context = openAudioContext();
  }

  /** Microphone and audio first (a refused microphone makes no call), then the WebSocket. */
  async start(): Promise<void> {
    try {
      await this.context.audioWorklet.addModule('capture-worklet.js');
      await this.context.audioWorklet.addModule('playback-worklet.js');
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: this.settings.echoCancellation, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      if (this.ended) {
        for (const track of stream.getTracks()) track.stop();
        return;
      }
      this.stream = stream;
      this.connectAudio(stream);
      await this.context.resume();
      if (this.ended) return;
      this.connectSocket();
    } catch (error) {
      if (!this.ended) this.fail(`could not start the call: ${describe(error)}`);
    }
  }

  hangUp(): void {
    void this.finish('you hung up');
  }

  private connectAudio(stream: MediaStream): void {
    const context = this.context;
    const capture = new AudioWorkletNode(context, CAPTURE_PROCESSOR, {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: 'explicit',
    });
    const playback = new AudioWorkletNode(context, PLAYBACK_PROCESSOR, { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
    capture.port.onmessage = (event: MessageEvent<CapturedFrame>) => this.captured(event.data);
    playback.port.onmessage = (event: MessageEvent<PlaybackReport>) => this.played(event.data);
    for (const node of [capture, playback]) node.onprocessorerror = () => this.fail('the audio processing failed in the browser');
    context.createMediaStreamSource(stream).connect(capture);
    playback.connect(context.destination);
    this.capture = capture;
    this.playback = playback;
  }

  private connectSocket(): void {
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.settings.url);
    } catch (error) {
      this.fail(`cannot connect to ${shown(this.settings.url)}: ${describe(error)}`);
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.opened = true;
      socket.send(initMessage(this.settings.uuid));
      this.onEvent({ type: 'connected', at: this.now() });
    };
    socket.onmessage = (event: MessageEvent<unknown>) => this.received(event.data);
    socket.onclose = (event) => void this.finish(this.closeReason(event));
  }

  private received(data: unknown): void {
    const parsed = parseServerMessage(data);
    if (!parsed.ok) {
      this.problems++;
      if (this.problems <= MAX_PROBLEMS_SHOWN) {
        const more = this.problems === MAX_PROBLEMS_SHOWN ? ' (further ones are ignored silently)' : '';
        this.onEvent({ type: 'error', at: this.now(), message: `ignored ${parsed.problem} from the gateway${more}` });
      }
      return;
    }
    this.handle(parsed.message);
  }

  private handle(message: ServerMessage): void {
    switch (message.type) {
      case 'interruption':
        // Straight to the playback thread: it drops what is queued before rendering its next quantum.
        this.interruptions.push(this.context.currentTime);
        this.command({ type: 'flush' });
        return;
      case 'audio':
        this.command({ type: 'audio', samples: message.samples }, [message.samples.buffer]);
        return;
      case 'transcript':
        this.onEvent({ type: 'transcript', at: this.now(), role: message.role, text: message.text });
        return;
      case 'error':
        this.onEvent({ type: 'error', at: this.now(), message: `the gateway says: ${message.message}` });
        return;
    }
  }

  private captured(frame: CapturedFrame): void {
    const level = pcmLevelDbfs(frame.samples);
    this.turns.frame(frame.endTime, this.voice.isVoice(level));
    this.callerPeakDbfs = Math.max(this.callerPeakDbfs, level);
    const socket = this.socket;
    if (this.opened && socket?.readyState === WebSocket.OPEN && socket.bufferedAmount < MAX_SEND_BACKLOG_BYTES) {
      socket.send(audioMessage(frame.samples));
    }
  }

  private played(report: PlaybackReport): void {
    switch (report.type) {
      case 'speaking': {
        this.agentSpeaking = true;
        const latencyMs = this.turns.agentStarted(report.at);
        if (latencyMs !== undefined) this.onEvent({ type: 'turn', at: report.at, latencyMs });
        return;
      }
      case 'quiet':
        this.agentSpeaking = false;
        return;
      case 'flushed': {
        this.agentSpeaking = false;
        const arrivedAt = this.interruptions.shift();
        if (arrivedAt === undefined) return;
        const outputLatencyMs = this.outputLatencyMs();
        const pageMs = report.wasSpeaking ? Math.max(0, report.lastAudibleEnd - arrivedAt) * 1000 : 0;
        this.onEvent({
          type: 'barge_in',
          at: arrivedAt,
          silentAfterMs: Math.round(pageMs + (report.wasSpeaking ? outputLatencyMs : 0)),
          outputLatencyMs: Math.round(outputLatencyMs),
          discardedMs: Math.round(report.discardedMs),
          wasSpeaking: report.wasSpeaking,
        });
        return;
      }
      case 'level':
        this.onEvent({
          type: 'levels',
          callerDbfs: this.callerPeakDbfs,
          callerSpeaking: this.turns.callerSpeaking(this.context.currentTime),
          agentDbfs: report.levelDbfs,
          agentSpeaking: this.agentSpeaking,
          agentAudibleMs: Math.round(report.audibleMs),
        });
        this.callerPeakDbfs = -120;
        return;
      case 'overflow':
        this.onEvent({ type: 'error', at: this.now(), message: `the gateway sent audio faster than real time: ${Math.round(report.droppedMs)} ms dropped` });
        return;
    }
  }

  private command(command: PlaybackCommand, transfer: Transferable[] = []): void {
    this.playback?.port.postMessage(command, transfer);
  }

  /** How long rendered audio takes to reach the speaker (browsers that do not say count 0). */
  private outputLatencyMs(): number {
    const seconds = (this.context.baseLatency || 0) + (this.context.outputLatency || 0);
    return Number.isFinite(seconds) ? seconds * 1000 : 0;
  }

  private closeReason(event: CloseEvent): string {
    if (!this.opened) {
      return `could not connect to ${shown(this.settings.url)}: check the URL (the gateway needs an STS provider), and the token if the gateway sets STSGATE_AUTH_TOKEN`;
    }
    if (event.code === 1000) return 'the gateway ended the call';
    return `the connection closed (code ${event.code}${event.reason === '' ? '' : `: ${event.reason}`})`;
  }

  private fail(message: string): void {
    this.onEvent({ type: 'error', at: this.now(), message });
    void this.finish(message);
  }

  /** Ends the call once: closes the WebSocket, releases the microphone, closes the AudioContext. */
  private async finish(reason: string): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const at = this.now();
    const socket = this.socket;
    if (socket !== undefined) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) socket.close(1000, 'hang up');
    }
    await this.release();
    this.onEvent({ type: 'ended', at, reason });
  }

  private async release(): Promise<void> {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    for (const node of [this.capture, this.playback]) {
      if (node === undefined) continue;
      node.port.onmessage = null;
      node.disconnect();
    }
    if (this.context.state !== 'closed') await this.context.close();
  }

  private now(): number {
    return this.context.currentTime;
  }
}

/** The device's rate when core's resampler converts it, else 48 kHz (the browser then converts, e.g. from 44.1 kHz). */
function openAudioContext(): AudioContext {
  const native = new AudioContext({ latencyHint: 'interactive' });
  if ((SAMPLE_RATES as readonly number[]).includes(native.sampleRate)) return native;
  void native.close();
  return new AudioContext({ latencyHint: 'interactive', sampleRate: 48_000 });
}

/** A URL as shown to the user: never with the token. */
function shown(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
