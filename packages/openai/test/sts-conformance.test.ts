import { describeStsConformance, type StsConformanceSetup } from '@stsgate/testkit/conformance';
import { startOpenAiRealtimeEmulator, type RealtimeScript } from '@stsgate/testkit';
import { createOpenAiRealtime } from '../src/index.js';
import type { OpenAiRealtimeOptions } from '../src/index.js';

const API_KEY = 'sk-test-conformance-0123456789';
const TOOL = 'lookup_order';

/** Like a model: it calls the tool on the first caller turn when the session offers it, and answers everything else. */
const script: RealtimeScript = {
  transcribe: () => 'What time do you open on Saturday?',
  onUserTurn: (turn) =>
    turn.index === 0 && turn.connection.session.tools.some((tool) => tool['name'] === TOOL)
      ? { transcript: '', functionCall: { name: TOOL, arguments: '{"order_id":"42"}' } }
      : { transcript: 'We open at nine on Saturday.', audioMs: 800 },
  onToolOutput: () => ({ transcript: 'Your order has shipped.', audioMs: 700 }),
  defaultReply: { transcript: 'I heard you.', audioMs: 500 },
};

function setup(options: Partial<OpenAiRealtimeOptions> = {}): StsConformanceSetup {
  return async () => {
    const emulator = await startOpenAiRealtimeEmulator({ apiKey: API_KEY, script });
    return {
      // No greeting: the suite takes any reply audio as the answer to its caller turn.
      adapter: createOpenAiRealtime({ apiKey: API_KEY, url: emulator.url, greeting: false, ...options }),
      tool: { name: TOOL, parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] } },
      // `reconnect`: the emulator destroys the session's socket without a close frame, as a network failure does.
      dropConnection: async () => {
        const open = emulator.connections.filter((connection) => connection.closeInfo === null);
        for (const connection of open) connection.inject({ action: { type: 'terminate' } });
        await Promise.all(open.map((connection) => connection.closed));
      },
      cleanup: () => emulator.close(),
    };
  };
}

describeStsConformance('OpenAI Realtime (G.711 mu-law 8 kHz) against the GA emulator', setup(), { quietMs: 300 });
describeStsConformance('OpenAI Realtime (PCM 24 kHz) against the GA emulator', setup({ audioFormat: 'pcm24' }), { quietMs: 300 });
