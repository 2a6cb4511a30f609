import { describe, it } from 'vitest';
import { conversation, stageFailures, toolCall } from './cascade-scenarios.js';

// The cascade composed as `stsgate serve` does, against each stage's emulator, in real time.
describe.concurrent('cascade end to end: STS_PROVIDER=speechmatics', () => {
  it('welcome, three turns streamed, a barge-in that keeps only what was heard, a noise burst that interrupts nothing, keypad digits', () => conversation('speechmatics'), 90_000);
  it('a tool call spoken by the model, then avr_hangup once the goodbye was heard', () => toolCall('speechmatics'), 60_000);
  it('a failure in each stage (LLM, TTS, ASR) costs its turn and one error; the call goes on', () => stageFailures('speechmatics'), 60_000);
});
