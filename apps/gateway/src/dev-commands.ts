// `stsgate call` and `stsgate emulate`: the commands that run the test kit. cli-main.ts loads this module only for them,
// so the server's own dependency closure has no emulator, fixture or call simulator.
import { writeFileSync } from 'node:fs';
import {
  runCallCommand,
  startOpenAiRealtimeEmulator,
  startOpenAiRestEmulator,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
  startSpeechmaticsAuthEmulator,
  startSpeechmaticsFlowEmulator,
  startSpeechmaticsRtEmulator,
  startSpeechmaticsTtsEmulator,
  startXaiRealtimeEmulator,
} from '@stsgate/testkit';
import { EMULATED, type CliContext, type Emulated } from './cli-main.js';

export { runCallCommand };

/** Starts one provider's emulators; returns the variables that point the gateway at them, and how to stop them. */
async function startEmulators(provider: Emulated): Promise<{ env: Record<string, string>; close: () => Promise<void> }> {
  switch (provider) {
    case 'xai': {
      const apiKey = 'xai-emulator-key';
      const realtime = await startXaiRealtimeEmulator({ apiKey });
      return { env: { XAI_API_KEY: apiKey, XAI_REALTIME_URL: realtime.url }, close: () => realtime.close() };
    }
    case 'openai': {
      const apiKey = 'sk-emulator-key';
      const realtime = await startOpenAiRealtimeEmulator({ apiKey });
      const rest = await startOpenAiRestEmulator({ apiKey });
      return {
        env: { OPENAI_API_KEY: apiKey, OPENAI_REALTIME_URL: realtime.url, OPENAI_BASE_URL: rest.baseUrl },
        close: async () => {
          await realtime.close();
          await rest.close();
        },
      };
    }
    case 'speechmatics': {
      const apiKey = 'sm-emulator-key';
      const auth = await startSpeechmaticsAuthEmulator({ apiKey });
      const rt = await startSpeechmaticsRtEmulator({ apiKey });
      const tts = await startSpeechmaticsTtsEmulator({ apiKey });
      return {
        env: { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_RT_URL: rt.url, SPEECHMATICS_TTS_URL: tts.baseUrl, SPEECHMATICS_MANAGEMENT_URL: auth.baseUrl },
        close: async () => {
          await rt.close();
          await tts.close();
          await auth.close();
        },
      };
    }
    case 'soniox': {
      const apiKey = 'soniox-emulator-key';
      const stt = await startSonioxSttEmulator({ apiKey });
      const tts = await startSonioxTtsEmulator({ apiKey });
      return {
        env: { SONIOX_API_KEY: apiKey, SONIOX_WEBSOCKET_URL: stt.url, SONIOX_TTS_URL: tts.url, SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl },
        close: async () => {
          await stt.close();
          await tts.close();
        },
      };
    }
    case 'speechmatics-flow': {
      const apiKey = 'sm-emulator-key';
      // The real management API no longer mints Flow keys; accounts that still have Flow do get them.
      const auth = await startSpeechmaticsAuthEmulator({ apiKey, allowFlowKeys: true });
      const flow = await startSpeechmaticsFlowEmulator({ verifyToken: (jwt) => auth.verify(jwt, 'flow'), greeting: { text: 'Hello, how can I help?', ms: 1500 } });
      return {
        env: { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_FLOW_URL: flow.baseUrl, SPEECHMATICS_MANAGEMENT_URL: auth.baseUrl },
        close: async () => {
          await flow.close();
          await auth.close();
        },
      };
    }
  }
}

/** The provider variables that use what was emulated (the cascade for a mix). */
function suggestedProviders(names: ReadonlySet<Emulated>): Record<string, string> {
  if (names.has('speechmatics-flow')) return { STS_PROVIDER: 'speechmatics-flow' };
  if (names.has('xai')) return { STS_PROVIDER: 'xai' };
  const asr = names.has('soniox') ? 'soniox' : names.has('speechmatics') ? 'speechmatics' : undefined;
  const tts = names.has('speechmatics') ? 'speechmatics' : names.has('soniox') ? 'soniox' : undefined;
  if (asr === undefined || tts === undefined) return names.has('openai') ? { STS_PROVIDER: 'openai' } : {};
  const llm = names.has('openai') ? { LLM_PROVIDER: 'openai' } : {};
  return asr === tts ? { STS_PROVIDER: asr, ...llm } : { STS_PROVIDER: 'cascade', ASR_PROVIDER: asr, TTS_PROVIDER: tts, ...llm };
}

/** A word for a POSIX shell (single-quoted when it holds anything but safe characters). */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Local provider emulators for trying the gateway without an API key: their ASR recognises the test kit's speech
 * fixtures, their LLM answers "You said: ...", their TTS and STS answer with synthetic speech.
 */
export async function emulate(args: readonly string[], { stdout, stderr }: CliContext): Promise<number> {
  const writeEnvAt = args.indexOf('--write-env');
  const envFile = writeEnvAt >= 0 ? args[writeEnvAt + 1] : undefined;
  const names = writeEnvAt < 0 ? [...args] : args.filter((_arg, index) => index !== writeEnvAt && index !== writeEnvAt + 1);
  const unknown = names.filter((name) => !(EMULATED as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0 || (writeEnvAt >= 0 && envFile === undefined)) {
    stderr.write(`stsgate: usage: stsgate emulate <${EMULATED.join('|')}>... [--write-env FILE]\n`);
    return 2;
  }
  const started = [];
  for (const name of new Set(names as Emulated[])) started.push(await startEmulators(name));
  const env = Object.assign({}, ...started.map((s) => s.env)) as Record<string, string>;
  const lines = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  if (envFile !== undefined) writeFileSync(envFile, `${lines.join('\n')}\n`);
  const providers = Object.entries(suggestedProviders(new Set(names as Emulated[]))).map(([key, value]) => `${key}=${value}`);
  const command = ['env', ...lines, ...providers].map(shellQuote).join(' ');
  stdout.write(
    `Emulators of ${[...new Set(names)].join(', ')} listening${envFile === undefined ? '' : ` (variables written to ${envFile})`}. ` +
      `Run the gateway against them, from the repository root:\n  ${command} bash scripts/dev.sh start\nStop with Ctrl-C.\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const { close } of started) await close();
  return 0;
}

