import { createSpeechmaticsJWT, SpeechmaticsJWTError } from '@speechmatics/auth';
import { afterEach, describe, expect, test } from 'vitest';
import { startSpeechmaticsAuthEmulator, type SpeechmaticsAuthEmulator, type SpeechmaticsAuthEmulatorOptions } from '../../src/emulators/speechmatics-auth.js';

const KEY = 'sm-test-api-key-1234';

let emulator: SpeechmaticsAuthEmulator | undefined;
afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function start(options: Partial<SpeechmaticsAuthEmulatorOptions> = {}): Promise<SpeechmaticsAuthEmulator> {
  emulator = await startSpeechmaticsAuthEmulator({ apiKey: KEY, ...options });
  return emulator;
}

async function jwtError(promise: Promise<unknown>): Promise<SpeechmaticsJWTError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SpeechmaticsJWTError);
    return error as SpeechmaticsJWTError;
  }
  throw new Error('expected a SpeechmaticsJWTError');
}

function post(emu: SpeechmaticsAuthEmulator, query: string, body: unknown, key = KEY): Promise<Response> {
  return fetch(`${emu.baseUrl}/api_keys${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('Speechmatics auth emulator with the official @speechmatics/auth SDK', () => {
  test('issues an rt key that verify() accepts for rt only', async () => {
    const emu = await start();
    const token = await createSpeechmaticsJWT({ type: 'rt', apiKey: KEY, managementPlatformURL: emu.baseUrl, ttl: 120 });
    expect(token.split('.')).toHaveLength(3);
    const payload = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
    expect(payload).toMatchObject({ type: 'rt' });
    expect(Number(payload.exp) - Number(payload.iat)).toBe(120);
    expect(emu.verify(token, 'rt')).toBe(true);
    expect(emu.verify(token, 'flow')).toBe(false);
    expect(emu.verify(`${token}x`, 'rt')).toBe(false);
    expect(emu.issued).toEqual([expect.objectContaining({ token, type: 'rt', ttl: 120, region: 'eu', clientRef: undefined })]);
    const record = emu.requests[0];
    expect(record).toMatchObject({ method: 'POST', path: '/v1/api_keys', type: 'rt', status: 201, token, body: { ttl: 120, region: 'eu' } });
    expect(record?.headers.authorization).toBe(`Bearer ${KEY}`);
  });

  test('flow keys only when allowed: the management API no longer lists that type', async () => {
    const emu = await start();
    const error = await jwtError(createSpeechmaticsJWT({ type: 'flow', apiKey: KEY, managementPlatformURL: emu.baseUrl }));
    expect(error.type).toBe('ValidationFailed');
    expect(error.message).toBe("Invalid key type 'flow'; expected one of batch, rt, tts.");
    expect(emu.requests[0]?.status).toBe(422);
    expect(emu.issued).toEqual([]);
  });

  test('batch with clientRef, flow (allowed) and tts keys', async () => {
    const emu = await start({ apiKey: ['other', KEY], allowFlowKeys: true });
    const batch = await createSpeechmaticsJWT({ type: 'batch', apiKey: KEY, clientRef: 'user-1', managementPlatformURL: emu.baseUrl });
    const flow = await createSpeechmaticsJWT({ type: 'flow', apiKey: KEY, managementPlatformURL: emu.baseUrl });
    const tts = await createSpeechmaticsJWT({ type: 'tts', apiKey: 'other', managementPlatformURL: emu.baseUrl });
    expect([emu.verify(batch, 'batch'), emu.verify(flow, 'flow'), emu.verify(tts, 'tts')]).toEqual([true, true, true]);
    expect(emu.issued[0]?.clientRef).toBe('user-1');
    expect(new Set([batch, flow, tts]).size).toBe(3);
  });

  test('a wrong key is Unauthorized (403)', async () => {
    const emu = await start();
    const error = await jwtError(createSpeechmaticsJWT({ type: 'rt', apiKey: 'wrong', managementPlatformURL: emu.baseUrl }));
    expect(error.type).toBe('Unauthorized');
    expect(emu.requests[0]?.status).toBe(403);
    expect(emu.issued).toHaveLength(0);
  });

  test('a bad ttl is ValidationFailed (422) with the message', async () => {
    const emu = await start();
    const error = await jwtError(createSpeechmaticsJWT({ type: 'rt', apiKey: KEY, ttl: 30, managementPlatformURL: emu.baseUrl }));
    expect(error.type).toBe('ValidationFailed');
    expect(error.message).toMatch(/ttl/);
    expect(emu.requests[0]?.status).toBe(422);
  });

  test('expired keys no longer verify', async () => {
    let now = 1_000_000;
    const emu = await start({ clock: () => now });
    const token = await createSpeechmaticsJWT({ type: 'rt', apiKey: KEY, ttl: 60, managementPlatformURL: emu.baseUrl });
    expect(emu.issued[0]?.expiresAtMs).toBe(1_060_000);
    now += 59_999;
    expect(emu.verify(token, 'rt')).toBe(true);
    now += 1;
    expect(emu.verify(token, 'rt')).toBe(false);
  });

  test('faults: status (UnknownError), stall, drop, then normal service', async () => {
    const emu = await start({ faults: [{ type: 'status', status: 500, times: 2 }] });
    const options = { type: 'rt', apiKey: KEY, managementPlatformURL: emu.baseUrl } as const;
    expect((await jwtError(createSpeechmaticsJWT(options))).type).toBe('UnknownError');
    expect((await jwtError(createSpeechmaticsJWT(options))).type).toBe('UnknownError');

    emu.queueFault({ type: 'status', status: 403 });
    expect((await jwtError(createSpeechmaticsJWT(options))).type).toBe('Unauthorized');

    emu.queueFault({ type: 'drop' });
    await expect(createSpeechmaticsJWT(options)).rejects.toThrow(/fetch failed/);

    emu.queueFault({ type: 'stall' });
    await expect(
      fetch(`${emu.baseUrl}/api_keys?type=rt`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}` },
        body: '{"ttl":60}',
        signal: AbortSignal.timeout(200),
      }),
    ).rejects.toThrow();
    expect(emu.requests.map((record) => [record.fault, record.status])).toEqual([
      ['status', 500],
      ['status', 500],
      ['status', 403],
      ['drop', 0],
      ['stall', 0],
    ]);
    expect(emu.verify(await createSpeechmaticsJWT(options), 'rt')).toBe(true);
  });
});

describe('Speechmatics auth emulator over raw http', () => {
  test('validation: unknown type, batch without client_ref, ttl bounds, bad bodies', async () => {
    const emu = await start();
    const cases: [string, unknown, number, RegExp?][] = [
      ['?type=asr', { ttl: 60 }, 422, /type/],
      ['?type=batch', { ttl: 60 }, 422, /client_ref/],
      ['', { ttl: 60 }, 422, /client_ref/],
      ['?type=rt', { ttl: 59 }, 422, /ttl/],
      ['?type=rt', { ttl: 86401 }, 422, /ttl/],
      ['?type=rt', { ttl: 60.5 }, 422, /ttl/],
      ['?type=rt', {}, 422, /ttl/],
      ['?type=rt', 'not json', 422],
      ['?type=rt', [1, 2], 422],
      ['?type=rt', { ttl: 86400, client_ref: 'ignored-for-rt', project_id: 7 }, 201],
      ['?type=rt', { ttl: 60, region: null, client_ref: null }, 201],
    ];
    for (const [query, body, status, message] of cases) {
      const response = await post(emu, query, body);
      const json = (await response.json()) as Record<string, unknown>;
      expect([query, body, response.status]).toEqual([query, body, status]);
      if (status === 422) expect(json).toMatchObject({ code: 422, message: expect.stringMatching(message ?? /./) });
      else expect(json).toEqual({ apikey_id: null, key_value: expect.any(String) });
    }
  });

  test('missing key is 403; other routes 404; other methods 405', async () => {
    const emu = await start();
    const missing = await fetch(`${emu.baseUrl}/api_keys?type=rt`, { method: 'POST', body: '{"ttl":60}' });
    expect(missing.status).toBe(403);
    expect(await missing.json()).toMatchObject({ code: 403, detail: expect.any(String) });
    expect((await fetch(`${emu.baseUrl}/other`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${emu.baseUrl}/api_keys?type=rt`)).status).toBe(405);
    await emu.waitFor(() => emu.requests.length === 3);
  });
});
