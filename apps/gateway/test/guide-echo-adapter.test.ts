// The example of docs/adapter-guide.md: a complete STS adapter ("echo": each caller utterance played back, turns
// found by energy), and the conformance suite it passes. A real adapter talks to a provider in connect().
import { z } from 'zod';
import { describeStsConformance } from '@stsgate/testkit/conformance';
import { AsyncQueue, ProviderError, defineAdapter, envInt, type StsAdapter, type StsEvent, type StsSession } from '@stsgate/core';

const RATE = 8000;
const LOUD = 500; // mean absolute amplitude of a speech frame

function createEchoSession(silenceMs: number, signal: AbortSignal): StsSession {
  const events = new AsyncQueue<StsEvent>();
  let utterance: Int16Array[] = [];
  let quietSamples = 0;
  let replies = 0;
  const close = async () => events.end();
  signal.addEventListener('abort', () => void close(), { once: true });
  return {
    inputSampleRate: RATE,
    outputSampleRate: RATE,
    events,
    sendAudio(samples) {
      if (samples.length === 0) return;
      const loud = samples.reduce((sum, s) => sum + Math.abs(s), 0) / samples.length > LOUD;
      if (utterance.length === 0 && !loud) return;
      if (utterance.length === 0) events.push({ type: 'speech_started' });
      utterance.push(samples.slice());
      quietSamples = loud ? 0 : quietSamples + samples.length;
      if (quietSamples < (silenceMs * RATE) / 1000) return;
      // End of the turn: play the utterance back as one reply.
      events.push({ type: 'speech_stopped' });
      const responseId = `echo-${++replies}`;
      for (const part of utterance) events.push({ type: 'audio', responseId, samples: part });
      events.push({ type: 'response_done', responseId });
      utterance = [];
    },
    sendDtmf: () => undefined,
    truncate: () => undefined,
    submitToolResult: () => undefined,
    close,
  };
}

export function createEchoSts(silenceMs = 500): StsAdapter {
  return {
    id: 'echo',
    capabilities: {
      inputSampleRates: [RATE],
      outputSampleRates: [RATE],
      encodings: ['pcm_s16le'],
      serverTurnDetection: true,
      userTranscripts: false,
      agentTranscripts: false,
      truncation: false,
      toolCalls: false,
      dtmf: false,
    },
    async connect(call) {
      if (call.signal.aborted) throw new ProviderError('echo', 'closed', 'the call ended before the session opened');
      return createEchoSession(silenceMs, call.signal);
    },
  };
}

/** STS_PROVIDER=echo; ECHO_SILENCE_MS ends a turn. */
export const adapters = [
  defineAdapter({
    kind: 'sts',
    id: 'echo',
    description: 'Plays each caller utterance back',
    defaultPort: 6077,
    envSchema: z.object({ ECHO_SILENCE_MS: envInt(100, 5000, 500) }),
    create: (env) => createEchoSts(env.ECHO_SILENCE_MS),
  }),
];

// It declares no transcripts, no tools and no truncation: those checks do not apply.
describeStsConformance('the adapter guide\'s echo example', async () => ({ adapter: createEchoSts() }), {
  skip: ['transcripts', 'toolRoundTrip', 'bargeInTruncate'],
});
