import { describe, expect, it } from 'vitest';
import {
  AVR_FRAME_BYTES,
  avrOutboundSchema,
  decodeAvrInbound,
  encodeAvrAudio,
  encodeAvrOutbound,
  pcmFromBytes,
} from '../src/index.js';

const audioMessage = (bytes: Uint8Array) => JSON.stringify({ type: 'audio', audio: Buffer.from(bytes).toString('base64') });

function expectError(raw: string, code: string) {
  const result = decodeAvrInbound(raw);
  if (result.ok) throw new Error(`expected ${code}, got a message`);
  expect(result.error.code).toBe(code);
  return result.error;
}

describe('decodeAvrInbound', () => {
  it('decodes init, keeping provider_config and ignoring unknown extra fields', () => {
    const result = decodeAvrInbound(
      JSON.stringify({ type: 'init', uuid: '935652e3-7c59-4edc-b17f-9646a9c2a265', provider_config: { api_key: 'k' }, extra: 1 }),
    );
    expect(result).toEqual({
      ok: true,
      message: { type: 'init', uuid: '935652e3-7c59-4edc-b17f-9646a9c2a265', providerConfig: { api_key: 'k' } },
    });
  });

  it('decodes audio into little-endian s16 samples', () => {
    const bytes = new Uint8Array(AVR_FRAME_BYTES);
    const view = new DataView(bytes.buffer);
    view.setInt16(0, -2, true);
    view.setInt16(2, 1234, true);
    view.setInt16(AVR_FRAME_BYTES - 2, 32767, true);
    const result = decodeAvrInbound(audioMessage(bytes));
    if (!result.ok || result.message.type !== 'audio') throw new Error('expected audio');
    expect(result.message.samples.length).toBe(160);
    expect([result.message.samples[0], result.message.samples[1], result.message.samples[159]]).toEqual([-2, 1234, 32767]);
  });

  it('decodes each audio message into samples of its own, which later messages leave intact', () => {
    const decoded: Int16Array[] = [];
    // Many in a row: none may share another's memory.
    for (let i = 0; i < 100; i++) {
      const result = decodeAvrInbound(audioMessage(new Uint8Array(new Int16Array(160).fill(i - 50).buffer)));
      if (!result.ok || result.message.type !== 'audio') throw new Error('expected audio');
      decoded.push(result.message.samples);
    }
    decoded.forEach((samples, i) => {
      expect(samples.byteOffset % 2).toBe(0);
      expect(samples.every((sample) => sample === i - 50)).toBe(true);
    });
  });

  it('decodes dtmf_digit', () => {
    expect(decodeAvrInbound('{"type":"dtmf_digit","digit":"#"}')).toEqual({ ok: true, message: { type: 'dtmf_digit', digit: '#' } });
  });

  it('rejects malformed JSON without echoing it', () => {
    const error = expectError('{"type":"audio","audio":"secret-caller-data', 'invalid_json');
    expect(error.message).not.toContain('secret');
  });

  it('rejects non-objects', () => {
    expectError('[1,2]', 'not_an_object');
    expectError('"init"', 'not_an_object');
    expectError('null', 'not_an_object');
  });

  it('rejects a missing or non-string type', () => {
    expectError('{"uuid":"x"}', 'invalid_message');
    expectError('{"type":5}', 'invalid_message');
  });

  it('rejects unknown types, naming only a sane type', () => {
    expect(expectError('{"type":"tool_result"}', 'unknown_type').message).toBe('unknown message type "tool_result"');
    const long = 'x'.repeat(5000);
    expect(expectError(JSON.stringify({ type: long }), 'unknown_type').message.length).toBeLessThan(64);
    expect(expectError(JSON.stringify({ type: 'a b <script>' }), 'unknown_type').message).toBe('unknown message type');
  });

  it('rejects missing fields', () => {
    expectError('{"type":"init"}', 'invalid_message');
    expectError('{"type":"init","uuid":""}', 'invalid_message');
    expectError('{"type":"audio"}', 'invalid_audio');
    expectError('{"type":"dtmf_digit"}', 'invalid_message');
    expectError('{"type":"dtmf_digit","digit":"55"}', 'invalid_message');
  });

  it('rejects invalid base64 without echoing it', () => {
    const error = expectError('{"type":"audio","audio":"@@not*base64!!"}', 'invalid_audio');
    expect(error.message).not.toContain('@@not');
    expectError('{"type":"audio","audio":"QUJD="}', 'invalid_audio'); // bad padding
    expectError('{"type":"audio","audio":""}', 'invalid_audio');
  });

  it('rejects odd byte counts', () => {
    expect(expectError(audioMessage(new Uint8Array(321)), 'invalid_audio').message).toContain('odd byte count (321)');
  });

  it('rejects audio larger than one second', () => {
    expectError(audioMessage(new Uint8Array(16_002)), 'invalid_audio');
  });

  it('never throws, whatever the input', () => {
    const inputs = ['', ' ', '{', '{}', '{"type":{}}', '{"type":"audio","audio":null}', '\u0000', 'true', '1e999'];
    for (const input of inputs) expect(decodeAvrInbound(input).ok).toBe(false);
  });
});

describe("decodeAvrInbound: the hand-checked path for AVR Core's exact audio form", () => {
  const frame = pcmFromBytes(Uint8Array.from({ length: AVR_FRAME_BYTES }, (_, i) => (i * 37) & 0xff));
  const base64 = Buffer.from(frame.buffer).toString('base64');
  const samplesOf = (raw: string) => {
    const result = decodeAvrInbound(raw);
    if (!result.ok || result.message.type !== 'audio') throw new Error(`expected audio: ${result.ok ? result.message.type : result.error.message}`);
    return [...result.message.samples];
  };

  it('decodes the canonical form and every other spelling of the same message to the same samples', () => {
    const expected = [...frame];
    expect(samplesOf(`{"type":"audio","audio":"${base64}"}`)).toEqual(expected);
    expect(samplesOf(`{ "type": "audio", "audio": "${base64}" }`)).toEqual(expected);
    expect(samplesOf(`{"audio":"${base64}","type":"audio"}`)).toEqual(expected);
    expect(samplesOf(`{"type":"audio","audio":"\\u0041${base64.slice(1)}"}`)).toEqual(samplesOf(`{"type":"audio","audio":"A${base64.slice(1)}"}`));
    expect(samplesOf(`{"type":"audio","audio":"AAE="}`)).toEqual([256]);
  });

  it('refuses in the canonical form exactly what the schema refuses', () => {
    // URL-safe characters (Node's decoder would take them), padding inside, a space or a star (Node skips them), a bad
    // length, non-ASCII.
    for (const audio of ['AB-_', 'AB_+', 'AA==AAAA', 'A=AAAAAA', 'AA AAAAA', 'AA*AAAAA', 'AAA', 'AAAAA', 'AAé=', 'A===']) {
      expectError(`{"type":"audio","audio":"${audio}"}`, 'invalid_audio');
    }
    expectError('{"type":"audio","audio":""}', 'invalid_audio');
    expectError('{"type":"audio","audio":"AA=="}', 'invalid_audio'); // one byte: not s16le
    expectError(`{"type":"audio","audio":"${'A'.repeat(21_336)}"}`, 'invalid_audio'); // over 16 000 bytes
    expectError(`{"type":"audio","audio":"${base64}"`, 'invalid_json');
    expectError(`{"type":"audio","audio":"${base64}"}}`, 'invalid_json');
    expectError('{"type":"audio","audio":"AA"A"}', 'invalid_json');
  });

  it('agrees with the schema path on random payloads, valid or not', () => {
    const characters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/==-_ *.';
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 3000; round++) {
      const length = 4 * Math.floor(random() * 6);
      const audio = Array.from({ length }, () => characters[Math.floor(random() * characters.length)]).join('');
      const canonical = decodeAvrInbound(`{"type":"audio","audio":"${audio}"}`);
      const viaSchema = decodeAvrInbound(`{ "type": "audio", "audio": "${audio}" }`);
      expect(canonical.ok ? { ok: true, samples: canonical.message } : { ok: false, code: canonical.error.code }).toEqual(
        viaSchema.ok ? { ok: true, samples: viaSchema.message } : { ok: false, code: viaSchema.error.code },
      );
    }
  });
});

describe('outbound encoding', () => {
  it('encodes audio that round-trips through the outbound schema', () => {
    const samples = new Int16Array([0, 1, -1, 32767, -32768]);
    const json: unknown = JSON.parse(encodeAvrAudio(samples));
    const parsed = avrOutboundSchema.parse(json);
    if (parsed.type !== 'audio') throw new Error('expected audio');
    expect([...pcmFromBytes(Buffer.from(parsed.audio, 'base64'))]).toEqual([...samples]);
  });

  it('encodes control messages', () => {
    expect(encodeAvrOutbound({ type: 'interruption' })).toBe('{"type":"interruption"}');
    expect(JSON.parse(encodeAvrOutbound({ type: 'transcript', role: 'agent', text: 'Hi "there"' }))).toEqual({
      type: 'transcript',
      role: 'agent',
      text: 'Hi "there"',
    });
  });

  it('copies samples out of pooled buffers', () => {
    const pooled = Buffer.from([1, 0, 2, 0, 3]);
    const samples = pcmFromBytes(pooled.subarray(1, 5));
    expect([...samples]).toEqual([512, 768]);
    pooled[1] = 9;
    expect(samples[0]).toBe(512);
  });
});
