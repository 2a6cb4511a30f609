import { afterEach, describe, expect, test } from 'vitest';
import type { AsrEvent, AsrStream } from '@stsgate/core';
import { EventLog, FIXTURE_TEXT, silence, startSpeechmaticsRtEmulator } from '@stsgate/testkit';
import type { SpeechmaticsRtEmulator, SpeechmaticsRtEmulatorOptions } from '@stsgate/testkit';
import { createSpeechmaticsAsr } from '../src/index.js';
import type { SpeechmaticsAsrOptions } from '../src/index.js';
import { callContext, frames, memoryLogger, spoken } from './helpers.js';

const KEY = 'sm-asr-test-key-123';
const FAST_RETRY = { maxAttempts: 3, firstDelayMs: 0, baseDelayMs: 10, maxDelayMs: 20, jitter: 0 };

let emulator: SpeechmaticsRtEmulator | undefined;
const streams: AsrStream[] = [];

afterEach(async () => {
  await Promise.all(streams.splice(0).map((stream) => stream.close()));
  await emulator?.close();
  emulator = undefined;
});

async function setup(emulatorOptions: SpeechmaticsRtEmulatorOptions = {}, adapterOptions: Partial<SpeechmaticsAsrOptions> = {}, logger = memoryLogger()) {
  emulator = await startSpeechmaticsRtEmulator({ apiKey: KEY, ...emulatorOptions });
  const adapter = createSpeechmaticsAsr({ apiKey: KEY, url: emulator.url, reconnect: FAST_RETRY, ...adapterOptions });
  const stream = await adapter.open(callContext({ logger: logger.logger }));
  streams.push(stream);
  return { emulator, stream, log: new EventLog<AsrEvent>(stream.events), lines: logger.lines };
}

function push(stream: AsrStream, samples: Int16Array): void {
  for (const frame of frames(samples)) stream.pushAudio(frame);
}

const utterances = (log: EventLog<AsrEvent>): string[] => log.of('end_of_utterance').map((event) => event.text);

describe('Speechmatics real-time ASR against the emulator', () => {
  test('an utterance: header auth, raw 8 kHz StartRecognition, partials, finals and one end_of_utterance', async () => {
    const { emulator, stream, log, lines } = await setup({}, { language: 'en', model: 'enhanced', maxDelay: 1, additionalVocab: ['AVR'] });
    push(stream, spoken('greeting'));
    const [text] = await log.until(() => (utterances(log).length > 0 ? utterances(log) : undefined), 'an utterance');
    expect(text).toBe(FIXTURE_TEXT['greeting.wav']);
    const connection = emulator.connections[0];
    expect(connection?.authVia).toBe('header');
    expect(connection?.query['jwt']).toBeUndefined();
    expect(connection?.startRecognition).toMatchObject({
      audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
      transcription_config: { language: 'en', model: 'enhanced', max_delay: 1, enable_partials: true, additional_vocab: ['AVR'], conversation_config: { end_of_utterance_silence_trigger: 0.5 } },
    });
    const types = log.all.map((event) => event.type);
    expect(types[0]).toBe('speech_started');
    expect(types).toContain('partial');
    expect(types.indexOf('final')).toBeLessThan(types.indexOf('end_of_utterance'));
    const final = log.of('final')[0];
    expect(final?.startMs).toBeGreaterThanOrEqual(150);
    expect(final?.endMs).toBeGreaterThan(final?.startMs ?? 0);
    // Transcripts only at debug level, and never the key.
    const text2 = JSON.stringify(lines);
    expect(text2).not.toContain(KEY);
    expect(lines.filter((line) => line.level > 20 && JSON.stringify(line).includes('Hello'))).toEqual([]);
  });

  test('endInput sends EndOfStream with the frame count and the events end after EndOfTranscript', async () => {
    const { emulator, stream, log } = await setup();
    push(stream, spoken('short', 300));
    await emulator.waitFor(() => emulator.connections[0]?.audioFrames === frames(spoken('short', 300)).length);
    stream.endInput();
    await log.done;
    expect(emulator.connections[0]?.endOfStream).toBe(emulator.connections[0]?.audioFrames);
    expect(utterances(log)).toEqual([FIXTURE_TEXT['short.wav']]);
    expect(log.of('error')).toEqual([]);
  });

  test('finalize sends ForceEndOfUtterance: the pending words end the utterance without trailing silence', async () => {
    const { emulator, stream, log } = await setup();
    push(stream, spoken('question', 0));
    await emulator.waitFor(() => (emulator.connections[0]?.audioMs ?? 0) >= spoken('question', 0).length / 8 - 1);
    stream.finalize();
    await log.until(() => utterances(log).length === 1, 'a forced utterance');
    expect(utterances(log)).toEqual([FIXTURE_TEXT['question.wav']]);
    expect(emulator.connections[0]?.received).toContainEqual({ message: 'ForceEndOfUtterance' });
  });

  test('16 kHz input is declared as such', async () => {
    const { emulator, stream } = await setup({}, { sampleRate: 16000 });
    expect(stream.inputSampleRate).toBe(16000);
    stream.pushAudio(new Int16Array(320));
    await emulator.waitFor(() => emulator.connections[0]?.startRecognition);
    expect(emulator.connections[0]?.startRecognition?.audio_format).toEqual({ type: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 });
  });
});

describe('Speechmatics session limits', () => {
  test('a custom vocabulary: RecognitionStarted after more than 10 s (the SDK documents up to 15 s) still starts the session; caller audio held meanwhile stays bounded', async () => {
    // Past the 10 s that bound the start without a vocabulary; one attempt only, so a timeout would be fatal.
    const { emulator, stream, log } = await setup({ vocabStartDelayMs: 10_500 }, { additionalVocab: ['AVR'], maxQueuedMs: 3000, reconnect: { maxAttempts: 0 } });
    // 4.5 s of caller audio while the vocabulary loads: only the newest 3 s (maxQueuedMs) reach the session.
    push(stream, silence(2200));
    push(stream, spoken('short', 800));
    await log.until(() => utterances(log).length === 1, 'an utterance once recognition started', 16_000);
    expect(utterances(log)).toEqual([FIXTURE_TEXT['short.wav']]);
    expect(emulator.connections).toHaveLength(1);
    expect(emulator.connections[0]?.startRecognition?.transcription_config.additional_vocab).toEqual(['AVR']);
    expect(emulator.connections[0]?.audioMs).toBeLessThanOrEqual(3000);
    expect(log.of('error')).toEqual([]);
  }, 20_000);

  test('an explicit connectTimeoutMs bounds the wait for RecognitionStarted, vocabulary or not', async () => {
    const { log } = await setup({ vocabStartDelayMs: 2000 }, { additionalVocab: ['AVR'], connectTimeoutMs: 300, reconnect: { maxAttempts: 0 } });
    await log.done;
    expect(log.of('error')).toEqual([expect.objectContaining({ fatal: true, error: expect.objectContaining({ category: 'timeout', message: expect.stringMatching(/did not start recognition within 300 ms/) }) })]);
  });

  test('a session the server ends on its own (Warning duration_limit_exceeded, then EndOfTranscript) is replaced: the rest of the call is transcribed', async () => {
    // The limit hits in the silence after the first utterance; the server finishes and suspends that session.
    const { emulator, stream, log, lines } = await setup({ faults: [{ at: { afterAudioMs: 2600 }, action: { type: 'duration_limit' } }] });
    push(stream, spoken('short', 1200));
    await emulator.waitFor(() => emulator.connections[0]?.suspended);
    push(stream, spoken('greeting'));
    await log.until(() => utterances(log).length === 2, 'the second utterance, in a new session');
    expect(utterances(log)).toEqual([FIXTURE_TEXT['short.wav'], FIXTURE_TEXT['greeting.wav']]);
    expect(emulator.connections).toHaveLength(2);
    await emulator.waitFor(() => emulator.connections[0]?.closeInfo);
    expect(emulator.connections[0]?.closeInfo?.by).toBe('client');
    expect(log.of('error')).toEqual([]);
    expect(lines.find((line) => line.msg.includes('connection lost'))?.['err']).toMatch(/without an EndOfStream \(after Warning duration_limit_exceeded\)/);
    // The stream goes on, and ends when asked to.
    stream.endInput();
    await log.done;
    expect(emulator.connections[1]?.endOfStream).toBe(emulator.connections[1]?.lastSeqNo);
  });

  test('no audio for a while: the socket pings, so the service\'s no-audio-no-ping limit does not end the session', async () => {
    const { emulator, stream, log } = await setup({ quietTimeoutMs: 300 }, { pingIntervalMs: 50 });
    // Twelve pings 50 ms apart: twice the emulator's quiet limit without a byte of audio.
    await emulator.waitFor(() => (emulator.connections[0]?.pingsReceived ?? 0) >= 12);
    expect(emulator.connections).toHaveLength(1);
    expect(emulator.connections[0]?.closeInfo).toBeUndefined();
    push(stream, spoken('short'));
    await log.until(() => utterances(log).length === 1, 'an utterance after the quiet spell');
    expect(emulator.connections).toHaveLength(1);
    expect(log.of('error')).toEqual([]);
  });

  test('end_of_utterance_silence_trigger not below max_delay is sent as configured (the service accepts it)', async () => {
    const { emulator, stream, log } = await setup({}, { maxDelay: 0.7, endOfUtteranceSilence: 0.7 });
    push(stream, spoken('short'));
    await log.until(() => utterances(log).length === 1, 'an utterance');
    expect(emulator.connections[0]?.startRecognition?.transcription_config).toMatchObject({ max_delay: 0.7, conversation_config: { end_of_utterance_silence_trigger: 0.7 } });
    expect(emulator.connections[0]?.configWarnings).toHaveLength(1);
    expect(log.of('error')).toEqual([]);
  });

  test('EndOfStream after a reconnect names exactly the frames of the new session (replay included)', async () => {
    const { emulator, stream, log } = await setup({ faults: [{ at: { afterAudioMs: 1000 }, action: { type: 'drop' } }] });
    push(stream, spoken('short'));
    await emulator.waitForConnection(1);
    stream.endInput();
    await log.done;
    const second = emulator.connections[1];
    expect(second?.endOfStream).toBe(second?.lastSeqNo);
    expect(second?.audioFrames).toBeGreaterThan(0);
    expect(log.of('error')).toEqual([]);
  });
});

describe('faults', () => {
  test('a wrong key is refused at the upgrade: one fatal auth error, no retry', async () => {
    emulator = await startSpeechmaticsRtEmulator({ apiKey: KEY });
    const stream = await createSpeechmaticsAsr({ apiKey: 'wrong-key-456', url: emulator.url, reconnect: FAST_RETRY }).open(callContext());
    streams.push(stream);
    const log = new EventLog<AsrEvent>(stream.events);
    await log.done;
    expect(log.all).toHaveLength(1);
    const error = log.of('error')[0];
    expect(error).toMatchObject({ fatal: true, error: { category: 'auth', statusCode: 401 } });
    expect(error?.error.message).not.toContain('wrong-key-456');
    expect(emulator.upgrades).toHaveLength(1);
  });

  test('an Error at start (not_authorised) is fatal', async () => {
    const { log } = await setup({ faults: [{ at: 'start', action: { type: 'error', errorType: 'not_authorised' } }] });
    await log.done;
    expect(log.of('error')[0]).toMatchObject({ fatal: true, error: { category: 'auth', providerCode: 'not_authorised' } });
  });

  test('quota_exceeded at start: the retry waits at least 5 s (the docs ask 5-10 s), the audio held meanwhile stays bounded', async () => {
    const { emulator, stream, log, lines } = await setup({ faults: [{ at: 'start', action: { type: 'error', errorType: 'quota_exceeded' } }] }, { maxQueuedMs: 3000 });
    const refused = await emulator.waitForConnection(0);
    await emulator.waitFor(() => refused.closeInfo);
    const refusedAt = Date.now();
    // 6 s of caller audio while waiting: only the newest 3 s (maxQueuedMs) reach the next session.
    push(stream, silence(3700));
    push(stream, spoken('short', 800));
    const second = await emulator.waitForConnection(1, { timeoutMs: 15_000 });
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(5000);
    expect(lines.find((line) => line.msg.includes('reconnecting'))?.['delayMs']).toBeGreaterThanOrEqual(5000);
    await log.until(() => utterances(log).length === 1, 'an utterance after the retry');
    expect(utterances(log)).toEqual([FIXTURE_TEXT['short.wav']]);
    expect(second.audioMs).toBeLessThanOrEqual(3000);
    expect(log.of('error')).toEqual([]);
  }, 20_000);

  test('a dropped session is replaced: audio not final yet is replayed, times stay on the call clock', async () => {
    const { emulator, stream, log } = await setup({ faults: [{ at: { afterAudioMs: 2000 }, action: { type: 'drop' } }] });
    push(stream, spoken('short', 1200));
    await log.until(() => utterances(log).length === 1, 'the first utterance');
    const firstEnd = log.of('final').at(-1)?.endMs ?? 0;
    // The drop hits in the middle of the second utterance.
    push(stream, spoken('greeting'));
    await log.until(() => utterances(log).length === 2, 'the second utterance, after the drop');
    expect(emulator.connections).toHaveLength(2);
    expect(utterances(log)).toEqual([FIXTURE_TEXT['short.wav'], FIXTURE_TEXT['greeting.wav']]);
    const second = log.of('final').at(-1);
    expect(second?.startMs).toBeGreaterThan(firstEnd);
    expect(log.of('error')).toEqual([]);
  });

  test('a malformed frame is one non-fatal protocol error; recognition goes on', async () => {
    const { stream, log } = await setup({ faults: [{ at: { afterAudioMs: 100 }, action: { type: 'malformed' } }] });
    push(stream, spoken('greeting'));
    await log.until(() => utterances(log).length === 1, 'an utterance');
    expect(log.of('error')).toHaveLength(1);
    expect(log.of('error')[0]).toMatchObject({ fatal: false, error: { category: 'protocol' } });
  });

  test('a server that stalls at the end of the stream: a timeout error, and the events end', async () => {
    const { stream, log } = await setup({ faults: [{ at: 'end', action: { type: 'stall' } }] }, { finishTimeoutMs: 300 });
    push(stream, spoken('short', 200));
    stream.endInput();
    await log.done;
    expect(log.of('error').at(-1)).toMatchObject({ fatal: true, error: { category: 'timeout' } });
  });

  test('retries run out: a clear fatal error after the budget', async () => {
    const { emulator, log } = await setup({ faults: [{ at: 'upgrade', action: { type: 'http', status: 503 }, times: 10 }] });
    await log.done;
    expect(log.of('error')[0]).toMatchObject({ fatal: true, error: { category: 'server' } });
    expect(emulator.upgrades.length).toBe(FAST_RETRY.maxAttempts + 1);
  });

  test('close during connect: no connection is left behind', async () => {
    emulator = await startSpeechmaticsRtEmulator({ apiKey: KEY, faults: [{ at: 'start', action: { type: 'stall' } }] });
    const stream = await createSpeechmaticsAsr({ apiKey: KEY, url: emulator.url }).open(callContext());
    const log = new EventLog<AsrEvent>(stream.events);
    await emulator.waitFor(() => emulator?.connections[0]?.startRecognition);
    await stream.close();
    await log.done;
    await emulator.waitFor(() => emulator?.connections[0]?.closeInfo);
    expect(log.all).toEqual([]);
  });
});
