import { AdapterRegistry } from '@stsgate/core';
import { CASCADE_PRESET, SONIOX_PRESET, SPEECHMATICS_PRESET, defineCascadeSts } from '@stsgate/cascade';
import { defineLoopbackSts } from '@stsgate/loopback';
import { defineOpenAiLlm, defineOpenAiRealtime, defineOpenAiTts, defineXaiRealtime } from '@stsgate/openai';
import { defineSileroVad } from '@stsgate/silero-vad';
import { defineSonioxAsr, defineSonioxTts } from '@stsgate/soniox';
import { defineSpeechmaticsAsr, defineSpeechmaticsFlow, defineSpeechmaticsTts } from '@stsgate/speechmatics';

/**
 * The adapters this gateway build can run, chosen by STS_PROVIDER, ASR_PROVIDER, LLM_PROVIDER and TTS_PROVIDER
 * (and VAD_PROVIDER for the cascade). Listed explicitly: nothing registers itself on import.
 */
export function builtinRegistry(): AdapterRegistry {
  return new AdapterRegistry([
    defineLoopbackSts(defineSileroVad()),
    defineSileroVad(),
    defineOpenAiRealtime(),
    defineXaiRealtime(),
    defineOpenAiLlm(),
    defineOpenAiTts(),
    defineSonioxAsr(),
    defineSonioxTts(),
    defineSpeechmaticsFlow(),
    defineSpeechmaticsAsr(),
    defineSpeechmaticsTts(),
    defineCascadeSts(CASCADE_PRESET),
    defineCascadeSts(SPEECHMATICS_PRESET),
    defineCascadeSts(SONIOX_PRESET),
  ]);
}
