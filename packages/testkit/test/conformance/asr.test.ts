import { describe, expect, test } from 'vitest';
import { describeAsrConformance, runAsrConformanceCheck, wordErrorRate, type AsrCheckName, type AsrConformanceSetup } from '../../src/conformance/asr.js';
import { startSonioxSttEmulator } from '../../src/emulators/soniox-stt.js';
import { referenceSonioxAsr, type AsrDefects } from './reference-soniox-asr.js';

const KEY = 'soniox-conformance-key';

function setup(defects: AsrDefects = {}): AsrConformanceSetup {
  return async () => {
    const emulator = await startSonioxSttEmulator({ apiKey: KEY });
    return { adapter: referenceSonioxAsr(emulator.url, KEY, defects), cleanup: () => emulator.close() };
  };
}

// The suite passes for a correct adapter...
describeAsrConformance('reference Soniox adapter', setup());

// ...and fails for broken ones.
describe('ASR conformance self-test: broken adapters fail', () => {
  const cases: [string, AsrDefects, AsrCheckName[]][] = [
    ['leaks <end>/<fin> into text', { leakControlTokens: true }, ['noControlTokens', 'utteranceGrouping', 'finalize']],
    ['drops audio pushed before the socket is open', { dropEarlyAudio: true }, ['earlyAudio']],
    ['one utterance per Soniox message (B11)', { utterancePerMessage: true }, ['utteranceGrouping', 'fixtureTranscript']],
    ['ignores finalize()', { ignoreFinalize: true }, ['finalize']],
  ];
  for (const [title, defects, checks] of cases) {
    for (const check of checks) {
      test(`${title}: ${check} fails`, async () => {
        await expect(runAsrConformanceCheck(check, setup(defects), { timeoutMs: 1500 })).rejects.toThrow();
      });
    }
  }
});

describe('wordErrorRate', () => {
  test('ignores case and punctuation, counts edits', () => {
    expect(wordErrorRate('Yes, please.', 'yes please')).toBe(0);
    expect(wordErrorRate('What time do you open on Saturday?', 'what time do you close on saturday')).toBeCloseTo(1 / 7);
    expect(wordErrorRate('a b', '')).toBe(1);
  });
});
