// The ASR conformance suite, every check, against the test kit's emulator of the protocol this adapter speaks (Soniox
// real-time STT, here requiring the key in the Authorization header).
import { startSonioxSttEmulator } from '@stsgate/testkit';
import { describeAsrConformance } from '@stsgate/testkit/conformance';
import { createExampleAsr } from '../src/index.js';

const KEY = 'example-asr-conformance-key';

describeAsrConformance('example-asr', async () => {
  const emulator = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
  return {
    adapter: createExampleAsr({ apiKey: KEY, url: emulator.url, model: 'stt-rt-v5', languageHints: ['en'] }),
    cleanup: () => emulator.close(),
  };
});
