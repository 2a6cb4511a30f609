import { afterEach, describe, expect, it } from 'vitest';
import { startAvrAmiEmulator, type AvrAmiEmulator, type AvrAmiEmulatorOptions } from '../../src/emulators/avr-ami.js';

let emulator: AvrAmiEmulator | undefined;

afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function start(options: AvrAmiEmulatorOptions = {}): Promise<AvrAmiEmulator> {
  emulator = await startAvrAmiEmulator(options);
  return emulator;
}

function post(url: string, body: unknown, contentType = 'application/json'): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

describe('avr-ami emulator', () => {
  it('answers transfer and hangup like avr-ami and records the requests', async () => {
    const ami = await start();
    const transfer = await post(`${ami.url}/transfer`, { uuid: 'call-1', exten: '600', context: 'demo', priority: 1 });
    expect(transfer.status).toBe(200);
    expect(await transfer.json()).toEqual({ message: 'Call with UUID call-1 redirect with action: [object Object]' });
    const hangup = await post(`${ami.url}/hangup`, { uuid: 'call-1' });
    expect(await hangup.json()).toEqual({ message: 'Call with UUID call-1 hangup with action: [object Object]' });
    const again = await post(`${ami.url}/hangup`, { uuid: 'call-1' });
    expect(again.status).toBe(404);
    expect(await again.json()).toEqual({ message: 'Call with UUID call-1 not found' });

    const recorded = await ami.waitForRequest('/transfer');
    expect(recorded).toMatchObject({ method: 'POST', uuid: 'call-1', body: { uuid: 'call-1', exten: '600', context: 'demo', priority: 1 }, status: 200 });
    expect(recorded.respondedAt).toBeGreaterThanOrEqual(recorded.receivedAt);
    expect(ami.requests.map((request) => [request.path, request.status])).toEqual([
      ['/transfer', 200],
      ['/hangup', 200],
      ['/hangup', 404],
    ]);
    expect(ami.hungUp).toEqual(['call-1']);
  });

  it('knows only the given calls, ignores non-JSON bodies and 404s unknown routes', async () => {
    const ami = await start({ calls: ['known'] });
    expect((await post(`${ami.url}/transfer`, { uuid: 'other', exten: '1' })).status).toBe(404);
    const plain = await post(`${ami.url}/hangup`, JSON.stringify({ uuid: 'known' }), 'text/plain');
    expect(await plain.json()).toEqual({ message: 'Call with UUID undefined not found' });
    expect((await post(`${ami.url}/hangup`, { uuid: 'known' })).status).toBe(200);
    ami.addCall('known');
    expect((await post(`${ami.url}/transfer`, { uuid: 'known', exten: '2' })).status).toBe(200);
    const unknownRoute = await post(`${ami.url}/dial`, {});
    expect(unknownRoute.status).toBe(404);
    expect(await unknownRoute.text()).toContain('Cannot POST /dial');
    expect((await post(`${ami.url}/transfer`, '{bad', 'application/json')).status).toBe(400);
  });

  it('injects 500, delays and stalls', async () => {
    const ami = await start({ fault: { type: 'status' } });
    const failed = await post(`${ami.url}/transfer`, { uuid: 'a', exten: '1' });
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ message: 'Error communicating with Asterisk' });

    ami.setFault({ type: 'delay', ms: 50 });
    const slow = post(`${ami.url}/hangup`, { uuid: 'a' });
    const pending = await ami.waitFor(() => ami.requests[1]);
    expect(pending.respondedAt).toBeUndefined(); // recorded on arrival, answered after the delay
    expect((await slow).status).toBe(200);
    expect(pending.status).toBe(200);

    ami.setFault({ type: 'stall' });
    const stalled = post(`${ami.url}/hangup`, { uuid: 'b' });
    void stalled.catch(() => undefined); // rejected when the emulator closes
    const record = await ami.waitFor(() => ami.requests[2]);
    expect(record.respondedAt).toBeUndefined();
    ami.setFault(undefined);
    expect((await post(`${ami.url}/hangup`, { uuid: 'c' })).status).toBe(200);
  });
});
