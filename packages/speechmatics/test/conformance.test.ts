import { startSpeechmaticsAuthEmulator, startSpeechmaticsFlowEmulator, startSpeechmaticsRtEmulator, startSpeechmaticsTtsEmulator } from '@stsgate/testkit';
import { describeAsrConformance, describeStsConformance, describeTtsConformance } from '@stsgate/testkit/conformance';
import type { StsConformanceSetup } from '@stsgate/testkit/conformance';
import { createSpeechmaticsAsr, createSpeechmaticsFlow, createSpeechmaticsTts } from '../src/index.js';

const KEY = 'sm-conformance-key';

describeAsrConformance('speechmatics real-time', async () => {
  const emulator = await startSpeechmaticsRtEmulator({ apiKey: KEY });
  return { adapter: createSpeechmaticsAsr({ apiKey: KEY, url: emulator.url }), cleanup: () => emulator.close() };
});

describeAsrConformance('speechmatics real-time at 16 kHz', async () => {
  const emulator = await startSpeechmaticsRtEmulator({ apiKey: KEY });
  return { adapter: createSpeechmaticsAsr({ apiKey: KEY, url: emulator.url, sampleRate: 16000 }), cleanup: () => emulator.close() };
});

describeTtsConformance('speechmatics', async () => {
  const emulator = await startSpeechmaticsTtsEmulator({ apiKey: KEY, chunkIntervalMs: 20 });
  return {
    adapter: createSpeechmaticsTts({ apiKey: KEY, url: emulator.baseUrl }),
    badKeyAdapter: createSpeechmaticsTts({ apiKey: 'wrong-key', url: emulator.baseUrl }),
    upstream: () => emulator.requests.at(-1),
    cleanup: () => emulator.close(),
  };
});

const TOOL = 'lookup_order';

/** Flow with temporary keys from the key endpoint emulator; the agent calls the tool on the first turn when offered. */
function flowSetup(inputSampleRate: 8000 | 16000): StsConformanceSetup {
  return async () => {
    const auth = await startSpeechmaticsAuthEmulator({ apiKey: KEY, allowFlowKeys: true });
    const flow = await startSpeechmaticsFlowEmulator({
      verifyToken: (jwt) => auth.verify(jwt, 'flow'),
      pacing: 4,
      reply: () => ({ text: 'We open at nine on Saturday.', ms: 800 }),
      toolCalls: [{ turn: 0, name: TOOL, arguments: { order_id: '42' } }],
    });
    return {
      adapter: createSpeechmaticsFlow({ apiKey: KEY, url: flow.baseUrl, managementUrl: auth.baseUrl, inputSampleRate }),
      tool: { name: TOOL, parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] } },
      // `reconnect`: the emulator destroys the conversation's socket without a close frame, as a network failure does.
      dropConnection: () => {
        for (const connection of flow.connections) if (connection.closeInfo === undefined) connection.applyFault({ type: 'drop' });
        return Promise.resolve();
      },
      cleanup: async () => {
        await flow.close();
        await auth.close();
      },
    };
  };
}

// Flow's protocol has no truncation (capabilities.truncation is false): the barge-in truncate check does not apply.
describeStsConformance('speechmatics flow (8 kHz caller audio)', flowSetup(8000), { quietMs: 300, skip: ['bargeInTruncate'] });
describeStsConformance('speechmatics flow (16 kHz caller audio)', flowSetup(16000), { quietMs: 300, skip: ['bargeInTruncate'] });
