import { startSpeechmaticsRtEmulator, startSpeechmaticsTtsEmulator } from '@stsgate/testkit';
import { describeAsrConformance, describeTtsConformance } from '@stsgate/testkit/conformance';
import { createSpeechmaticsAsr, createSpeechmaticsTts } from '../src/index.js';

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
