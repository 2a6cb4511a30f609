// The package entry. `adapters` is what a gateway loads: STSGATE_ADAPTERS=<this package>, ASR_PROVIDER=example-asr.
import { z } from 'zod';
import { defineAdapter, envSecret, envText, envUrl, splitList } from '@stsgate/core';
import { PROVIDER, createExampleAsr } from './asr.js';

export { PROVIDER, createExampleAsr, type ExampleAsrOptions } from './asr.js';

export const adapters = [
  defineAdapter({
    kind: 'asr',
    id: PROVIDER,
    description: 'Example ASR: real-time speech-to-text over a WebSocket',
    envSchema: z.object({
      EXAMPLE_ASR_API_KEY: envSecret('EXAMPLE_ASR_API_KEY'),
      EXAMPLE_ASR_URL: envUrl(['ws:', 'wss:']).transform((url) => url ?? 'wss://stt-rt.soniox.com/transcribe-websocket'),
      EXAMPLE_ASR_MODEL: envText().transform((model) => model ?? 'stt-rt-v5'),
      EXAMPLE_ASR_LANGUAGES: envText().transform((list) => splitList(list ?? 'en')), // comma-separated hints: en,it
    }),
    create: (env) => createExampleAsr({ apiKey: env.EXAMPLE_ASR_API_KEY, url: env.EXAMPLE_ASR_URL, model: env.EXAMPLE_ASR_MODEL, languageHints: env.EXAMPLE_ASR_LANGUAGES }),
  }),
];
