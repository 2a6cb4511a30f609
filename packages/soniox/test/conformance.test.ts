import { startSonioxSttEmulator, startSonioxTtsEmulator } from '@stsgate/testkit';
import { describeAsrConformance, describeTtsConformance } from '@stsgate/testkit/conformance';
import { createSonioxAsr, createSonioxTts } from '../src/index.js';

const KEY = 'soniox-conformance-key';

describeAsrConformance('soniox (header auth required)', async () => {
  const emulator = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
  return { adapter: createSonioxAsr({ apiKey: KEY, url: emulator.url }), cleanup: () => emulator.close() };
});

describeAsrConformance('soniox at 16 kHz', async () => {
  const emulator = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
  return { adapter: createSonioxAsr({ apiKey: KEY, url: emulator.url, sampleRate: 16000 }), cleanup: () => emulator.close() };
});

describeTtsConformance('soniox', async () => {
  const emulator = await startSonioxTtsEmulator({ apiKey: KEY, chunkIntervalMs: 20 });
  return {
    adapter: createSonioxTts({ apiKey: KEY, url: emulator.url }),
    badKeyAdapter: createSonioxTts({ apiKey: 'wrong-key', url: emulator.url }),
    upstream: () => emulator.requests.at(-1),
    cleanup: () => emulator.close(),
  };
});
