import { pino } from 'pino';
import { describeStsConformance, type StsConformanceSetup } from '@stsgate/testkit/conformance';
import { fixtureRecognizer, startOpenAiRestEmulator, startSonioxSttEmulator, startSonioxTtsEmulator, startSpeechmaticsTtsEmulator } from '@stsgate/testkit';
import { createOpenAiLlm } from '@stsgate/openai';
import { createSileroVad } from '@stsgate/silero-vad';
import { createSonioxAsr, createSonioxTts } from '@stsgate/soniox';
import { createSpeechmaticsTts } from '@stsgate/speechmatics';
import { DEFAULT_CASCADE_BEHAVIOUR, createCascadeSts } from '../src/index.js';

const KEY = 'cascade-conformance-key-0123';
const TOOL = 'lookup_order';
const vad = createSileroVad();

/** Soniox listens, OpenAI answers (calling the tool on the first turn when it is offered); `tts` speaks. */
function setup(tts: 'soniox-stream' | 'speechmatics'): StsConformanceSetup {
  return async () => {
    const stt = await startSonioxSttEmulator({ apiKey: KEY, recognize: fixtureRecognizer({ fallback: () => '' }) });
    const rest = await startOpenAiRestEmulator({
      apiKey: KEY,
      chat: ({ messages, tools }) => {
        const last = messages.at(-1);
        if (last?.['role'] === 'tool') return { text: 'Your order has shipped.' };
        if (tools.some((tool) => (tool['function'] as { name?: string } | undefined)?.name === TOOL)) {
          return { toolCalls: [{ name: TOOL, arguments: '{"order_id":"42"}' }] };
        }
        return { text: 'We open at nine on Saturday.' };
      },
    });
    const sonioxTts = tts === 'soniox-stream' ? await startSonioxTtsEmulator({ apiKey: KEY }) : undefined;
    const speechmaticsTts = tts === 'speechmatics' ? await startSpeechmaticsTtsEmulator({ apiKey: KEY }) : undefined;
    const logger = pino({ level: 'silent' });
    const adapter = createCascadeSts({
      ...DEFAULT_CASCADE_BEHAVIOUR,
      greeting: { type: 'none' },
      asr: createSonioxAsr({ apiKey: KEY, url: stt.url }),
      llm: createOpenAiLlm({ apiKey: KEY, baseURL: rest.baseUrl, model: 'gpt-4o-mini', logger }),
      tts:
        sonioxTts !== undefined
          ? createSonioxTts({ apiKey: KEY, url: sonioxTts.url, websocketUrl: sonioxTts.wsUrl })
          : createSpeechmaticsTts({ apiKey: KEY, url: (speechmaticsTts as { baseUrl: string }).baseUrl }),
      vad,
      instructions: () => Promise.resolve('Be brief.'),
    });
    return {
      adapter,
      tool: { name: TOOL, parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] } },
      // `reconnect`: the call's provider sockets (Soniox STT, and the Soniox streaming TTS WebSocket) are destroyed
      // without a close frame, as a network failure does. The LLM and Speechmatics TTS are one HTTP request per turn.
      dropConnection: async () => {
        const asr = stt.connections.filter((connection) => connection.closeInfo === undefined);
        const speech = sonioxTts?.wsConnections.filter((connection) => connection.closeInfo === undefined) ?? [];
        for (const connection of asr) connection.applyFault({ type: 'drop' });
        for (const connection of speech) connection.drop();
        await stt.waitFor(() => asr.every((connection) => connection.closeInfo !== undefined));
      },
      cleanup: async () => {
        await stt.close();
        await rest.close();
        await sonioxTts?.close();
        await speechmaticsTts?.close();
      },
    };
  };
}

describeStsConformance('cascade: Soniox ASR + OpenAI LLM + Soniox streaming TTS, against the emulators', setup('soniox-stream'), { quietMs: 400 });
describeStsConformance('cascade: Soniox ASR + OpenAI LLM + Speechmatics TTS (16 kHz, one request per chunk)', setup('speechmatics'), { quietMs: 400 });
