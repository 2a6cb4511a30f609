import { AdapterRegistry } from '@stsgate/core';
import { defineLoopbackSts } from '@stsgate/loopback';
import { defineOpenAiLlm, defineOpenAiRealtime, defineOpenAiTts } from '@stsgate/openai';
import { defineSileroVad } from '@stsgate/silero-vad';
import { defineSonioxAsr, defineSonioxTts } from '@stsgate/soniox';
import { defineSpeechmaticsAsr, defineSpeechmaticsFlow, defineSpeechmaticsTts } from '@stsgate/speechmatics';

/**
 * The adapters this gateway build can run, chosen by STS_PROVIDER, ASR_PROVIDER and TTS_PROVIDER.
 * Listed explicitly: nothing registers itself on import.
 */
export function builtinRegistry(): AdapterRegistry {
  return new AdapterRegistry([
    defineLoopbackSts(defineSileroVad()),
    defineOpenAiRealtime(),
    defineOpenAiLlm(),
    defineOpenAiTts(),
    defineSonioxAsr(),
    defineSonioxTts(),
    defineSpeechmaticsFlow(),
    defineSpeechmaticsAsr(),
    defineSpeechmaticsTts(),
  ]);
}
