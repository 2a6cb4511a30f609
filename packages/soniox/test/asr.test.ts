import { afterEach, describe, expect, it } from 'vitest';
import type { AsrStream } from '@stsgate/core';
import { FIXTURE_TEXT, chunkPcm, concatPcm, silence, startSonioxSttEmulator } from '@stsgate/testkit';
import type { SonioxSttEmulator, SonioxSttEmulatorOptions } from '@stsgate/testkit';
import { createSonioxAsr } from '../src/index.js';
import type { SonioxAsrOptions } from '../src/index.js';
import { AsrEventLog, FRAME, callContext, memoryLogger, pushFrames, sleep, spoken } from './helpers.js';

const KEY = 'soniox-test-key-0123456789';
const FAST_RECONNECT = { maxAttempts: 2, firstDelayMs: 0, baseDelayMs: 10, maxDelayMs: 50, jitter: 0, stableAfterMs: 30_000 };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emulator(options: Partial<SonioxSttEmulatorOptions> = {}): Promise<SonioxSttEmulator> {
  const stt = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true, ...options });
  cleanups.push(() => stt.close());
  return stt;
}

/** The adapter with Soniox's smallest endpoint delay (500 ms), so the tests' endpoints come quickly. */
async function open(stt: SonioxSttEmulator, options: Partial<SonioxAsrOptions> = {}, call = callContext()): Promise<{ stream: AsrStream; log: AsrEventLog }> {
  const asr = createSonioxAsr({ apiKey: KEY, url: stt.url, reconnect: FAST_RECONNECT, maxEndpointDelayMs: 500, ...options });
  const stream = await asr.open(call);
  cleanups.push(() => stream.close());
  return { stream, log: new AsrEventLog(stream) };
}

describe('Soniox ASR against the emulator (header auth required, as from 2027-01-15)', () => {
  it('authenticates with the Authorization header and sends the documented config without api_key', async () => {
    const stt = await emulator();
    const { stream, log } = await open(stt, { languageHints: ['en', 'it'], maxEndpointDelayMs: 600, contextTerms: ['AVR'] });
    pushFrames(stream, spoken('short'));
    await log.untilUtterances(1);
    const conn = await stt.waitForConnection(0);
    expect(conn.authVia).toBe('header');
    expect(conn.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(conn.rawConfig).toEqual({
      model: 'stt-rt-v5',
      audio_format: 'pcm_s16le',
      sample_rate: 8000,
      num_channels: 1,
      language_hints: ['en', 'it'],
      enable_endpoint_detection: true,
      max_endpoint_delay_ms: 600,
      context: { terms: ['AVR'] },
      client_reference_id: 'call-uuid-1',
    });
  });

  it('sends max_endpoint_delay_ms 1000 unless configured (Soniox waits 2000 without it); refuses values outside 500..3000', async () => {
    const stt = await emulator();
    const stream = await createSonioxAsr({ apiKey: KEY, url: stt.url }).open(callContext());
    cleanups.push(() => stream.close());
    const log = new AsrEventLog(stream);
    // 1.2 s of silence after the words: within 1000 ms, not within Soniox's own 2000 ms.
    pushFrames(stream, spoken('short', 1200));
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['short.wav']]);
    const conn = await stt.waitForConnection(0);
    expect(conn.config?.max_endpoint_delay_ms).toBe(1000);
    expect(conn.utterances.map((u) => u.endedBy)).toEqual(['endpoint']);
    for (const bad of [499, 3001, 750.5]) expect(() => createSonioxAsr({ apiKey: KEY, maxEndpointDelayMs: bad })).toThrow(RangeError);
    expect(() => createSonioxAsr({ apiKey: KEY, maxEndpointDelayMs: 3000 })).not.toThrow();
  });

  it('a fixture in 20 ms frames gives its text as one end_of_utterance, with partials and no control tokens', async () => {
    const stt = await emulator();
    const { stream, log } = await open(stt);
    pushFrames(stream, spoken('greeting'));
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['greeting.wav']]);
    const types = log.all.map((event) => event.type);
    expect(types[0]).toBe('speech_started');
    expect(types).toContain('partial');
    expect(types).toContain('final');
    const finals = log.all.flatMap((event) => (event.type === 'final' ? [event.text] : []));
    expect(finals.join('')).toBe(FIXTURE_TEXT['greeting.wav']);
    for (const event of log.all) if ('text' in event) expect(event.text).not.toMatch(/<end>|<fin>/);
    expect(log.errors()).toEqual([]);
  });

  it('two utterances give two end_of_utterance events', async () => {
    const stt = await emulator();
    const { stream, log } = await open(stt);
    pushFrames(stream, concatPcm(spoken('short'), spoken('question')));
    expect(await log.untilUtterances(2)).toEqual([FIXTURE_TEXT['short.wav'], FIXTURE_TEXT['question.wav']]);
    expect(log.all.filter((event) => event.type === 'speech_started')).toHaveLength(2);
  });

  it('audio pushed before the socket is open is queued and sent, in order, after the config', async () => {
    const stt = await emulator();
    const asr = createSonioxAsr({ apiKey: KEY, url: stt.url, maxEndpointDelayMs: 500 });
    const stream = await asr.open(callContext());
    cleanups.push(() => stream.close());
    const audio = spoken('question');
    // Synchronously after open(): the upgrade cannot have completed yet.
    pushFrames(stream, audio);
    expect(stt.connections).toHaveLength(0);
    const log = new AsrEventLog(stream);
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['question.wav']]);
    const conn = await stt.waitForConnection(0);
    expect(conn.config).toBeDefined();
    // The queue goes out paced (twice real time): the trailing silence may still be on its way.
    await stt.waitFor(() => conn.audioBytes === audio.length * 2);
  });

  it('finalize() makes the ongoing utterance final and ends it (no endpoint needed)', async () => {
    const stt = await emulator();
    const { stream, log } = await open(stt);
    // Speech with only 100 ms of trailing silence: the 500 ms endpoint does not fire.
    pushFrames(stream, concatPcm(silence(200), spoken('short', 100)));
    await log.until(() => log.all.some((event) => event.type === 'partial'), 'a partial');
    stream.finalize();
    stream.finalize(); // coalesced: one request in flight
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['short.wav']]);
    const conn = await stt.waitForConnection(0);
    expect(conn.finalizeCount).toBe(1);
    expect(conn.utterances.map((u) => u.endedBy)).toEqual(['finalize']);
  });

  it('keepalives hold the connection open through silence longer than the idle timeout', async () => {
    const stt = await emulator({ idleTimeoutMs: 1500 });
    const { stream, log } = await open(stt, { keepaliveIntervalMs: 600 });
    pushFrames(stream, spoken('short'));
    await log.untilUtterances(1);
    await sleep(4000); // no audio at all: more than twice the idle timeout
    pushFrames(stream, spoken('question'));
    expect(await log.untilUtterances(2)).toEqual([FIXTURE_TEXT['short.wav'], FIXTURE_TEXT['question.wav']]);
    const conn = await stt.waitForConnection(0);
    expect(conn.keepaliveCount).toBeGreaterThanOrEqual(4);
    expect(conn.closeInfo).toBeUndefined();
    expect(stt.connections).toHaveLength(1);
    expect(log.errors()).toEqual([]);
  });

  it('without keepalives the same silence is closed by the server (408), so the test above can fail', async () => {
    const stt = await emulator({ idleTimeoutMs: 1500 });
    const { stream, log } = await open(stt, { keepaliveIntervalMs: 60_000 });
    pushFrames(stream, spoken('short'));
    await log.untilUtterances(1);
    const conn = await stt.waitForConnection(0);
    const closed = await stt.waitFor(() => conn.closeInfo, { timeoutMs: 5000 });
    expect(closed.by).toBe('server');
    expect(conn.sent).toContainEqual(expect.objectContaining({ error_code: 408 }));
  });

  it('endInput() sends the empty frame, flushes the last words and ends the events after finished', async () => {
    const stt = await emulator();
    const { stream, log } = await open(stt);
    pushFrames(stream, concatPcm(silence(200), spoken('question', 100)));
    stream.endInput();
    stream.pushAudio(silence(20)); // ignored after endInput
    await log.done;
    expect(log.utterances()).toEqual([FIXTURE_TEXT['question.wav']]);
    expect(log.errors()).toEqual([]);
    const conn = await stt.waitForConnection(0);
    expect(conn.endOfAudio).toBe('text');
    expect(conn.sent.at(-1)).toMatchObject({ finished: true });
    expect(conn.utterances.map((u) => u.endedBy)).toEqual(['end']);
  });

  it('a wrong key is a fatal, non-retryable auth ProviderError (no reconnect)', async () => {
    const stt = await emulator();
    const asr = createSonioxAsr({ apiKey: 'wrong-key', url: stt.url, reconnect: FAST_RECONNECT });
    const stream = await asr.open(callContext());
    cleanups.push(() => stream.close());
    const log = new AsrEventLog(stream);
    pushFrames(stream, spoken('short'));
    await log.done;
    const [error] = log.errors();
    expect(error?.fatal).toBe(true);
    expect(error?.error.category).toBe('auth');
    expect(error?.error.retryable).toBe(false);
    expect(error?.error.message).not.toContain('wrong-key');
    expect(stt.connections).toHaveLength(1);
  });

  it('an upgrade refused with HTTP 401 is an auth error too', async () => {
    const stt = await emulator({ faults: [{ at: 'upgrade', action: { type: 'http', status: 401, body: { error_code: 401, error_message: 'Invalid API key.' } } }] });
    const { log } = await open(stt);
    await log.done;
    expect(log.errors().map((e) => [e.error.category, e.fatal])).toEqual([['auth', true]]);
  });

  it('a 503 mid-stream starts a new session: final text is kept, unfinished audio is replayed', async () => {
    const { logger, lines } = memoryLogger('info');
    // The fault hits in the middle of the second utterance (short: ~1.5 s incl. silence; question starts after).
    const stt = await emulator({ faults: [{ at: { afterAudioMs: 2600 }, action: { type: 'error', code: 503 } }] });
    const { stream, log } = await open(stt, {}, callContext({ logger }));
    pushFrames(stream, concatPcm(spoken('short'), spoken('question')));
    expect(await log.untilUtterances(2)).toEqual([FIXTURE_TEXT['short.wav'], FIXTURE_TEXT['question.wav']]);
    expect(stt.connections).toHaveLength(2);
    expect(stt.connections[0]?.sent).toContainEqual(expect.objectContaining({ error_code: 503 }));
    expect(stt.connections[1]?.authVia).toBe('header');
    expect(log.errors()).toEqual([]);
    expect(lines.some((line) => line.msg === 'Soniox connection lost')).toBe(true);
    expect(lines.some((line) => line.msg === 'Soniox session restored')).toBe(true);
  });

  it('a drop in the middle of an utterance loses no words: the utterance is replayed into the new session', async () => {
    const stt = await emulator({ faults: [{ at: { afterAudioMs: 1800 }, action: { type: 'drop' } }] });
    const { stream, log } = await open(stt);
    pushFrames(stream, spoken('greeting'));
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['greeting.wav']]);
    expect(stt.connections).toHaveLength(2);
    expect(stt.connections[0]?.closeInfo?.by).toBe('dropped');
    // The new session got the audio that was not final yet again (more than what followed the drop), then the rest.
    const afterDropBytes = spoken('greeting').length * 2 - 1800 * 16;
    await stt.waitFor(() => (stt.connections[1]?.audioBytes ?? 0) > afterDropBytes + 1000 * 16);
    expect(log.errors()).toEqual([]);
  });

  it('after a reconnect, replayed and queued audio goes out at no more than twice real time (Soniox drops bursts)', async () => {
    // The drop hits inside the greeting: what is not final yet (over a second) is replayed, then the queue.
    const stt = await emulator({ realTimeLimit: { maxFactor: 2.5, allowanceMs: 500 }, faults: [{ at: { afterAudioMs: 1800 }, action: { type: 'drop' } }] });
    const { logger, lines } = memoryLogger('info');
    const { stream, log } = await open(stt, {}, callContext({ logger }));
    const audio = spoken('greeting');
    let sentMs = 0;
    const started = performance.now();
    for (const frame of chunkPcm(audio, FRAME)) {
      stream.pushAudio(frame);
      sentMs += 20;
      const ahead = started + sentMs - performance.now();
      if (ahead > 0) await sleep(ahead);
    }
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['greeting.wav']]);
    expect(stt.connections).toHaveLength(2);
    expect(lines.find((line) => line.msg === 'Soniox session restored')?.['replayMs']).toBeGreaterThan(1000);
    expect(log.errors()).toEqual([]);
  });

  it('audio queued before the first connection is paced the same way', async () => {
    const stt = await emulator({ realTimeLimit: { maxFactor: 2.5, allowanceMs: 500 } });
    const { stream, log } = await open(stt);
    const audio = spoken('question');
    pushFrames(stream, audio);
    const started = performance.now();
    expect(await log.untilUtterances(1)).toEqual([FIXTURE_TEXT['question.wav']]);
    // At twice real time the whole queue takes half its duration to go out.
    await stt.waitFor(() => stt.connections[0]?.audioBytes === audio.length * 2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(audio.length / 8 / 2 - 100);
    expect(log.errors()).toEqual([]);
  });

  it('a drop after the reconnect budget is spent is one fatal error; final text is flushed first', async () => {
    const stt = await emulator({ faults: [{ at: { afterAudioMs: 2600 }, action: { type: 'error', code: 503 } }, { at: 'config', action: { type: 'drop' }, times: 5 }] });
    const { stream, log } = await open(stt);
    pushFrames(stream, concatPcm(spoken('short'), spoken('question')));
    await log.done;
    expect(log.utterances()[0]).toBe(FIXTURE_TEXT['short.wav']);
    const errors = log.errors();
    expect(errors).toHaveLength(1);
    expect(errors[0]?.fatal).toBe(true);
    expect(errors[0]?.error.message).toMatch(/gave up after 2 reconnect attempts/);
    expect(stt.connections).toHaveLength(3);
  });

  it('never logs transcripts above debug level', async () => {
    const { logger, lines } = memoryLogger('info');
    const stt = await emulator();
    const { stream, log } = await open(stt, {}, callContext({ logger }));
    pushFrames(stream, spoken('greeting'));
    await log.untilUtterances(1);
    stream.endInput();
    await log.done;
    expect(JSON.stringify(lines)).not.toContain('appointment');
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });

  it('close() ends the events at once and closes the socket; the call signal does the same', async () => {
    const stt = await emulator();
    const { stream, log } = await open(stt);
    pushFrames(stream, spoken('short'));
    const conn = await stt.waitForConnection(0);
    await stream.close();
    await log.done;
    await stt.waitFor(() => conn.closeInfo);
    expect(conn.closeInfo?.by).toBe('client');

    const abort = new AbortController();
    const second = await open(stt, {}, callContext({ signal: abort.signal }));
    pushFrames(second.stream, spoken('short'));
    const conn2 = await stt.waitForConnection(1);
    abort.abort();
    await second.log.done;
    await stt.waitFor(() => conn2.closeInfo);
    expect(second.log.errors()).toEqual([]);
  });
});
