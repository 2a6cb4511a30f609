import { createSpeechmaticsJWT } from '@speechmatics/auth';
import { RealtimeClient, SpeechmaticsRealtimeError, type RealtimeServerMessage } from '@speechmatics/real-time-client';
import { encodeMulaw } from '@stsgate/core';
import { afterEach, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { tone } from '../../src/emulators/common.js';
import { startSpeechmaticsAuthEmulator, type SpeechmaticsAuthEmulator } from '../../src/emulators/speechmatics-auth.js';
import {
  startSpeechmaticsRtEmulator,
  type SpeechmaticsRtEmulator,
  type SpeechmaticsRtEmulatorOptions,
} from '../../src/emulators/speechmatics-rt.js';
import { FIXTURE_TEXT, fixturePath } from '../../src/fixtures.js';
import { concatPcm, silence } from '../../src/signals.js';
import { encodeWav, readWavAs8k } from '../../src/wav.js';
import { connectRawClient, pcm16Bytes, pcm16Frames, type RawWsClient } from './ws-client.js';

const KEY = 'sm-test-api-key-1234';
const AUTH = { Authorization: `Bearer ${KEY}` };
const RAW_8K = { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 } as const;
const START = { message: 'StartRecognition', audio_format: RAW_8K, transcription_config: { language: 'en' } } as const;

let emulator: SpeechmaticsRtEmulator | undefined;
let auth: SpeechmaticsAuthEmulator | undefined;
afterEach(async () => {
  await emulator?.close();
  await auth?.close();
  emulator = undefined;
  auth = undefined;
});

async function start(options: SpeechmaticsRtEmulatorOptions = {}): Promise<SpeechmaticsRtEmulator> {
  emulator = await startSpeechmaticsRtEmulator({ apiKey: KEY, ...options });
  return emulator;
}

const fixture = (name: 'greeting' | 'short' | 'question', silenceMs = 1000): Int16Array => concatPcm(readWavAs8k(fixturePath(name)), silence(silenceMs));

type Message = Record<string, unknown> & { message?: string };

/** A raw client with header auth by default; the emulator only ever sends text frames. */
function rawClient(url: string, headers: Record<string, string> = AUTH): Promise<RawWsClient<Message>> {
  return connectRawClient<Message>(url, { headers, onBinary: () => expect.fail('binary frame from the emulator') });
}

const messageNames = (client: RawWsClient<Message>): string[] => client.messages.map((message) => String(message.message));

/** Resolves with the HTTP status of a refused upgrade. */
function refusedStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => reject(new Error('upgrade was accepted')));
    ws.on('error', () => undefined);
  });
}

const byName = (messages: readonly Message[], name: string): Message[] => messages.filter((message) => message.message === name);
const transcript = (message: Message | undefined): string => String((message?.metadata as { transcript?: string } | undefined)?.transcript);

describe('Speechmatics RT emulator with the official SDKs', () => {
  test('JWT from @speechmatics/auth, RealtimeClient streams a fixture: acks, partials, final, EndOfUtterance, EndOfTranscript', async () => {
    auth = await startSpeechmaticsAuthEmulator({ apiKey: KEY });
    const authEmulator = auth;
    const rt = await start({ verifyToken: (token) => authEmulator.verify(token, 'rt') });
    const jwt = await createSpeechmaticsJWT({ type: 'rt', apiKey: KEY, managementPlatformURL: auth.baseUrl });
    const client = new RealtimeClient({ url: rt.url, appId: 'stsgate-test', connectionTimeout: 1000 });
    const received: RealtimeServerMessage[] = [];
    const audio = pcm16Frames(fixture('greeting'));
    const allAcked = new Promise<void>((resolve) => {
      client.addEventListener('receiveMessage', ({ data }) => {
        received.push(data);
        if (data.message === 'AudioAdded' && data.seq_no === audio.length) resolve();
      });
    });
    const started = await client.start(jwt, {
      audio_format: RAW_8K,
      transcription_config: { language: 'en', enable_partials: true, max_delay: 1, conversation_config: { end_of_utterance_silence_trigger: 0.5 } },
    });
    expect(started).toMatchObject({ message: 'RecognitionStarted', id: expect.any(String), language_pack_info: { word_delimiter: ' ', language_description: 'English' } });
    for (const frame of audio) client.sendAudio(frame);
    await allAcked;
    await client.stopRecognition();

    const names = received.map((message) => message.message);
    const seqNos = received.flatMap((message) => (message.message === 'AudioAdded' ? [message.seq_no] : []));
    expect(seqNos).toEqual(Array.from({ length: audio.length }, (_, i) => i + 1));
    const finals = received.filter((message) => message.message === 'AddTranscript');
    expect(finals).toHaveLength(1);
    const final = finals[0];
    if (final?.message !== 'AddTranscript') throw new Error('no final');
    expect(final.metadata.transcript).toBe(`${FIXTURE_TEXT['greeting.wav']} `);
    expect(final.format).toBe('2.1');
    const contents = (final.results ?? []).map((result) => result.alternatives?.[0]?.content);
    expect(contents.slice(0, 3)).toEqual(['Hello', ',', 'I']);
    expect(final.results.at(-1)).toMatchObject({ type: 'punctuation', attaches_to: 'previous', is_eos: true });
    const finalAt = names.indexOf('AddTranscript');
    expect(names.slice(0, finalAt)).toContain('AddPartialTranscript');
    expect(names[finalAt + 1]).toBe('AddPartialTranscript');
    const eouAt = names.indexOf('EndOfUtterance');
    expect(eouAt).toBeGreaterThan(finalAt);
    expect(names.filter((name) => name === 'EndOfUtterance')).toHaveLength(1);
    expect(received[eouAt]).toEqual({ message: 'EndOfUtterance', metadata: { start_time: final.metadata.end_time, end_time: final.metadata.end_time } });
    expect(names.at(-1)).toBe('EndOfTranscript');
    expect(names).toContain('Info');

    const conn = rt.connections[0];
    expect(conn?.authVia).toBe('jwt');
    expect(conn?.query).toMatchObject({ jwt, 'sm-app': 'stsgate-test' });
    expect(conn?.appId).toBe('stsgate-test');
    expect(conn?.endOfStream).toBe(audio.length);
    expect(conn?.audioFrames).toBe(audio.length);
    expect(conn?.utterances).toEqual([expect.objectContaining({ text: FIXTURE_TEXT['greeting.wav'], endedBy: 'silence' })]);
    expect(conn?.startRecognition?.transcription_config.conversation_config?.end_of_utterance_silence_trigger).toBe(0.5);
    await rt.waitFor(() => conn?.closeInfo);
    expect(conn?.closeInfo?.by).toBe('client');
  });

  test('RealtimeClient: a start-time Error rejects start() with the error type; a bad jwt is refused', async () => {
    const rt = await start({ verifyToken: (token) => token === 'good-jwt', faults: [{ action: { type: 'error', errorType: 'not_authorised' } }] });
    const config = { audio_format: RAW_8K, transcription_config: { language: 'en' } };
    await expect(new RealtimeClient({ url: rt.url, connectionTimeout: 1000 }).start('good-jwt', config)).rejects.toThrow('not_authorised');
    await rt.waitFor(() => rt.connections[0]?.closeInfo);
    expect(rt.connections[0]?.closeInfo).toEqual({ code: 4001, reason: 'not_authorised', by: 'server' });

    await expect(new RealtimeClient({ url: rt.url, connectionTimeout: 1000 }).start('bad-jwt', config)).rejects.toBeDefined();
    expect(rt.upgrades.at(-1)?.status).toBe(401);
    expect(rt.connections).toHaveLength(1);
  });

  test('RealtimeClient: a stalled start times out', async () => {
    const rt = await start({ faults: [{ at: 'start', action: { type: 'stall' } }] });
    const client = new RealtimeClient({ url: rt.url, connectionTimeout: 300 });
    await expect(client.start('any-jwt', { audio_format: RAW_8K, transcription_config: { language: 'en' } })).rejects.toBeInstanceOf(SpeechmaticsRealtimeError);
    expect(rt.connections[0]?.stalled).toBe(true);
    expect(rt.connections[0]?.sent).toEqual([]);
  });
});

describe('Speechmatics RT emulator over raw ws', () => {
  test('header auth; handshake refusals', async () => {
    const rt = await start();
    const client = await rawClient(rt.url);
    client.send(START);
    await client.waitForMessage((message) => message.message === 'RecognitionStarted');
    expect(rt.connections[0]?.authVia).toBe('header');
    expect(client.messages[1]).toMatchObject({ message: 'Info', type: 'recognition_quality', quality: 'telephony' });
    client.ws.close();

    expect(await refusedStatus(rt.url, { Authorization: 'Bearer wrong' })).toBe(401);
    expect(await refusedStatus(rt.url)).toBe(401);
    expect(await refusedStatus(`${rt.url}?jwt=`)).toBe(401);
    expect(await refusedStatus(rt.url.replace('/v2', '/v1'), AUTH)).toBe(404);
    expect(rt.upgrades.map((upgrade) => upgrade.status)).toEqual([101, 401, 401, 401, 404]);
    expect(rt.connections).toHaveLength(1);

    // Any non-empty jwt by default; `?jwt=` wins over the header.
    const viaJwt = await rawClient(`${rt.url}?jwt=whatever&sm-app=raw`, {});
    viaJwt.send(START);
    await viaJwt.waitForMessage((message) => message.message === 'RecognitionStarted');
    expect(rt.connections[1]).toMatchObject({ authVia: 'jwt', appId: 'raw' });
    viaJwt.ws.close();
  });

  test('invalid StartRecognition: Error type and close code', async () => {
    const rt = await start();
    const base = START.transcription_config;
    const cases: [Record<string, unknown>, string, number, RegExp][] = [
      [{ message: 'StartRecognition', transcription_config: base }, 'invalid_audio_type', 1003, /audio_format/],
      [{ ...START, audio_format: { type: 'raw', encoding: 'pcm_s24le', sample_rate: 8000 } }, 'invalid_audio_type', 1003, /encoding/],
      [{ ...START, audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000.5 } }, 'invalid_audio_type', 1003, /sample_rate/],
      [{ ...START, transcription_config: { ...base, model: 'ultra' } }, 'invalid_model', 4004, /model/],
      [{ ...START, transcription_config: { ...base, operating_point: 'fast' } }, 'invalid_model', 4004, /operating_point/],
      [{ ...START, transcription_config: { ...base, language: 'xx' } }, 'invalid_language', 1003, /xx/],
      [{ ...START, transcription_config: {} }, 'invalid_config', 1003, /language/],
      [{ ...START, transcription_config: { ...base, max_delay: 0.5 } }, 'invalid_config', 1003, /max_delay/],
      [{ ...START, transcription_config: { ...base, diarization: 'yes' } }, 'invalid_config', 1003, /diarization/],
      [{ ...START, transcription_config: { ...base, conversation_config: { end_of_utterance_silence_trigger: 3 } } }, 'invalid_config', 1003, /end_of_utterance/],
      [{ ...START, transcription_config: { ...base, additional_vocab: [{ sounds_like: ['x'] }] } }, 'invalid_config', 1003, /additional_vocab/],
      [{ ...START, transcription_config: { ...base, surprise: 1 } }, 'invalid_config', 1003, /surprise/],
      [{ ...START, surprise: 1 }, 'invalid_config', 1003, /surprise/],
    ];
    for (const [message, type, code, reason] of cases) {
      const client = await rawClient(rt.url);
      client.send(message);
      const closed = await client.closed;
      expect([client.messages, closed]).toEqual([[{ message: 'Error', type, reason: expect.stringMatching(reason) }], { code, reason: type }]);
    }
    // Everything the spec allows is accepted.
    const full = await rawClient(rt.url);
    full.send({
      message: 'StartRecognition',
      audio_format: { type: 'raw', encoding: 'mulaw', sample_rate: 8000 },
      transcription_config: {
        language: 'en',
        model: 'enhanced',
        domain: 'finance',
        output_locale: 'en-US',
        additional_vocab: ['AVR', { content: 'Asterisk', sounds_like: ['as ter isk'] }],
        diarization: 'speaker',
        max_delay: 0.7,
        max_delay_mode: 'fixed',
        enable_partials: true,
        enable_entities: false,
        punctuation_overrides: { permitted_marks: ['.', ','], sensitivity: 0.4 },
        audio_filtering_config: { volume_threshold: 3 },
        transcript_filtering_config: { remove_disfluencies: true, replacements: [{ from: 'a', to: 'b' }] },
        speaker_diarization_config: { max_speakers: 2, prefer_current_speaker: true, speaker_sensitivity: 0.5 },
        conversation_config: { end_of_utterance_silence_trigger: 0 },
      },
      translation_config: { target_languages: ['de'] },
      audio_events_config: { types: ['music'] },
    });
    await full.waitForMessage((message) => message.message === 'RecognitionStarted');
    const encoded = Buffer.from(encodeMulaw(fixture('short')));
    for (let i = 0; i < encoded.length; i += 160) full.ws.send(encoded.subarray(i, i + 160));
    const final = await full.waitForMessage((message) => message.message === 'AddTranscript');
    expect(transcript(final)).toBe(`${FIXTURE_TEXT['short.wav']} `);
    expect((final.results as { alternatives: { speaker?: string }[] }[])[0]?.alternatives[0]?.speaker).toBe('S1');
    // No end_of_utterance_silence_trigger: no EndOfUtterance.
    full.send({ message: 'EndOfStream', last_seq_no: 1 });
    await full.waitForMessage((message) => message.message === 'EndOfTranscript');
    expect(messageNames(full)).not.toContain('EndOfUtterance');
    full.ws.close();
  });

  test('end_of_utterance_silence_trigger not below max_delay: accepted (the docs only advise against it) and noted', async () => {
    const rt = await start();
    const base = START.transcription_config;
    const configs: [Record<string, unknown>, number][] = [
      [{ ...base, max_delay: 0.7, conversation_config: { end_of_utterance_silence_trigger: 1 } }, 1],
      // max_delay unset: the service's default of 4 s.
      [{ ...base, conversation_config: { end_of_utterance_silence_trigger: 2 } }, 0],
      [{ ...base, max_delay: 0.7, conversation_config: { end_of_utterance_silence_trigger: 0 } }, 0],
      [{ ...base, max_delay: 1, conversation_config: { end_of_utterance_silence_trigger: 0.5 } }, 0],
    ];
    for (const [index, [config, warnings]] of configs.entries()) {
      const client = await rawClient(rt.url);
      client.send({ ...START, transcription_config: config });
      await client.waitForMessage((message) => message.message === 'RecognitionStarted');
      const connection = await rt.waitForConnection(index);
      expect(connection.configWarnings).toHaveLength(warnings);
      client.ws.close();
    }
    expect(rt.connections[0]?.configWarnings[0]).toMatch(/end_of_utterance_silence_trigger \(1 s\) is not below max_delay \(0\.7 s\)/);
    // SetRecognitionConfig is checked against the config in force.
    const client = await rawClient(rt.url);
    client.send({ ...START, transcription_config: { ...base, conversation_config: { end_of_utterance_silence_trigger: 0.9 } } });
    client.send({ message: 'SetRecognitionConfig', transcription_config: { max_delay: 0.8 } });
    client.send({ message: 'GetSpeakers' });
    await client.waitForMessage((message) => message.message === 'SpeakersResult');
    expect(rt.connections[4]?.configWarnings).toEqual([expect.stringMatching(/0\.9 s.*max_delay \(0\.8 s\)/)]);
    client.ws.close();
  });

  test('ForceEndOfUtterance: forced AddTranscript then forced EndOfUtterance, even with nothing pending', async () => {
    const rt = await start();
    const client = await rawClient(rt.url);
    client.send({ ...START, transcription_config: { language: 'en', conversation_config: { end_of_utterance_silence_trigger: 0.8 } } });
    for (const frame of pcm16Frames(readWavAs8k(fixturePath('question')))) client.ws.send(frame);
    client.send({ message: 'ForceEndOfUtterance' });
    await client.waitForMessage((message) => message.message === 'EndOfUtterance');
    const names = messageNames(client).filter((name) => name !== 'AudioAdded');
    expect(names).toEqual(['RecognitionStarted', 'Info', 'AddTranscript', 'EndOfUtterance']);
    const [final, eou] = [byName(client.messages, 'AddTranscript')[0], byName(client.messages, 'EndOfUtterance')[0]];
    expect(final).toMatchObject({ forced: true });
    expect(transcript(final)).toBe(`${FIXTURE_TEXT['question.wav']} `);
    expect(eou).toMatchObject({ forced: true, metadata: { end_time: (final?.metadata as { end_time: number }).end_time } });
    expect(rt.connections[0]?.utterances[0]?.endedBy).toBe('forced');

    // Silence after a forced end gives no second EndOfUtterance; a force with nothing pending is answered anyway.
    for (const frame of pcm16Frames(silence(1500))) client.ws.send(frame);
    client.send({ message: 'ForceEndOfUtterance', channel: 'ignored', timestamp: 3.2 });
    await client.waitForMessage((message) => message.message === 'EndOfUtterance' && message !== eou);
    const finals = byName(client.messages, 'AddTranscript');
    expect(finals).toHaveLength(2);
    expect(finals[1]).toMatchObject({ forced: true, results: [], metadata: { transcript: '' } });
    expect(byName(client.messages, 'EndOfUtterance')).toHaveLength(2);
    client.ws.close();
  });

  test('two utterances with partials: final, empty partial, EndOfUtterance each; two connections keep their own text', async () => {
    const rt = await start();
    const config = { ...START, transcription_config: { language: 'en', enable_partials: true, conversation_config: { end_of_utterance_silence_trigger: 0.6 } } };
    const a = await rawClient(rt.url);
    const b = await rawClient(rt.url);
    a.send(config);
    b.send(config);
    const audioA = pcm16Frames(concatPcm(fixture('short', 1200), fixture('question', 1200)));
    const audioB = pcm16Frames(fixture('greeting', 1200));
    for (let i = 0; i < Math.max(audioA.length, audioB.length); i++) {
      const frameA = audioA[i];
      const frameB = audioB[i];
      if (frameA !== undefined) a.ws.send(frameA);
      if (frameB !== undefined) b.ws.send(frameB);
    }
    a.send({ message: 'EndOfStream', last_seq_no: audioA.length });
    b.send({ message: 'EndOfStream', last_seq_no: audioB.length });
    await Promise.all([a.waitForMessage((m) => m.message === 'EndOfTranscript'), b.waitForMessage((m) => m.message === 'EndOfTranscript')]);

    expect(byName(a.messages, 'AddTranscript').map(transcript)).toEqual([`${FIXTURE_TEXT['short.wav']} `, `${FIXTURE_TEXT['question.wav']} `]);
    expect(byName(b.messages, 'AddTranscript').map(transcript)).toEqual([`${FIXTURE_TEXT['greeting.wav']} `]);
    const flow = messageNames(a).filter((name) => name === 'AddTranscript' || name === 'EndOfUtterance' || name === 'EndOfTranscript');
    expect(flow).toEqual(['AddTranscript', 'EndOfUtterance', 'AddTranscript', 'EndOfUtterance', 'EndOfTranscript']);
    // Each final is followed by an empty partial.
    for (const [index, message] of a.messages.entries()) {
      if (message.message === 'AddTranscript') expect(a.messages[index + 1]).toMatchObject({ message: 'AddPartialTranscript', results: [], metadata: { transcript: '' } });
    }
    // Partials reveal words progressively and stay a prefix of the final text.
    const partials = byName(b.messages, 'AddPartialTranscript').map(transcript).filter((text) => text.length > 0);
    expect(partials.length).toBeGreaterThan(3);
    expect(partials.at(-1)?.trim()).toBe(FIXTURE_TEXT['greeting.wav']);
    expect(new Set(partials.map((text) => text.split(' ').length)).size).toBeGreaterThan(1);
    const seqNos = byName(a.messages, 'AudioAdded').map((message) => message.seq_no);
    expect(seqNos).toEqual(Array.from({ length: audioA.length }, (_, i) => i + 1));
    expect(rt.connections.map((conn) => conn.finalTranscript())).toEqual([
      `${FIXTURE_TEXT['short.wav']} ${FIXTURE_TEXT['question.wav']} `,
      `${FIXTURE_TEXT['greeting.wav']} `,
    ]);
  });

  test('pcm_f32le at 16 kHz and a WAV file stream are decoded; raw PCM declared as a file is invalid_audio_type', async () => {
    const rt = await start();
    const pcm8k = fixture('question');
    const f32 = Buffer.alloc(pcm8k.length * 2 * 4);
    pcm8k.forEach((sample, i) => {
      f32.writeFloatLE(sample / 32768, i * 8);
      f32.writeFloatLE(sample / 32768, i * 8 + 4);
    });
    const floatClient = await rawClient(rt.url);
    floatClient.send({ ...START, audio_format: { type: 'raw', encoding: 'pcm_f32le', sample_rate: 16000 } });
    for (let i = 0; i < f32.length; i += 1280) floatClient.ws.send(f32.subarray(i, i + 1280));
    expect(transcript(await floatClient.waitForMessage((message) => message.message === 'AddTranscript'))).toBe(`${FIXTURE_TEXT['question.wav']} `);
    expect(floatClient.messages).toContainEqual(expect.objectContaining({ message: 'Info', quality: 'broadcast' }));
    expect(rt.connections[0]?.audioMs).toBeCloseTo(pcm8k.length / 8, 0);
    floatClient.ws.close();

    const wav = encodeWav(fixture('short'), 8000);
    const fileClient = await rawClient(rt.url);
    fileClient.send({ ...START, audio_format: { type: 'file' } });
    for (let i = 0; i < wav.length; i += 300) fileClient.ws.send(wav.subarray(i, i + 300));
    expect(transcript(await fileClient.waitForMessage((message) => message.message === 'AddTranscript'))).toBe(`${FIXTURE_TEXT['short.wav']} `);
    fileClient.ws.close();

    const wrong = await rawClient(rt.url);
    wrong.send({ ...START, audio_format: { type: 'file' } });
    for (const frame of pcm16Frames(fixture('short')).slice(0, 3)) wrong.ws.send(frame);
    expect(await wrong.closed).toEqual({ code: 1003, reason: 'invalid_audio_type' });
    expect(byName(wrong.messages, 'Error')[0]).toMatchObject({ type: 'invalid_audio_type' });
  });

  test('SetRecognitionConfig is validated and applied; GetSpeakers answers', async () => {
    const rt = await start();
    const client = await rawClient(rt.url);
    client.send(START);
    client.send({ message: 'SetRecognitionConfig', transcription_config: { enable_partials: true, max_delay: 2, conversation_config: { end_of_utterance_silence_trigger: 0.4 } } });
    client.send({ message: 'GetSpeakers', final: false });
    await client.waitForMessage((message) => message.message === 'SpeakersResult');
    expect(rt.connections[0]?.transcriptionConfig).toMatchObject({ language: 'en', enable_partials: true, max_delay: 2 });
    for (const frame of pcm16Frames(fixture('short'))) client.ws.send(frame);
    await client.waitForMessage((message) => message.message === 'EndOfUtterance');
    expect(messageNames(client)).toContain('AddPartialTranscript');
    client.send({ message: 'SetRecognitionConfig', transcription_config: { diarization: 'speaker' } });
    expect(await client.closed).toEqual({ code: 1003, reason: 'invalid_config' });

    const other = await rawClient(rt.url);
    other.send(START);
    other.send({ message: 'SetRecognitionConfig', transcription_config: { language: 'de' } });
    expect(await other.closed).toEqual({ code: 1003, reason: 'invalid_config' });
  });

  test('EndOfStream: EndOfTranscript, Warning for late audio, close 1000 after the grace', async () => {
    const rt = await start({ endGraceMs: 100 });
    const client = await rawClient(rt.url);
    client.send(START);
    for (const frame of pcm16Frames(readWavAs8k(fixturePath('short')))) client.ws.send(frame);
    client.send({ message: 'EndOfStream', last_seq_no: 3 });
    client.ws.send(pcm16Bytes(silence(20)));
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    const names = messageNames(client);
    expect(names.slice(-3)).toEqual(['AddTranscript', 'EndOfTranscript', 'Warning']);
    expect(client.messages.at(-1)).toMatchObject({ type: 'add_audio_after_eos' });
    expect(rt.connections[0]).toMatchObject({ endOfStream: 3, closeInfo: { code: 1000, by: 'server' } });
    expect(rt.connections[0]?.utterances[0]?.endedBy).toBe('end');
  });

  test('idle timeout: three warnings, then Error idle_timeout and close 1008', async () => {
    const rt = await start({ idleTimeoutMs: 240 });
    const client = await rawClient(rt.url);
    client.send(START);
    expect(await client.closed).toEqual({ code: 1008, reason: 'idle_timeout' });
    expect(byName(client.messages, 'Warning').map((message) => message.type)).toEqual(['idle_timeout', 'idle_timeout', 'idle_timeout']);
    expect(byName(client.messages, 'Error')).toEqual([{ message: 'Error', type: 'idle_timeout', reason: expect.stringMatching(/inactivity/) }]);
    expect(rt.connections[0]?.closeInfo?.by).toBe('server');
  });

  test('garbage never crashes the emulator', async () => {
    const rt = await start();
    const expectError = async (send: (client: RawWsClient<Message>) => void, type: string, code: number): Promise<void> => {
      const client = await rawClient(rt.url);
      send(client);
      expect(await client.closed).toEqual({ code, reason: type });
      expect(byName(client.messages, 'Error')).toEqual([expect.objectContaining({ type })]);
    };
    await expectError((client) => client.ws.send(Buffer.from([1, 2, 3])), 'protocol_error', 1003);
    await expectError((client) => client.send('{not json'), 'invalid_message', 1003);
    await expectError((client) => client.send('[1,2]'), 'invalid_message', 1003);
    await expectError((client) => client.send({ message: 'EndOfStream', last_seq_no: 0 }), 'protocol_error', 1003);
    await expectError((client) => client.send({ nothing: true }), 'invalid_message', 1003);
    await expectError((client) => client.send(''), 'invalid_message', 1003);
    await expectError((client) => [START, { message: 'Bogus' }].forEach((message) => client.send(message)), 'invalid_message', 1003);
    await expectError((client) => [START, START].forEach((message) => client.send(message)), 'protocol_error', 1003);
    await expectError((client) => [START, { message: 'EndOfStream' }].forEach((message) => client.send(message)), 'invalid_message', 1003);
    await expectError((client) => [START, { message: 'AddChannelAudio', channel: '1', data: '' }].forEach((message) => client.send(message)), 'not_allowed', 4003);
    await expectError((client) => [START, '\u0000\u0001'].forEach((message) => client.send(message)), 'invalid_message', 1003);
    // Odd byte counts and empty frames are fine.
    const client = await rawClient(rt.url);
    client.send(START);
    client.ws.send(Buffer.from([1, 2, 3]));
    client.ws.send(Buffer.alloc(0));
    client.ws.send(Buffer.from([4]));
    await client.waitForMessage((message) => message.message === 'AudioAdded' && message.seq_no === 3);
    expect(rt.connections.at(-1)?.audioBytes).toBe(4);
    client.ws.close();
    const last = await rawClient(rt.url);
    last.send(START);
    await last.waitForMessage((message) => message.message === 'RecognitionStarted');
    last.ws.close();
  });

  test('a failure inside the emulator (a throwing recogniser) is Error unknown_error + close 1011', async () => {
    const rt = await start({
      recognize: () => {
        throw new Error('boom');
      },
    });
    const client = await rawClient(rt.url);
    client.send(START);
    for (const frame of pcm16Frames(fixture('short'))) client.ws.send(frame);
    expect(await client.closed).toEqual({ code: 1011, reason: 'unknown_error' });
    expect(byName(client.messages, 'Error')).toEqual([expect.objectContaining({ type: 'unknown_error' })]);
    const next = await rawClient(rt.url);
    next.send(START);
    await next.waitForMessage((message) => message.message === 'RecognitionStarted');
    next.ws.close();
  });
});

describe('Speechmatics RT emulator: session limits and strictness', () => {
  test('additional_vocab delays RecognitionStarted by vocabStartDelayMs; anything sent before it is a protocol_error; no vocabulary, no delay', async () => {
    const rt = await start({ vocabStartDelayMs: 200 });
    const withVocab = { ...START, transcription_config: { language: 'en', additional_vocab: ['AVR'] } };
    const audio = pcm16Frames(fixture('short'));

    const eager = await rawClient(rt.url);
    eager.send(withVocab);
    eager.ws.send(audio[0] as Buffer);
    expect(await eager.closed).toEqual({ code: 1003, reason: 'protocol_error' });
    expect(eager.messages).toEqual([{ message: 'Error', type: 'protocol_error', reason: expect.stringMatching(/before RecognitionStarted/) }]);

    const patient = await rawClient(rt.url);
    patient.send(withVocab);
    await patient.waitForMessage((message) => message.message === 'RecognitionStarted');
    expect(patient.messages[0]?.message).toBe('RecognitionStarted');
    for (const frame of audio) patient.ws.send(frame);
    const final = await patient.waitForMessage((message) => message.message === 'AddTranscript');
    expect(transcript(final)).toBe(`${FIXTURE_TEXT['short.wav']} `);
    patient.ws.close();

    // Without a vocabulary RecognitionStarted goes out at once: audio right behind StartRecognition is fine.
    const plain = await rawClient(rt.url);
    plain.send(START);
    plain.ws.send(audio[0] as Buffer);
    await plain.waitForMessage((message) => message.message === 'AudioAdded' && message.seq_no === 1);
    expect(byName(plain.messages, 'Error')).toEqual([]);
    plain.ws.close();
  });

  test('quiet limit (limits.mdx: no audio or ping/pongs for 3 minutes): a silent client gets idle_timeout + 1008, a pinging one stays', async () => {
    const rt = await start({ quietTimeoutMs: 150 });
    const silent = await rawClient(rt.url);
    silent.send(START);
    expect(await silent.closed).toEqual({ code: 1008, reason: 'idle_timeout' });
    expect(byName(silent.messages, 'Error')).toEqual([{ message: 'Error', type: 'idle_timeout', reason: expect.stringMatching(/ping\/pong/) }]);

    const pinging = await rawClient(rt.url);
    pinging.send(START);
    let pongs = 0;
    const tenPongs = new Promise<void>((resolve) => {
      pinging.ws.on('pong', () => {
        if (++pongs === 10) resolve();
      });
    });
    // Ten pings 40 ms apart span well over the 150 ms limit.
    const timer = setInterval(() => pinging.ws.ping(), 40);
    try {
      await tenPongs;
    } finally {
      clearInterval(timer);
    }
    expect(rt.connections[1]?.pingsReceived).toBeGreaterThanOrEqual(10);
    expect(pinging.ws.readyState).toBe(WebSocket.OPEN);
    expect(rt.connections[1]?.closeInfo).toBeUndefined();
    expect(byName(pinging.messages, 'Error')).toEqual([]);
    pinging.ws.close();
  });

  test('duration_limit fault: Warning with duration_limit, the finals, EndOfTranscript, then audio is acked but ignored and the socket stays open', async () => {
    const rt = await start({ faults: [{ at: { afterAudioMs: 1000 }, action: { type: 'duration_limit', durationLimit: 1 } }] });
    const client = await rawClient(rt.url);
    client.send({ ...START, transcription_config: { language: 'en', enable_partials: true } });
    await client.waitForMessage((message) => message.message === 'RecognitionStarted');
    const first = pcm16Frames(concatPcm(silence(200), readWavAs8k(fixturePath('greeting'))));
    for (const frame of first) client.ws.send(frame);
    await client.waitForMessage((message) => message.message === 'EndOfTranscript');
    const names = messageNames(client);
    const warningAt = names.indexOf('Warning');
    expect(client.messages[warningAt]).toEqual({ message: 'Warning', type: 'duration_limit_exceeded', reason: expect.any(String), duration_limit: 1 });
    expect(names.indexOf('AddTranscript')).toBeGreaterThan(warningAt);
    expect(names.indexOf('EndOfTranscript')).toBeGreaterThan(names.indexOf('AddTranscript'));
    const conn = rt.connections[0];
    expect(conn?.suspended).toBe(true);
    expect(conn?.utterances.at(-1)?.endedBy).toBe('limit');
    // Suspended: more speech is acknowledged and nothing else comes of it.
    const sentBefore = client.messages.length;
    const more = pcm16Frames(fixture('short'));
    for (const frame of more) client.ws.send(frame);
    await client.waitForMessage((message) => message.message === 'AudioAdded' && message.seq_no === first.length + more.length);
    expect(new Set(messageNames(client).slice(sentBefore))).toEqual(new Set(['AudioAdded']));
    expect(conn?.closeInfo).toBeUndefined();
    client.ws.close();
    await rt.waitFor(() => conn?.closeInfo);
    expect(conn?.closeInfo?.by).toBe('client');
  });

  test('EndOfStream: a last_seq_no beyond the audio received is a protocol_error; a lower one (the SDK sends the last ack it saw) is accepted', async () => {
    const rt = await start();
    const audio = pcm16Frames(fixture('short')).slice(0, 3);
    const over = await rawClient(rt.url);
    over.send(START);
    for (const frame of audio) over.ws.send(frame);
    await over.waitForMessage((message) => message.message === 'AudioAdded' && message.seq_no === 3);
    over.send({ message: 'EndOfStream', last_seq_no: 4 });
    expect(await over.closed).toEqual({ code: 1003, reason: 'protocol_error' });
    expect(byName(over.messages, 'Error')).toEqual([{ message: 'Error', type: 'protocol_error', reason: expect.stringMatching(/last_seq_no 4 .*seq_no 3/) }]);
    expect(rt.connections[0]?.endOfStream).toBe(4);

    const lagging = await rawClient(rt.url);
    lagging.send(START);
    for (const frame of audio) lagging.ws.send(frame);
    lagging.send({ message: 'EndOfStream', last_seq_no: 2 });
    await lagging.waitForMessage((message) => message.message === 'EndOfTranscript');
    expect(byName(lagging.messages, 'Error')).toEqual([]);
    expect(rt.connections[1]).toMatchObject({ endOfStream: 2, lastSeqNo: 3 });
    lagging.ws.close();
  });
});

describe('Speechmatics RT emulator faults', () => {
  test('upgrade faults: http status and dropped socket; failed auth does not consume a fault', async () => {
    const rt = await start({ faults: [{ at: 'upgrade', action: { type: 'http', status: 503 } }] });
    expect(await refusedStatus(rt.url, { Authorization: 'Bearer wrong' })).toBe(401);
    expect(await refusedStatus(rt.url, AUTH)).toBe(503);
    rt.queueFault({ at: 'upgrade', action: { type: 'drop' } });
    const error = await new Promise<Error>((resolve) => {
      const ws = new WebSocket(rt.url, { headers: AUTH });
      ws.on('error', resolve);
    });
    expect(error.message).toMatch(/socket hang up|ECONNRESET/);
    expect(rt.upgrades.map((upgrade) => upgrade.status)).toEqual([401, 503, 0]);
    expect(rt.connections).toHaveLength(0);
  });

  test('start faults: error with its close code, info and malformed before RecognitionStarted', async () => {
    const rt = await start({
      faults: [
        { action: { type: 'error', errorType: 'quota_exceeded' } },
        { at: 'start', action: { type: 'info', infoType: 'concurrent_session_usage', fields: { usage: 3, quota: 2 } } },
        { action: { type: 'malformed' } },
        { action: { type: 'error', errorType: 'job_error', reason: 'busy', closeCode: 1011 } },
      ],
    });
    const quota = await rawClient(rt.url);
    quota.send(START);
    expect(await quota.closed).toEqual({ code: 4005, reason: 'quota_exceeded' });
    expect(quota.messages).toEqual([{ message: 'Error', type: 'quota_exceeded', reason: expect.any(String) }]);

    const info = await rawClient(rt.url);
    info.send(START);
    await info.waitForMessage((message) => message.message === 'RecognitionStarted');
    expect(info.messages[0]).toEqual({ message: 'Info', type: 'concurrent_session_usage', reason: expect.any(String), usage: 3, quota: 2 });
    info.ws.close();

    const malformed = await rawClient(rt.url);
    malformed.send(START);
    await malformed.waitForMessage((message) => message.message === 'RecognitionStarted');
    expect(malformed.frames[0]).toEqual({ kind: 'text', text: expect.stringMatching(/^\{"message":"AddTranscript"/), at: expect.any(Number) });
    malformed.ws.close();

    const custom = await rawClient(rt.url);
    custom.send(START);
    expect(await custom.closed).toEqual({ code: 1011, reason: 'job_error' });
    expect(custom.messages).toEqual([{ message: 'Error', type: 'job_error', reason: 'busy' }]);
  });

  test('afterAudioMs: warning keeps going, drop, stall, close; end: error', async () => {
    const rt = await start({
      faults: [
        { at: { afterAudioMs: 200 }, action: { type: 'warning', warningType: 'duration_limit_exceeded' } },
        { at: { afterAudioMs: 200 }, action: { type: 'drop' } },
        { at: { afterAudioMs: 200 }, action: { type: 'stall' } },
        { at: { afterAudioMs: 200 }, action: { type: 'close', code: 4013, reason: 'job_error' } },
        { at: 'end', action: { type: 'error', errorType: 'job_error' } },
      ],
    });
    const audio = pcm16Frames(tone(600, 8000));

    const warned = await rawClient(rt.url);
    warned.send(START);
    for (const frame of audio) warned.ws.send(frame);
    await warned.waitForMessage((message) => message.message === 'AudioAdded' && message.seq_no === audio.length);
    const warningAt = warned.messages.findIndex((message) => message.message === 'Warning');
    expect(warned.messages[warningAt]).toMatchObject({ type: 'duration_limit_exceeded' });
    expect(warned.messages[warningAt - 1]).toEqual({ message: 'AudioAdded', seq_no: 10 });
    warned.ws.close();

    const dropped = await rawClient(rt.url);
    dropped.send(START);
    for (const frame of audio) dropped.ws.send(frame);
    expect((await dropped.closed).code).toBe(1006);
    expect(rt.connections[1]?.closeInfo?.by).toBe('dropped');

    const stalled = await rawClient(rt.url);
    stalled.send(START);
    for (const frame of audio) stalled.ws.send(frame);
    await rt.waitFor(() => rt.connections[2]?.stalled);
    stalled.send({ message: 'EndOfStream', last_seq_no: audio.length });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(byName(stalled.messages, 'AudioAdded').at(-1)).toEqual({ message: 'AudioAdded', seq_no: 10 });
    expect(messageNames(stalled)).not.toContain('EndOfTranscript');
    expect(stalled.ws.readyState).toBe(WebSocket.OPEN);
    stalled.ws.close();

    const closed = await rawClient(rt.url);
    closed.send(START);
    for (const frame of audio) closed.ws.send(frame);
    expect(await closed.closed).toEqual({ code: 4013, reason: 'job_error' });

    const ended = await rawClient(rt.url);
    ended.send(START);
    ended.send({ message: 'EndOfStream', last_seq_no: 0 });
    expect(await ended.closed).toEqual({ code: 4013, reason: 'job_error' });
    expect(messageNames(ended)).not.toContain('EndOfTranscript');
  });

  test('applyFault and close() on a live connection', async () => {
    const rt = await start();
    const client = await rawClient(rt.url);
    client.send(START);
    const conn = await rt.waitForConnection();
    await client.waitForMessage((message) => message.message === 'RecognitionStarted');
    conn.applyFault({ type: 'warning', warningType: 'session_timeout', reason: 'soon' });
    await client.waitForMessage((message) => message.message === 'Warning');
    conn.close(4006, 'timelimit_exceeded');
    expect(await client.closed).toEqual({ code: 4006, reason: 'timelimit_exceeded' });
    expect(conn.closeInfo).toEqual({ code: 4006, reason: 'timelimit_exceeded', by: 'server' });
  });
});
