import { describeStsConformance, type StsConformanceSetup } from '@stsgate/testkit/conformance';
import { startOpenAiRealtimeEmulator, startXaiRealtimeEmulator, type RealtimeScript } from '@stsgate/testkit';
import { createOpenAiRealtime, createXaiRealtime } from '../src/index.js';
import type { OpenAiRealtimeOptions } from '../src/index.js';

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

/**
 * The Realtime adapter against the emulator: OpenAI's GA protocol, or the `xai` profile against the emulator in xAI
 * mode (Grok Voice Agent API; every check runs, `bargeInTruncate` included).
 */
function setup(dialect: 'openai' | 'xai', options: Partial<OpenAiRealtimeOptions> = {}): StsConformanceSetup {
  return async () => {
    const apiKey = `${dialect === 'xai' ? 'xai' : 'sk'}-test-conformance-0123456789`;
    const emulator = await (dialect === 'xai' ? startXaiRealtimeEmulator : startOpenAiRealtimeEmulator)({ apiKey, script });
    const create = dialect === 'xai' ? createXaiRealtime : createOpenAiRealtime;
    return {
      // No greeting: the suite takes any reply audio as the answer to its caller turn.
      adapter: create({ apiKey, url: emulator.url, greeting: false, ...options }),
      tool: { name: TOOL, parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] } },
      // `reconnect`: the emulator destroys the session's socket without a close frame, as a network failure does.
      dropConnection: async () => {
        const open = emulator.connections.filter((connection) => connection.closeInfo === null);
        for (const connection of open) connection.inject({ action: { type: 'terminate' } });
        await Promise.all(open.map((connection) => connection.closed));
      },
      cleanup: async () => {
        // In xAI mode the emulator refuses what xAI refuses (GA fields, truncate...) with an error event: none may
        // have been sent.
        const refused = emulator.connections.flatMap((connection) => connection.serverEvents.filter((event) => event.type === 'error'));
        await emulator.close();
        if (dialect === 'xai' && refused.length > 0) throw new Error(`the xAI emulator refused client events: ${JSON.stringify(refused)}`);
      },
    };
  };
}

describeStsConformance('OpenAI Realtime (G.711 mu-law 8 kHz) against the GA emulator', setup('openai'), { quietMs: 300 });
describeStsConformance('OpenAI Realtime (PCM 24 kHz) against the GA emulator', setup('openai', { audioFormat: 'pcm24' }), { quietMs: 300 });
describeStsConformance('xAI Grok Voice Agent (G.711 mu-law 8 kHz) against the emulator in xAI mode', setup('xai'), { quietMs: 300 });
describeStsConformance('xAI Grok Voice Agent (PCM 24 kHz) against the emulator in xAI mode', setup('xai', { audioFormat: 'pcm24' }), { quietMs: 300 });
