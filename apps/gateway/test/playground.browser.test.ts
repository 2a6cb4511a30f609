import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createResampler } from '@stsgate/core';
import { FIXTURE_TEXT, concatPcm, fixturePath, readWavAs8k, silence, startOpenAiRealtimeEmulator, writeWav } from '@stsgate/testkit';
import { buildGateway, builtinRegistry, gatewayConfig, resolveServeSetup, type Gateway } from '../src/index.js';

// The playground in a real browser (Debian's Chromium, headless, a WAV file as its microphone). Against the loopback
// provider with its real VAD, the page's own panels must show each turn's latency, the agent audio it played, and a
// barge-in that silenced playback within 100 ms of the interruption's arrival; against the OpenAI Realtime emulator,
// the transcript of both roles. Screenshots go to test/artifacts/.
const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'playground-test-token-0123456789';
const FAKE_MIC_RATE = 48_000;
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const BUILD_SCRIPT = fileURLToPath(new URL('../playground/build.mjs', import.meta.url));

let scratch: string;
let assetsDir: string;
let gateway: Gateway;
let pageUrl: string;
/** Set when Chromium is there; each browser test fails (never skips) without it. */
let browser: BrowserContext | undefined;

function launchedBrowser(): BrowserContext {
  if (browser !== undefined) return browser;
  throw new Error(
    `${CHROMIUM} is missing: this test needs Debian's chromium package (apt-get install -y --no-install-recommends chromium; ` +
      '`bash scripts/dev.sh test` installs it when run as root)',
  );
}

/**
 * The caller: after 1.5 s (an agent's short greeting), a greeting, then a question 1.5 s after it, which lands while
 * the agent answers the greeting (the loopback's reply starts ~0.6 s after the greeting ends and lasts as long).
 * Chromium restarts the file with each capture and loops it: the long tail of silence keeps the second pass out.
 */
function writeFakeMicrophone(path: string): void {
  const caller = concatPcm(silence(1500), readWavAs8k(fixturePath('greeting')), silence(1500), readWavAs8k(fixturePath('question')), silence(15_000));
  const upsampler = createResampler(8000, FAKE_MIC_RATE);
  writeWav(path, concatPcm(upsampler.process(caller), upsampler.flush()), FAKE_MIC_RATE);
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'playground-test-'));
  mkdirSync(ARTIFACTS, { recursive: true });
  assetsDir = join(scratch, 'assets');
  await promisify(execFile)(process.execPath, [BUILD_SCRIPT, assetsDir]);
  const microphone = join(scratch, 'caller.wav');
  writeFakeMicrophone(microphone);

  const logger = pino({ level: 'silent' });
  const definition = builtinRegistry().get('sts', 'loopback');
  if (definition === undefined) throw new Error('loopback provider missing from the registry');
  gateway = await buildGateway(gatewayConfig({ playground: true, authToken: TOKEN }), {
    sts: { id: 'loopback', adapter: definition.fromEnv({}, { logger }) },
    logger,
    playgroundAssetsDir: assetsDir,
  });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  pageUrl = `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/playground/`;

  if (!existsSync(CHROMIUM)) return;
  browser = await chromium.launchPersistentContext(join(scratch, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${microphone}`,
    ],
  });
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await gateway?.app.close();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

const numberOf = async (page: Page, selector: string, attribute: string): Promise<number> => Number(await page.locator(selector).getAttribute(attribute));

describe('browser playground', () => {
  it('serves only its built files, with their content types', async () => {
    const base = pageUrl.replace(/\/playground\/$/, '');
    const page = await fetch(`${base}/playground/`);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect((await fetch(`${base}/playground/capture-worklet.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const redirect = await fetch(`${base}/playground`, { redirect: 'manual' });
    expect([redirect.status, redirect.headers.get('location')]).toEqual([302, 'playground/']);
    for (const path of ['/playground/build.mjs', '/playground/..%2Fpackage.json', '/playground/%2e%2e%2fcli.js']) {
      expect((await fetch(`${base}${path}`)).status).toBe(404);
    }
  });

  it('calls the loopback agent: turn latencies, agent audio played, barge-in silences playback within 100 ms', async () => {
    const page = await launchedBrowser().newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(pageUrl);
    await page.fill('#from', '2000');
    await page.fill('#to', '5001');

    // The gateway sets a token: without it the call is refused, and the page says what to check.
    await page.click('#call');
    await page.locator('#status[data-state="ended"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#status').textContent()).toContain('token');

    await page.fill('#token', TOKEN);
    await page.click('#call');
    await page.locator('#status[data-state="in-call"]').waitFor({ timeout: 5000 });
    expect([...gateway.calls].map((call) => call.uuid)).toEqual([await page.inputValue('#uuid')]);

    // Greeting answered, question talked over the reply (barge-in), question answered.
    await page.locator('#timeline li.barge-in').first().waitFor({ timeout: 15_000 });
    await page.locator('#timeline li.turn').nth(1).waitFor({ timeout: 15_000 });
    await page.locator('#agent-state.speaking').waitFor({ timeout: 5000 });
    await page.screenshot({ path: join(ARTIFACTS, 'playground.png'), fullPage: true });
    await page.locator('#agent-state:not(.speaking)').waitFor({ timeout: 10_000 });

    const turns = await page.locator('#timeline li.turn').all();
    const latencies = await Promise.all(turns.map(async (turn) => Number(await turn.getAttribute('data-latency-ms'))));
    const bargeIn = page.locator('#timeline li.barge-in').first();
    const silentAfterMs = Number(await bargeIn.getAttribute('data-silent-after-ms'));
    const outputLatencyMs = Number(await bargeIn.getAttribute('data-output-latency-ms'));
    const discardedMs = Number(await bargeIn.getAttribute('data-discarded-ms'));
    const agentAudioMs = await numberOf(page, '#stat-agent-audio', 'data-value');
    // The measured numbers, for the record.
    console.log(`playground: latencies ${latencies.join(', ')} ms; interruption -> silence ${silentAfterMs} ms (incl. ${outputLatencyMs} ms output latency; ${discardedMs} ms of reply dropped); agent audio played ${agentAudioMs} ms`);

    expect(latencies).toHaveLength(2);
    for (const latency of latencies) expect(latency).toBeGreaterThan(0);
    expect(await numberOf(page, '#stat-turns', 'data-value')).toBe(2);
    expect(await numberOf(page, '#stat-barge-ins', 'data-value')).toBe(1);
    expect(await bargeIn.getAttribute('data-was-speaking')).toBe('true');
    expect(discardedMs).toBeGreaterThan(0);
    expect(silentAfterMs).toBeLessThan(100);
    // The greeting's reply up to the barge-in, and the whole reply to the question.
    expect(agentAudioMs).toBeGreaterThan(2000);
    expect(await numberOf(page, '#stat-errors', 'data-value')).toBe(0);
    expect(pageErrors).toEqual([]);

    // Hanging up closes the call (WebSocket and AudioContext).
    await page.click('#hang-up');
    await page.locator('#status[data-state="ended"]').waitFor({ timeout: 5000 });
    await expect.poll(() => gateway.calls.size, { timeout: 5000 }).toBe(0);
    await page.close();
  }, 30_000);

  it('shows the transcript of both roles (OpenAI Realtime emulator, configured from the environment)', async () => {
    const page = await launchedBrowser().newPage();
    const apiKey = 'sk-test-playground-0123456789';
    const emulator = await startOpenAiRealtimeEmulator({
      apiKey,
      script: {
        greeting: { transcript: 'Welcome to ACME, how can I help?', audioMs: 500 },
        transcribe: ({ index }) => (index === 0 ? FIXTURE_TEXT['greeting.wav'] : FIXTURE_TEXT['question.wav']),
        onUserTurn: ({ index }) => ({ transcript: index === 0 ? 'Sure, which time suits you?' : 'We open at nine on Saturdays.', audioMs: 1500 }),
      },
    });
    const setup = resolveServeSetup(
      {
        STS_PROVIDER: 'openai',
        OPENAI_API_KEY: apiKey,
        OPENAI_REALTIME_URL: emulator.url,
        OPENAI_TRANSCRIPTION_MODEL: 'gpt-4o-mini-transcribe',
        STSGATE_PLAYGROUND: 'true',
      },
      builtinRegistry(),
      () => pino({ level: 'silent' }),
    );
    const openai = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools, playgroundAssetsDir: assetsDir });
    try {
      await openai.app.listen({ host: '127.0.0.1', port: 0 });
      await page.goto(`http://127.0.0.1:${(openai.app.server.address() as AddressInfo).port}/playground/`);
      await page.click('#call');
      // The greeting; the answer to the greeting, talked over by the question (barge-in); the answer to the question.
      await page.locator('#timeline li.agent').nth(2).waitFor({ timeout: 15_000 });
      await page.locator('#timeline li.user').nth(1).waitFor({ timeout: 5000 });
      await page.screenshot({ path: join(ARTIFACTS, 'playground-openai-emulator.png'), fullPage: true });
      const lines = async (role: 'user' | 'agent') => page.locator(`#timeline li.${role} .text`).allTextContents();
      expect(await lines('user')).toEqual([FIXTURE_TEXT['greeting.wav'], FIXTURE_TEXT['question.wav']]);
      expect(await lines('agent')).toEqual(['Welcome to ACME, how can I help?', 'Sure, which time suits you?', 'We open at nine on Saturdays.']);
      expect(await numberOf(page, '#stat-turns', 'data-value')).toBe(2);
      expect(await numberOf(page, '#stat-errors', 'data-value')).toBe(0);
      await page.click('#hang-up');
      await page.locator('#status[data-state="ended"]').waitFor({ timeout: 5000 });
    } finally {
      await page.close();
      await openai.app.close();
      await emulator.close();
    }
  }, 30_000);
});
