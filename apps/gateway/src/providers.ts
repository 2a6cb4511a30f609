import { AdapterRegistry } from '@stsgate/core';
import { defineLoopbackSts } from '@stsgate/loopback';
import { defineOpenAiLlm, defineOpenAiRealtime, defineOpenAiTts } from '@stsgate/openai';
import { defineSileroVad } from '@stsgate/silero-vad';

/** The adapters this gateway build can run, chosen by STS_PROVIDER. Listed explicitly: nothing self-registers. */
export function builtinRegistry(): AdapterRegistry {
  return new AdapterRegistry([defineLoopbackSts(defineSileroVad()), defineOpenAiRealtime(), defineOpenAiLlm(), defineOpenAiTts()]);
}
