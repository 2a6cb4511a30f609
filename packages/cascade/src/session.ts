/**
 * One call of the cascade agent: caller audio -> ASR (words, endpointing) and VAD (speech timing, barge-in) ->
 * turns -> LLM (streamed, tools) -> chunker -> TTS -> agent audio, with the conversation keeping only what the
 * caller heard of each reply.
 *
 * Replies are "rounds": one LLM completion and its speech, under one response id. A reply whose completion calls
 * tools runs the tools through the host (`tool_call` events, `submitToolResult`) once its words have been emitted,
 * then continues with a new round. A reply is cancelled by a barge-in, by a new turn that must be answered instead
 * (keypad digits), or by the end of the call.
 */
import type { Logger } from 'pino';
import { AsyncQueue, PlayoutClock, ProviderError, createResampler, samplesToMs, toProviderError } from '@stsgate/core';
import { renderInstructions } from '@stsgate/agent';
import type {
  AsrStream,
  LlmDelta,
  Resampler,
  SampleRate,
  StsCallContext,
  StsEvent,
  StsSession,
  TurnMetrics,
  VadEvent,
  VadStream,
} from '@stsgate/core';
import { TextChunker } from './chunker.js';
import { Conversation } from './conversation.js';
import type { AssistantEntry } from './conversation.js';
import { streamCompletion } from './llm-stream.js';
import type { CascadeSettings } from './settings.js';
import { createSpeech } from './speech.js';
import type { Speech } from './speech.js';
import type { SpokenTimeline } from './timeline.js';
import { TurnDetector, countWords } from './turns.js';
import type { Turn } from './turns.js';

const PROVIDER = 'cascade';
/** Caller audio the VAD may fall behind by before frames are dropped (it runs far faster than real time). */
const MAX_VAD_BACKLOG_MS = 10_000;
/** A reply's agent transcript goes to AVR once its audio has been heard, plus this margin for AVR Core's buffer. */
const TRANSCRIPT_MARGIN_MS = 250;
/** Replies remembered for a late `truncate()`. */
const MAX_RECENT_REPLIES = 8;
const DTMF_DIGIT = /^[0-9A-D*#]$/;

/** A reply round's words, for truncation and the agent transcript. */
interface SpokenRound {
  readonly entry: AssistantEntry;
  readonly timeline: SpokenTimeline;
  transcriptTimer: NodeJS.Timeout | undefined;
  transcriptSent: boolean;
}

/** One round being spoken. */
interface Round {
  readonly responseId: string;
  readonly speech: Speech;
  audio: boolean;
  /** Stops the round's LLM request (its TTS failed). */
  readonly stop: AbortController;
  /** The round's failure was reported to AVR (once per round, at once). */
  failed: boolean;
}

interface Reply {
  readonly abort: AbortController;
  readonly endOfSpeechAt: number | undefined;
  readonly metrics: { -readonly [K in keyof TurnMetrics]: TurnMetrics[K] };
  metricsSent: boolean;
  /** The round being spoken. */
  round: Round | undefined;
  /** Tool results this reply waits for. */
  readonly waiting: Map<string, () => void>;
  cancelled: boolean;
}

export class CascadeSession implements StsSession {
  readonly events = new AsyncQueue<StsEvent>();
  readonly outputSampleRate: SampleRate;
  private readonly logger: Logger;
  private readonly conversation: Conversation;
  private readonly turns: TurnDetector;
  /** Our estimate of what the caller hears; the host's `truncate()` corrects it after a barge-in. */
  private readonly clock = new PlayoutClock();
  private readonly recent = new Map<string, SpokenRound>();
  private readonly pendingToolCalls = new Set<string>();
  private reply: Reply | undefined;
  private roundCount = 0;
  /** The round whose audio was emitted last (what a caller may still be hearing after its reply ended). */
  private lastRoundId: string | undefined;
  /** Caller audio received (ms), and run through the VAD. */
  private receivedMs = 0;
  private vadMs = 0;
  private vadChain: Promise<void> = Promise.resolve();
  private vadBacklogMs = 0;
  private vadDropping = false;
  /** The VAD failed: the call goes on with the ASR's endpointing alone, and no barge-in. */
  private vadFailed = false;
  /** The VAD is inside a speech segment that began at this caller-audio position. */
  private speechStartMs: number | undefined;
  /** Caller audio position (ms) from which caller speech counts as speaking over the latest reply. */
  private listenFromMs = 0;
  private digits = '';
  private dtmfTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly onCallAbort = (): void => void this.close();

  private constructor(
    private readonly settings: CascadeSettings,
    private readonly call: StsCallContext,
    private readonly asr: AsrStream,
    private readonly vad: VadStream,
    private readonly vadResampler: Resampler | undefined,
    instructions: string,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER });
    this.outputSampleRate = settings.tts.capabilities.outputSampleRates[0] ?? 8000;
    this.conversation = new Conversation(settings.maxHistoryMessages);
    this.conversation.setSystem(instructions);
    this.turns = new TurnDetector(
      {
        asrEndpointing: settings.asr.capabilities.endpointing,
        asrFinalize: settings.asr.capabilities.finalize,
        endpointMaxWaitMs: settings.endpointMaxWaitMs,
        finalizeGraceMs: settings.finalizeGraceMs,
      },
      { finalize: () => this.asr.finalize(), turn: (turn) => this.onTurn(turn) },
    );
    call.signal.addEventListener('abort', this.onCallAbort, { once: true });
  }

  /** Opens the call's ASR and VAD streams and resolves its instructions; then the agent greets (if configured). */
  static async open(settings: CascadeSettings, call: StsCallContext): Promise<CascadeSession> {
    const rates = settings.asr.capabilities.inputSampleRates;
    const [asr, vadOpen, instructions] = await Promise.allSettled([
      settings.asr.open(call),
      (async () => {
        const rate: SampleRate = rates.includes(8000) ? 8000 : (rates[0] ?? 8000);
        const vadRate: SampleRate = settings.vad.capabilities.inputSampleRates.includes(rate) ? rate : (settings.vad.capabilities.inputSampleRates[0] ?? 8000);
        // The VAD confirms speech once it has heard `bargeInMinSpeechMs` of it: that is the barge-in's minimum.
        return { stream: await settings.vad.open(vadRate, { ...settings.vadOptions, minSpeechMs: settings.bargeInMinSpeechMs }), vadRate };
      })(),
      settings.instructions(call),
    ]);
    const failure = [asr, vadOpen, instructions].find((result) => result.status === 'rejected');
    if (failure !== undefined) {
      if (asr.status === 'fulfilled') await asr.value.close();
      if (vadOpen.status === 'fulfilled') await vadOpen.value.stream.close();
      throw toProviderError(PROVIDER, failure.reason);
    }
    const asrStream = (asr as PromiseFulfilledResult<AsrStream>).value;
    const { stream, vadRate } = (vadOpen as PromiseFulfilledResult<{ stream: VadStream; vadRate: SampleRate }>).value;
    const resampler = vadRate === asrStream.inputSampleRate ? undefined : createResampler(asrStream.inputSampleRate, vadRate);
    const session = new CascadeSession(settings, call, asrStream, stream, resampler, (instructions as PromiseFulfilledResult<string>).value);
    session.start();
    return session;
  }

  get inputSampleRate(): SampleRate {
    return this.asr.inputSampleRate;
  }

  // ---- caller side -----------------------------------------------------------------------------------------------

  sendAudio(samples: Int16Array): void {
    if (this.closed || samples.length === 0) return;
    const ms = samplesToMs(samples.length, this.asr.inputSampleRate);
    this.receivedMs += ms;
    this.asr.pushAudio(samples);
    if (this.vadFailed) return;
    if (this.vadBacklogMs > MAX_VAD_BACKLOG_MS) {
      if (!this.vadDropping) this.logger.warn({ backlogMs: this.vadBacklogMs }, 'VAD is behind: caller audio skipped for barge-in detection');
      this.vadDropping = true;
      this.vadMs += ms;
      return;
    }
    this.vadDropping = false;
    const audio = this.vadResampler === undefined ? samples.slice() : this.vadResampler.process(samples);
    this.vadBacklogMs += ms;
    // Serialised: each batch's events are handled in stream order.
    this.vadChain = this.vadChain
      .then(() => this.vad.process(audio))
      .then(
        (events) => {
          this.vadBacklogMs -= ms;
          this.vadMs += ms;
          if (this.closed) return;
          for (const event of events) this.onVadEvent(event);
          this.checkBargeIn();
        },
        (error: unknown) => {
          this.vadBacklogMs -= ms;
          if (this.closed || this.vadFailed) return;
          this.vadFailed = true;
          const failure = toProviderError(this.settings.vad.id, error);
          this.logger.error({ err: failure }, 'the VAD failed: going on without barge-in');
          const message = `VAD (${this.settings.vad.id}) failed, the call goes on without barge-in: ${failure.message}`;
          this.events.push({ type: 'error', error: new ProviderError(failure.provider, failure.category, message, { retryable: false, cause: failure }), fatal: false });
        },
      );
  }

  sendDtmf(digit: string): void {
    if (this.closed) return;
    if (!DTMF_DIGIT.test(digit)) {
      this.logger.warn({ digit: digit.slice(0, 4) }, 'ignoring an invalid DTMF digit');
      return;
    }
    this.digits += digit;
    clearTimeout(this.dtmfTimer);
    this.dtmfTimer = undefined;
    if (digit === '#') this.submitDigits();
    else this.dtmfTimer = setTimeout(() => this.submitDigits(), this.settings.dtmfInterDigitMs);
  }

  private submitDigits(): void {
    this.dtmfTimer = undefined;
    // `#` ends an entry (like "1234#"): it is not part of it, unless it is all there is.
    const digits = this.digits.length > 1 && this.digits.endsWith('#') ? this.digits.slice(0, -1) : this.digits;
    this.digits = '';
    if (digits === '' || this.closed) return;
    const text = this.settings.dtmfMessage.split('{{digit}}').join(digits);
    this.logger.debug({ digits }, 'keypad digits');
    // Keys pressed while the agent talks mean the caller wants to act: the reply stops for them.
    if (this.agentActive()) this.cancelReply('interrupted');
    this.startTurn(text, undefined);
  }

  private onVadEvent(event: VadEvent): void {
    switch (event.type) {
      case 'speech_start':
        this.speechStartMs = event.atMs;
        this.turns.speechStarted();
        return;
      case 'speech_end':
        this.speechStartMs = undefined;
        this.turns.speechEnded(event.atMs);
        return;
      case 'misfire':
        this.speechStartMs = undefined;
        return;
    }
  }

  /**
   * The caller is talking over a reply (being written or audible): speech the VAD confirmed (it holds
   * `bargeInMinSpeechMs` of speech) that began after the reply started, with `bargeInMinWords` recognised when set;
   * or words recognised while the caller keeps talking past the end of their turn. Then the reply stops and the
   * host interrupts playback.
   */
  private checkBargeIn(): void {
    if (!this.agentActive() || this.speechStartMs === undefined) return;
    const words = this.turns.words;
    const minWords = this.settings.bargeInMinWords;
    const newSpeech = this.speechStartMs >= this.listenFromMs && words >= minWords;
    const stillTalking = this.speechStartMs < this.listenFromMs && words >= Math.max(1, minWords);
    if (!newSpeech && !stillTalking) return;
    const speechMs = this.vadMs - this.speechStartMs;
    this.logger.debug({ words, speechMs: Math.round(speechMs), stillTalking }, 'barge-in');
    this.cancelReply('barge_in', speechMs);
  }

  /** A reply is being written, or its audio may still be playing. */
  private agentActive(): boolean {
    return this.reply !== undefined || this.clock.isPlaying();
  }

  private onTurn(turn: Turn): void {
    if (this.closed) return;
    if (this.agentActive()) {
      // Words the VAD did not confirm as speech over the agent (echo, noise, a cough): not a turn.
      this.logger.debug({ words: countWords(turn.text) }, 'caller words during agent speech without a barge-in: ignored');
      return;
    }
    this.startTurn(turn.text, turn);
  }

  private startTurn(text: string, turn: Turn | undefined): void {
    this.events.push({ type: 'transcript', role: 'user', text, final: true });
    this.logger.debug({ text }, 'caller turn');
    this.conversation.addUser(text);
    // Caller audio arrives in real time: speech that ended `receivedMs - endOfSpeechMs` ago in the stream ended that long ago.
    const endOfSpeechAt = turn?.endOfSpeechMs === undefined ? undefined : performance.now() - Math.max(0, this.receivedMs - turn.endOfSpeechMs);
    const reply = this.newReply(endOfSpeechAt);
    if (endOfSpeechAt !== undefined) reply.metrics.asrFinal = { provider: this.settings.asr.id, ms: performance.now() - endOfSpeechAt };
    void this.runReply(reply, undefined);
  }

  // ---- replies ----------------------------------------------------------------------------------------------------

  private start(): void {
    void this.consumeAsr();
    const greeting = this.settings.greeting;
    switch (greeting.type) {
      case 'none':
        return;
      case 'llm':
        void this.runReply(this.newReply(undefined), undefined);
        return;
      case 'text':
        void this.runReply(this.newReply(undefined), renderInstructions(greeting.text, this.call));
        return;
    }
  }

  private newReply(endOfSpeechAt: number | undefined): Reply {
    const reply: Reply = {
      abort: new AbortController(),
      endOfSpeechAt,
      metrics: {},
      metricsSent: false,
      round: undefined,
      waiting: new Map(),
      cancelled: false,
    };
    this.reply = reply;
    this.listenFromMs = this.receivedMs;
    return reply;
  }

  /** Runs a reply's rounds: the first speaks `scripted` (a greeting) or the LLM's answer; tool calls add rounds. */
  private async runReply(reply: Reply, scripted: string | undefined): Promise<void> {
    const onAbort = (): void => reply.abort.abort();
    this.call.signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (let round = 0; ; round++) {
        const toolCalls = round === 0 && scripted !== undefined ? await this.speakScripted(reply, scripted) : await this.llmRound(reply);
        if (reply.cancelled || toolCalls.length === 0) return;
        if (round + 1 >= this.settings.maxToolRounds) {
          this.logger.warn({ rounds: round + 1 }, 'the reply keeps calling tools: stopped');
          return;
        }
        await this.runTools(reply, toolCalls);
        if (reply.cancelled) return;
      }
    } catch (error) {
      if (!reply.cancelled && !this.closed) this.fail(toProviderError(PROVIDER, error), 'the reply failed');
    } finally {
      this.call.signal.removeEventListener('abort', onAbort);
      this.sendMetrics(reply);
      if (this.reply === reply) this.reply = undefined;
    }
  }

  private beginRound(reply: Reply): Round {
    const responseId = `cascade-${++this.roundCount}`;
    const speech = createSpeech({
      tts: this.settings.tts,
      call: this.replyContext(reply),
      request: {
        ...(this.settings.voice === undefined ? {} : { voice: this.settings.voice }),
        ...(this.settings.language === undefined ? {} : { language: this.settings.language }),
      },
      outputSampleRate: this.outputSampleRate,
      firstAudioTimeoutMs: this.settings.ttsFirstAudioTimeoutMs,
      idleTimeoutMs: this.settings.ttsIdleTimeoutMs,
      retry: this.settings.retry,
      prefetch: this.settings.ttsPrefetch,
      logger: this.logger,
      emit: (samples) => this.emitAudio(reply, responseId, samples),
      onFirstAudio: (ms) => {
        reply.metrics.ttsFirstAudio ??= { provider: this.settings.tts.id, ms };
      },
    });
    const round: Round = { responseId, speech, audio: false, stop: new AbortController(), failed: false };
    reply.round = round;
    void speech.done.then((outcome) => {
      if (outcome.type !== 'failed' || reply.cancelled || this.closed) return;
      // Without its voice the reply cannot go on: the LLM stops now and AVR hears of it now, not once the LLM is done
      // (a barge-in in the silence that follows would otherwise swallow the error).
      round.stop.abort();
      this.reportRoundFailure(round, 'TTS', outcome.error);
    });
    return round;
  }

  private async speakScripted(reply: Reply, text: string): Promise<never[]> {
    const round = this.beginRound(reply);
    const chunker = new TextChunker(this.settings.chunker);
    for (const chunk of [...chunker.push(text), ...chunker.flush()]) round.speech.add(chunk);
    round.speech.end();
    await this.finishRound(reply, round, text, []);
    return [];
  }

  /** One LLM completion spoken as it streams; resolves with its tool calls. */
  private async llmRound(reply: Reply): Promise<Extract<LlmDelta, { type: 'tool_call' }>[]> {
    const round = this.beginRound(reply);
    const { speech } = round;
    const chunker = new TextChunker(this.settings.chunker);
    const toolCalls: Extract<LlmDelta, { type: 'tool_call' }>[] = [];
    const { llm, maxReplyChars, maxReplyMs } = this.settings;
    const tools = llm.capabilities.toolCalls ? this.call.tools : [];
    const started = performance.now();
    let text = '';
    const context: StsCallContext = { ...this.call, signal: AbortSignal.any([reply.abort.signal, round.stop.signal]) };
    try {
      const deltas = streamCompletion(llm, { messages: this.conversation.messages(), ...(tools.length === 0 ? {} : { tools }) }, context, {
        firstTokenTimeoutMs: this.settings.llmFirstTokenTimeoutMs,
        idleTimeoutMs: this.settings.llmIdleTimeoutMs,
        retry: this.settings.retry,
        maxRetryWaitMs: this.settings.maxRetryWaitMs,
        logger: this.logger,
      });
      for await (const delta of deltas) {
        if (reply.cancelled || round.failed) break;
        if (delta.type !== 'done') reply.metrics.llmFirstToken ??= { provider: llm.id, ms: performance.now() - started };
        if (delta.type === 'tool_call') toolCalls.push(delta);
        if (delta.type !== 'text') continue;
        text += delta.text;
        for (const chunk of chunker.push(delta.text)) speech.add(chunk);
        const elapsed = performance.now() - started;
        if (text.length >= maxReplyChars || elapsed >= maxReplyMs) {
          this.logger.warn({ chars: text.length, ms: Math.round(elapsed) }, 'the reply is too long: cut');
          break;
        }
      }
    } catch (error) {
      // Reported now, while what was written of the reply is still spoken.
      if (!reply.cancelled && !round.failed) this.reportRoundFailure(round, 'LLM', toProviderError(llm.id, error));
    }
    if (reply.cancelled) return [];
    for (const chunk of chunker.flush()) speech.add(chunk);
    speech.end();
    await this.finishRound(reply, round, text.trim(), toolCalls);
    // A failed round ends the reply: its tools are not run.
    return reply.cancelled || round.failed ? [] : toolCalls;
  }

  /** Waits for the round's audio, then records it (history, agent transcript). */
  private async finishRound(reply: Reply, round: Round, text: string, toolCalls: readonly Extract<LlmDelta, { type: 'tool_call' }>[]): Promise<void> {
    const { responseId, speech } = round;
    const outcome = await speech.done;
    if (reply.cancelled || this.closed) return;
    reply.round = undefined;
    // A TTS failure mid-round: the words whose audio was emitted.
    const spokenText = outcome.type === 'spoken' ? text : speech.timeline.heardText(speech.timeline.audioMs);
    const calls = round.failed ? [] : toolCalls;
    const entry = this.conversation.addAssistant(
      spokenText,
      calls.map((call) => ({ id: call.id, name: call.name, argumentsJson: call.argumentsJson })),
    );
    this.remember(responseId, entry, speech.timeline, this.clock.queuedMs() + TRANSCRIPT_MARGIN_MS);
    if (speech.timeline.audioMs > 0) this.events.push({ type: 'response_done', responseId });
  }

  /** A round's first failure goes to AVR at once; a later one (the LLM stopped because the TTS failed) does not. */
  private reportRoundFailure(round: Round, stage: 'LLM' | 'TTS', error: ProviderError): void {
    if (round.failed) return;
    round.failed = true;
    this.reportTurnFailure(stage, error);
  }

  private async runTools(reply: Reply, toolCalls: readonly Extract<LlmDelta, { type: 'tool_call' }>[]): Promise<void> {
    const results = toolCalls.map(
      (call) =>
        new Promise<void>((resolve) => {
          reply.waiting.set(call.id, resolve);
          this.pendingToolCalls.add(call.id);
        }),
    );
    for (const call of toolCalls) this.events.push({ type: 'tool_call', callId: call.id, name: call.name, argumentsJson: call.argumentsJson });
    await Promise.all(results);
  }

  submitToolResult(callId: string, output: string): void {
    if (!this.pendingToolCalls.delete(callId)) {
      this.logger.debug({ toolCallId: callId }, 'result for an unknown or answered tool call: ignored');
      return;
    }
    this.conversation.addToolResult(callId, output);
    const resolve = this.reply?.waiting.get(callId);
    this.reply?.waiting.delete(callId);
    resolve?.();
  }

  private emitAudio(reply: Reply, responseId: string, samples: Int16Array): void {
    if (reply.cancelled || this.closed) return;
    if (reply.round !== undefined) reply.round.audio = true;
    if (reply.metrics.endOfSpeechToFirstAudioMs === undefined && reply.endOfSpeechAt !== undefined) {
      reply.metrics.endOfSpeechToFirstAudioMs = performance.now() - reply.endOfSpeechAt;
    }
    this.sendMetrics(reply);
    this.clock.enqueue(responseId, samplesToMs(samples.length, this.outputSampleRate));
    this.lastRoundId = responseId;
    this.events.push({ type: 'audio', responseId, samples });
  }

  /**
   * Stops the reply now: no more audio, LLM and TTS requests aborted. `barge_in` tells the host the caller spoke
   * (it interrupts playback and reports how much was heard with `truncate`); `interrupted` that the agent stopped
   * by itself (keypad digits).
   */
  private cancelReply(reason: 'barge_in' | 'interrupted', onsetAgoMs?: number): void {
    const reply = this.reply;
    this.reply = undefined;
    // Rounds whose audio is still playing (a tool-calling reply has several) are cut to what was heard. After a
    // barge-in the host reports that (truncate) for the latest audio only; for every other round, and for a stop of
    // our own, our estimate stands.
    for (const [responseId, spoken] of this.recent) {
      if (spoken.transcriptSent || (reason === 'barge_in' && responseId === this.lastRoundId)) continue;
      const heardMs = this.clock.heardMs(responseId);
      if (heardMs < this.clock.sentMs(responseId)) this.truncate(responseId, heardMs);
    }
    let cutResponseId: string | undefined;
    if (reply !== undefined) {
      reply.cancelled = true;
      reply.abort.abort();
      for (const resolve of reply.waiting.values()) resolve();
      reply.waiting.clear();
      const round = reply.round;
      reply.round = undefined;
      if (round !== undefined) {
        round.speech.cancel();
        // Until the host says how much was heard, our own playout estimate stands.
        const heard = round.speech.timeline.heardText(this.clock.heardMs(round.responseId));
        const entry = this.conversation.addAssistant(heard);
        this.remember(round.responseId, entry, round.speech.timeline, TRANSCRIPT_MARGIN_MS);
        if (round.audio) cutResponseId = round.responseId;
      }
    }
    this.clock.flush();
    // The stop before the cut reply's response_done: to the host the reply is still streaming, so it interrupts it
    // even in a gap of its audio (TTS slower than real time), when nothing is audible or queued.
    this.events.push(reason === 'barge_in' ? { type: 'speech_started', ...(onsetAgoMs === undefined ? {} : { onsetAgoMs }) } : { type: 'interrupted' });
    if (cutResponseId !== undefined) this.events.push({ type: 'response_done', responseId: cutResponseId });
  }

  truncate(responseId: string, heardMs: number): void {
    const spoken = this.recent.get(responseId);
    if (spoken === undefined) {
      this.logger.debug({ responseId, heardMs }, 'truncate of an unknown reply: ignored');
      return;
    }
    const heard = spoken.timeline.heardText(heardMs);
    this.conversation.truncate(spoken.entry, heard);
    this.logger.debug({ responseId, heardMs: Math.round(heardMs) }, 'reply truncated to what the caller heard');
    this.sendAgentTranscript(spoken, heard);
  }

  /** Keeps a round for a late `truncate()`; its agent transcript goes out after `transcriptDelayMs`. */
  private remember(responseId: string, entry: AssistantEntry, timeline: SpokenTimeline, transcriptDelayMs: number): void {
    const spoken: SpokenRound = { entry, timeline, transcriptTimer: undefined, transcriptSent: false };
    spoken.transcriptTimer = setTimeout(() => this.sendAgentTranscript(spoken, spoken.entry.content), transcriptDelayMs);
    this.recent.set(responseId, spoken);
    for (const [id, old] of this.recent) {
      if (this.recent.size <= MAX_RECENT_REPLIES) break;
      if (old.transcriptTimer !== undefined) this.sendAgentTranscript(old, old.entry.content);
      this.recent.delete(id);
    }
  }

  private sendAgentTranscript(spoken: SpokenRound, text: string): void {
    clearTimeout(spoken.transcriptTimer);
    spoken.transcriptTimer = undefined;
    if (spoken.transcriptSent || this.closed) return;
    spoken.transcriptSent = true;
    if (text.trim() !== '') this.events.push({ type: 'transcript', role: 'agent', text: text.trim(), final: true });
  }

  /** Once per reply: at its first audio, or when it ends without any. */
  private sendMetrics(reply: Reply): void {
    if (reply.metricsSent) return;
    const { metrics } = reply;
    reply.metricsSent = true;
    const rounded = Object.fromEntries(
      Object.entries(metrics).map(([key, value]) => [key, typeof value === 'number' ? Math.round(value) : { ...value, ms: Math.round(value.ms) }]),
    ) as TurnMetrics;
    if (Object.keys(rounded).length > 0) this.events.push({ type: 'turn_metrics', metrics: rounded });
  }

  /** The context a reply's requests run in: aborted when the reply is cancelled or the call ends. */
  private replyContext(reply: Reply): StsCallContext {
    return { ...this.call, signal: reply.abort.signal };
  }

  // ---- provider streams ------------------------------------------------------------------------------------------

  private async consumeAsr(): Promise<void> {
    try {
      for await (const event of this.asr.events) {
        if (this.closed) return;
        if (event.type === 'error') {
          if (event.fatal) {
            this.fail(event.error, 'the ASR failed');
            return;
          }
          this.logger.warn({ err: event.error }, 'ASR warning');
          continue;
        }
        this.turns.asr(event);
        if (event.type === 'partial' || event.type === 'final') this.checkBargeIn();
      }
    } catch (error) {
      if (!this.closed) this.fail(toProviderError(this.settings.asr.id, error), 'the ASR failed');
      return;
    }
    if (!this.closed) this.fail(new ProviderError(this.settings.asr.id, 'closed', 'the ASR stream ended'), 'the ASR failed');
  }

  /** A turn failed (LLM or TTS): AVR gets one error naming the stage, the call goes on. */
  private reportTurnFailure(stage: 'LLM' | 'TTS', error: ProviderError): void {
    this.logger.error({ err: error, category: error.category, stage }, 'the agent could not answer this turn');
    const named = new ProviderError(error.provider, error.category, `${stage} (${error.provider}) failed this turn: ${error.message}`, {
      retryable: false,
      cause: error,
    });
    this.events.push({ type: 'error', error: named, fatal: false });
  }

  /** The call cannot go on: one fatal error, then the session closes. */
  private fail(error: ProviderError, what: string): void {
    if (this.closed) return;
    this.logger.error({ err: error, category: error.category }, what);
    this.events.push({ type: 'error', error, fatal: true });
    void this.close();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.call.signal.removeEventListener('abort', this.onCallAbort);
    const reply = this.reply;
    if (reply !== undefined) {
      reply.cancelled = true;
      reply.abort.abort();
      reply.round?.speech.cancel();
      for (const resolve of reply.waiting.values()) resolve();
    }
    this.reply = undefined;
    clearTimeout(this.dtmfTimer);
    this.turns.close();
    for (const spoken of this.recent.values()) clearTimeout(spoken.transcriptTimer);
    this.recent.clear();
    this.events.end();
    await Promise.allSettled([this.asr.close(), this.vadChain.then(() => this.vad.close())]);
  }
}

