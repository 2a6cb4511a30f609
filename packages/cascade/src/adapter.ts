/** `createCascadeSts`: any ASR + LLM + TTS (+ VAD) as one core StsAdapter. */
import type { SampleRate, StsAdapter, StsCapabilities, StsCallContext, StsSession } from '@stsgate/core';
import { CascadeSession } from './session.js';
import type { CascadeSettings } from './settings.js';

/** What the composed agent can do, derived from its stages' declared capabilities. */
export function cascadeCapabilities(settings: Pick<CascadeSettings, 'asr' | 'llm' | 'tts'>): StsCapabilities {
  const inputRates = settings.asr.capabilities.inputSampleRates;
  // AVR's 8 kHz first: no resampling when the ASR takes it.
  const preferred: SampleRate[] = inputRates.includes(8000) ? [8000, ...inputRates.filter((rate) => rate !== 8000)] : [...inputRates];
  return {
    inputSampleRates: preferred,
    outputSampleRates: settings.tts.capabilities.outputSampleRates,
    encodings: ['pcm_s16le'],
    serverTurnDetection: true,
    userTranscripts: true,
    agentTranscripts: true,
    truncation: true,
    toolCalls: settings.llm.capabilities.toolCalls,
    dtmf: true,
  };
}

export function createCascadeSts(settings: CascadeSettings, id = 'cascade'): StsAdapter {
  return {
    id,
    capabilities: cascadeCapabilities(settings),
    connect: (call: StsCallContext): Promise<StsSession> => CascadeSession.open(settings, call),
  };
}
