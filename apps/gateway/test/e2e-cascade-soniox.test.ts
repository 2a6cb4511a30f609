import { describe, it } from 'vitest';
import { conversation, legacyHttp, stageFailures, toolCall } from './cascade-scenarios.js';

// The cascade composed as `stsgate serve` does, against each stage's emulator, in real time.
describe.concurrent('cascade end to end: STS_PROVIDER=soniox', () => {
  it('welcome, three turns streamed, a barge-in that keeps only what was heard, a noise burst that interrupts nothing, keypad digits', () => conversation('soniox'), 90_000);
  it('a tool call spoken by the model, then avr_hangup once the goodbye was heard', () => toolCall('soniox'), 60_000);
  it("AVR's legacy POST /speech-to-speech-stream: raw PCM in, the agent's raw PCM back", () => legacyHttp('soniox'), 30_000);
  it('a failure in each stage (LLM, TTS, ASR) costs its turn and one error; the call goes on', () => stageFailures('soniox'), 60_000);
});
