/**
 * Why the adapter does not use the official SDK at runtime: `@soniox/node` 2.3.0 sends the key only inside
 * the config message (and the global WebSocket it uses cannot set headers). A server that enforces the
 * 2027-01-15 rule refuses it; the adapter's header auth is accepted by the same server (asr.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AuthError, SonioxNodeClient } from '@soniox/node';
import { startSonioxSttEmulator } from '@stsgate/testkit';
import type { SonioxSttEmulator } from '@stsgate/testkit';

const KEY = 'soniox-test-key-0123456789';
const CONFIG = { model: 'stt-rt-v5', audio_format: 'pcm_s16le', sample_rate: 8000, num_channels: 1 } as const;

let stt: SonioxSttEmulator | undefined;
afterEach(async () => {
  await stt?.close();
  stt = undefined;
});

async function sdkSession(url: string): Promise<{ error: unknown; finished: boolean }> {
  const client = new SonioxNodeClient({ api_key: KEY, realtime: { ws_base_url: url } });
  const session = client.realtime.stt({ ...CONFIG });
  const error = new Promise<unknown>((resolve) => session.on('error', resolve));
  await session.connect();
  session.sendAudio(new Uint8Array(1600));
  const outcome = await Promise.race([error.then((e) => ({ error: e, finished: false })), session.finish().then(() => ({ error: undefined, finished: true }))]).catch(
    (e: unknown) => ({ error: e, finished: false }),
  );
  session.close();
  return outcome;
}

describe('@soniox/node 2.3.0 and header auth', () => {
  it('sends the key in the config message only: accepted today, refused once header auth is required', async () => {
    stt = await startSonioxSttEmulator({ apiKey: KEY });
    expect(await sdkSession(stt.url)).toEqual({ error: undefined, finished: true });
    const today = await stt.waitForConnection(0);
    expect(today.authVia).toBe('config');
    expect(today.headers.authorization).toBeUndefined();
    await stt.close();

    stt = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
    const { error } = await sdkSession(stt.url);
    expect(error).toBeInstanceOf(AuthError);
    const refused = await stt.waitForConnection(0);
    expect(refused.sent).toContainEqual(expect.objectContaining({ error_code: 401 }));
  });
});
