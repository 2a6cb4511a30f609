import { describe, expect, test } from 'vitest';
import { describeTtsConformance, runTtsConformanceCheck, type TtsCheckName, type TtsConformanceSetup } from '../../src/conformance/tts.js';
import { startSonioxTtsEmulator } from '../../src/emulators/soniox-tts.js';
import { referenceSonioxTts, type TtsDefects } from './reference-soniox-tts.js';

const KEY = 'soniox-conformance-key';

function setup(defects: TtsDefects = {}): TtsConformanceSetup {
  return async () => {
    const emulator = await startSonioxTtsEmulator({ apiKey: KEY, chunkIntervalMs: 20, chunkMs: 200 });
    return {
      adapter: referenceSonioxTts(emulator.baseUrl, KEY, defects),
      badKeyAdapter: referenceSonioxTts(emulator.baseUrl, 'wrong-key', defects),
      upstream: () => emulator.requests.at(-1),
      cleanup: () => emulator.close(),
    };
  };
}

describeTtsConformance('reference Soniox REST adapter', setup());

describe('TTS conformance self-test: broken adapters fail', () => {
  const cases: [string, TtsDefects, TtsCheckName[]][] = [
    ['passes a WAV header through', { passWavHeader: true }, ['pcmOutput']],
    ['ignores abort', { ignoreAbort: true }, ['abortStopsUpstream', 'returnStopsUpstream']],
    ['maps 401 to server', { everythingIsServerError: true }, ['authError']],
    ['buffers the whole response', { buffer: true }, ['streamed']],
  ];
  for (const [title, defects, checks] of cases) {
    for (const check of checks) {
      test(`${title}: ${check} fails`, async () => {
        await expect(runTtsConformanceCheck(check, setup(defects), { timeoutMs: 1500 })).rejects.toThrow();
      });
    }
  }
});
