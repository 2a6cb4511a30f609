import { afterAll } from 'vitest';
import { describeStsConformance } from '@stsgate/testkit/conformance';
import { createSileroVad } from '@stsgate/silero-vad';
import { createLoopbackSts } from '../src/index.js';

// One Silero model for every session of the suite (as the gateway shares it between calls).
const vad = createSileroVad();
afterAll(() => vad.close());

// The loopback has no transcripts and no tools: `transcripts` and `toolRoundTrip` report themselves skipped.
describeStsConformance('loopback (Silero VAD)', () => Promise.resolve({ adapter: createLoopbackSts({ vad }) }), { quietMs: 300 });
