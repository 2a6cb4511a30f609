/**
 * A cascade gateway composed exactly as `stsgate serve` does (resolveServeSetup + buildGateway), against the test
 * kit's emulators of each stage, for the end-to-end tests of each preset.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import {
  fixtureRecognizer,
  startAvrAmiEmulator,
  startOpenAiRestEmulator,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
  startSpeechmaticsRtEmulator,
  startSpeechmaticsTtsEmulator,
  type AvrAmiEmulator,
  type ChatCompletionRequest,
  type ChatScriptReply,
  type OpenAiRestEmulator,
  type SonioxSttEmulator,
  type SonioxTtsEmulator,
  type SpeechmaticsRtEmulator,
  type SpeechmaticsTtsEmulator,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup, type Gateway } from '../src/index.js';

export const KEY = 'cascade-e2e-key-0123456789';

export type Preset = 'soniox' | 'speechmatics' | 'mixed';

export interface CascadeStackOptions {
  readonly chat: (request: ChatCompletionRequest) => ChatScriptReply | Promise<ChatScriptReply>;
  /** LLM pacing: first token after this, then this many tokens a second. */
  readonly llm?: { readonly firstTokenMs?: number; readonly tokensPerSecond?: number };
  /** TTS audio pacing (synthesis time per audio time; 1 = real time). */
  readonly ttsRealTimeFactor?: number;
  readonly env?: Readonly<Record<string, string>>;
  /** A custom AVR tool module in TOOLS_DIR (CommonJS source), and the avr-ami emulator for the built-ins. */
  readonly toolModule?: { readonly file: string; readonly source: string };
}

export interface CascadeStack {
  readonly url: (query?: string) => string;
  readonly gateway: Gateway;
  readonly rest: OpenAiRestEmulator;
  readonly ami: AvrAmiEmulator;
  readonly sonioxStt?: SonioxSttEmulator;
  readonly sonioxTts?: SonioxTtsEmulator;
  readonly speechmaticsRt?: SpeechmaticsRtEmulator;
  readonly speechmaticsTts?: SpeechmaticsTtsEmulator;
  close(): Promise<void>;
}

/** A real ASR hears no words in noise: only the test kit's speech fixtures are recognised. */
const speechOnly = () => fixtureRecognizer({ fallback: () => '' });

export async function startCascadeStack(preset: Preset, options: CascadeStackOptions): Promise<CascadeStack> {
  const closers: (() => Promise<unknown>)[] = [];
  const rest = await startOpenAiRestEmulator({
    apiKey: KEY,
    chat: options.chat,
    latency: { firstTokenMs: options.llm?.firstTokenMs ?? 50, tokensPerSecond: options.llm?.tokensPerSecond ?? 40 },
  });
  closers.push(() => rest.close());
  const ami = await startAvrAmiEmulator();
  closers.push(() => ami.close());
  const ttsLatency = options.ttsRealTimeFactor === undefined ? {} : { latency: { realTimeFactor: options.ttsRealTimeFactor } };
  let env: Record<string, string> = {
    OPENAI_API_KEY: KEY,
    OPENAI_BASE_URL: rest.baseUrl,
    AMI_URL: ami.url,
    LOG_LEVEL: process.env.E2E_LOG ?? 'silent',
  };
  let sonioxStt: SonioxSttEmulator | undefined;
  let sonioxTts: SonioxTtsEmulator | undefined;
  let speechmaticsRt: SpeechmaticsRtEmulator | undefined;
  let speechmaticsTts: SpeechmaticsTtsEmulator | undefined;
  if (preset === 'soniox' || preset === 'mixed') {
    sonioxStt = await startSonioxSttEmulator({ apiKey: KEY, recognize: speechOnly() });
    closers.push(() => (sonioxStt as SonioxSttEmulator).close());
    // The scenarios' pauses are timed for Soniox's quickest endpoints (500 ms), not the adapter's default 1000 ms.
    env = { ...env, SONIOX_API_KEY: KEY, SONIOX_WEBSOCKET_URL: sonioxStt.url, SONIOX_MAX_ENDPOINT_DELAY_MS: '500' };
  }
  if (preset === 'soniox') {
    sonioxTts = await startSonioxTtsEmulator({ apiKey: KEY, ...ttsLatency });
    closers.push(() => (sonioxTts as SonioxTtsEmulator).close());
    env = { ...env, STS_PROVIDER: 'soniox', LLM_PROVIDER: 'openai', SONIOX_TTS_URL: sonioxTts.url, SONIOX_TTS_WEBSOCKET_URL: sonioxTts.wsUrl };
  }
  if (preset === 'speechmatics' || preset === 'mixed') {
    speechmaticsTts = await startSpeechmaticsTtsEmulator({ apiKey: KEY, ...ttsLatency });
    closers.push(() => (speechmaticsTts as SpeechmaticsTtsEmulator).close());
    env = { ...env, SPEECHMATICS_API_KEY: KEY, SPEECHMATICS_TTS_URL: speechmaticsTts.baseUrl };
  }
  if (preset === 'speechmatics') {
    speechmaticsRt = await startSpeechmaticsRtEmulator({ apiKey: KEY, recognize: speechOnly() });
    closers.push(() => (speechmaticsRt as SpeechmaticsRtEmulator).close());
    // No LLM_PROVIDER: OpenAI's variables make it the LLM, as AVR documents the Speechmatics agent.
    env = { ...env, STS_PROVIDER: 'speechmatics', SPEECHMATICS_RT_URL: speechmaticsRt.url };
  }
  if (preset === 'mixed') env = { ...env, STS_PROVIDER: 'cascade', ASR_PROVIDER: 'soniox', LLM_PROVIDER: 'openai', TTS_PROVIDER: 'speechmatics' };
  if (options.toolModule !== undefined) {
    const toolsDir = mkdtempSync(join(tmpdir(), 'stsgate-cascade-tools-'));
    closers.push(async () => rmSync(toolsDir, { recursive: true, force: true }));
    writeFileSync(join(toolsDir, options.toolModule.file), options.toolModule.source);
    env = { ...env, TOOLS_DIR: toolsDir };
  } else {
    env = { ...env, TOOLS_DIR: join(tmpdir(), 'stsgate-no-tools-here') };
  }
  env = { ...env, ...options.env };
  const setup = resolveServeSetup(env, builtinRegistry(), () => pino({ level: process.env.E2E_LOG ?? 'silent' }));
  const gateway = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  closers.push(() => gateway.app.close());
  const port = (gateway.app.server.address() as AddressInfo).port;
  return {
    url: (query = 'from=2001&to=5001') => `ws://127.0.0.1:${port}/?${query}`,
    gateway,
    rest,
    ami,
    ...(sonioxStt === undefined ? {} : { sonioxStt }),
    ...(sonioxTts === undefined ? {} : { sonioxTts }),
    ...(speechmaticsRt === undefined ? {} : { speechmaticsRt }),
    ...(speechmaticsTts === undefined ? {} : { speechmaticsTts }),
    async close() {
      for (const close of closers.reverse()) await close();
    },
  };
}

/** The text of the last user message of a chat request. */
export function lastUserText(request: ChatCompletionRequest): string {
  const users = request.messages.filter((m) => m['role'] === 'user');
  const content = users.at(-1)?.['content'];
  return typeof content === 'string' ? content : '';
}
