import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeWav, fixturePath, parseDtmf, readWav, readWavAs8k, runCallCommand, writeWav } from '../src/index.js';
import { sendFrames, startFakeSts, tone, type FakeSts } from './fake-sts.js';

function capture(): { io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean } }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (s: string) => ((out += s), true) },
      stderr: { write: (s: string) => ((err += s), true) },
    },
    out: () => out,
    err: () => err,
  };
}

describe('runCallCommand', () => {
  let dir: string;
  let sts: FakeSts | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stsgate-cli-'));
  });
  afterEach(async () => {
    await sts?.close();
    sts = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects bad usage with exit code 2 and the usage text', async () => {
    const cases: string[][] = [
      [],
      ['ws://127.0.0.1:1/'],
      ['ws://127.0.0.1:1/', '--in', 'a.wav'],
      ['http://127.0.0.1:1/', '--in', 'a.wav', '--out', 'b.wav'],
      ['ws://127.0.0.1:1/', '--in', 'a.wav', '--out', 'b.wav', '--tail-ms', 'soon'],
      ['ws://127.0.0.1:1/', '--in', 'a.wav', '--out', 'b.wav', '--dtmf', '1500:Z'],
      ['ws://127.0.0.1:1/', '--in', 'a.wav', '--out', 'b.wav', '--bogus'],
    ];
    for (const argv of cases) {
      const c = capture();
      expect(await runCallCommand(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err()).toMatch(/^error: .*\n\nUsage: stsgate call/);
    }
    const help = capture();
    expect(await runCallCommand(['--help'], help.io)).toBe(0);
    expect(help.out()).toMatch(/^Usage: stsgate call/);
  });

  it('fails with exit code 1 on an unreadable input or an unreachable server', async () => {
    const missing = capture();
    expect(await runCallCommand(['ws://127.0.0.1:1/', '--in', join(dir, 'nope.wav'), '--out', join(dir, 'o.wav')], missing.io)).toBe(1);
    expect(missing.err()).toMatch(/^error: .*nope\.wav/);

    const notWav = join(dir, 'notes.txt');
    writeFileSync(notWav, 'not audio');
    const unreadable = capture();
    expect(await runCallCommand(['ws://127.0.0.1:1/', '--in', notWav, '--out', join(dir, 'o.wav')], unreadable.io)).toBe(1);
    expect(unreadable.err()).toMatch(/not a readable WAV/);

    const unreachable = capture();
    const input = join(dir, 'in.wav');
    writeWav(input, new Int16Array(160), 8000);
    expect(await runCallCommand(['ws://127.0.0.1:1/', '--in', input, '--out', join(dir, 'o.wav')], unreachable.io)).toBe(1);
    expect(unreachable.err()).toMatch(/could not connect/);
  });

  it('runs a call from a 16 kHz WAV, writes the heard audio at 8 kHz and prints a JSON report', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.on('message', () => {
        const last = conn.messages.at(-1);
        if (last?.type === 'dtmf_digit') conn.ws.send(JSON.stringify({ type: 'transcript', role: 'user', text: `digit ${String(last.digit)}` }));
        if (conn.frames.length === 30) {
          sendFrames(conn.ws, tone(400, 600, 7000));
          conn.ws.send(JSON.stringify({ type: 'error', message: 'just testing' }));
        }
      });
    });
    // 16 kHz caller audio: 0.5 s tone.
    const input16k = new Int16Array(8000);
    for (let i = 0; i < input16k.length; i++) input16k[i] = Math.round(8000 * Math.sin((2 * Math.PI * 300 * i) / 16000));
    const inPath = join(dir, 'in16k.wav');
    const outPath = join(dir, 'out.wav');
    writeWav(inPath, input16k, 16000);

    const c = capture();
    const code = await runCallCommand(
      [`${sts.url}/?from=2000`, '--in', inPath, '--out', outPath, '--uuid', 'cli-1', '--tail-ms', '1000', '--dtmf', '100:7', '--json'],
      c.io,
    );
    expect(c.err()).toBe('');
    expect(code).toBe(1); // the server sent an AVR error
    const report = JSON.parse(c.out()) as Record<string, unknown> & {
      sent: { audioFrames: number; dtmf: unknown[] };
      transcripts: { text: string }[];
      errors: { message: string }[];
      responseLatencies: unknown[];
      failures: string[];
    };
    expect(report.failures).toEqual(['the server sent an AVR error: "just testing"']);
    expect(report.uuid).toBe('cli-1');
    expect(report.url).toBe(`${sts.url}/?from=2000`);
    expect(report.out).toBe(outPath);
    expect(report.heard).toBeUndefined();
    const inputFrames = Math.ceil(readWavAs8k(inPath).length / 160); // 0.5 s -> about 25 frames
    expect(inputFrames).toBeGreaterThanOrEqual(25);
    expect(inputFrames).toBeLessThanOrEqual(26);
    expect(report.sent.audioFrames).toBe(inputFrames + 50);
    expect(report.sent.dtmf).toEqual([{ atMs: 100, digit: '7' }]);
    expect(report.transcripts.map((t) => t.text)).toEqual(['digit 7']);
    expect(report.errors.map((e) => e.message)).toEqual(['just testing']);
    expect(report.responseLatencies).toHaveLength(1);
    expect(sts.connections[0]?.requestUrl).toBe('/?from=2000');

    const heard = readWav(outPath);
    expect(heard.sampleRate).toBe(8000);
    expect(heard.samples.length).toBe((inputFrames + 50) * 160);
    expect(heard.samples.some((s) => s !== 0)).toBe(true);
  });

  it('prints a readable summary', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.once('message', () => {
        conn.ws.send(JSON.stringify({ type: 'transcript', role: 'agent', text: 'Hello there' }));
        conn.ws.send('oops');
      });
    });
    const outPath = join(dir, 'heard.wav');
    const c = capture();
    const code = await runCallCommand([sts.url, '--in', fixturePath('short'), '--out', outPath, '--tail-ms', '100'], c.io);
    expect(code).toBe(1); // the server broke the protocol
    const text = c.out();
    expect(text).toContain('ended: completed');
    expect(text).toMatch(/transcripts:\n\s+\[\s*[\d.]+ s\] agent: Hello there/);
    expect(text).toMatch(/protocol problems:\n.*not valid JSON/);
    expect(text).toContain(`wrote ${outPath}`);
    expect(encodeWav(readWav(outPath).samples, 8000).length).toBeGreaterThan(44);
  });

  it('exits 1 and says why when the call ends in an AVR error or an abnormal close', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.once('message', () => {
        const how = conn.requestUrl.slice(2);
        if (how === 'error') {
          conn.ws.send(JSON.stringify({ type: 'error', message: 'Unable to connect to AI provider' }));
          conn.ws.close(1011, 'provider connection failed');
        } else if (how === 'drop') {
          setTimeout(() => conn.ws.terminate(), 100);
        } else if (how === 'hangup') {
          setTimeout(() => conn.ws.close(1000, 'agent hung up'), 100);
        }
      });
    });
    const input = join(dir, 'in.wav');
    writeWav(input, new Int16Array(8000), 8000);
    const call = async (how: string) => {
      const c = capture();
      const code = await runCallCommand([`${sts?.url ?? ''}/?${how}`, '--in', input, '--out', join(dir, `${how}.wav`), '--tail-ms', '0'], c.io);
      return { code, out: c.out() };
    };

    const error = await call('error');
    expect(error.code).toBe(1);
    expect(error.out).toMatch(
      /\ncall failed:\n {2}- the server sent an AVR error: "Unable to connect to AI provider"\n {2}- the server closed the call with code 1011 "provider connection failed"\n$/,
    );

    const drop = await call('drop');
    expect(drop.code).toBe(1);
    expect(drop.out).toMatch(/\ncall failed:\n {2}- the server dropped the connection without closing it \(code 1006\)\n$/);

    // A server that ends the call normally (e.g. the agent hung up) is not a failure.
    const hangup = await call('hangup');
    expect(hangup.out).toContain('closed by server, code 1000 "agent hung up"');
    expect(hangup.out).not.toContain('call failed');
    expect(hangup.code).toBe(0);
  });

  it('reads WAV files at any rate, e.g. 44.1 kHz', async () => {
    sts = await startFakeSts(() => {});
    const input = join(dir, 'in44k.wav');
    const samples = new Int16Array(44100 / 2); // 0.5 s
    for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 44100));
    writeWav(input, samples, 44100);
    const c = capture();
    expect(await runCallCommand([sts.url, '--in', input, '--out', join(dir, 'o.wav'), '--tail-ms', '0', '--json'], c.io)).toBe(0);
    expect((JSON.parse(c.out()) as { sent: { audioFrames: number } }).sent.audioFrames).toBe(25);
    expect(sts.connections[0]?.frames.slice(0, 25).every((frame) => frame.some((byte) => byte !== 0))).toBe(true);
  });

  it('waits for the reply instead of a fixed tail: hangs up once the agent has been quiet for 2 s', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.on('message', () => {
        if (conn.frames.length === 25) setTimeout(() => sendFrames(conn.ws, tone(1000, 440, 6000)), 300);
      });
    });
    const input = join(dir, 'in.wav');
    writeWav(input, new Int16Array(4000), 8000); // 0.5 s
    const c = capture();
    expect(await runCallCommand([sts.url, '--in', input, '--out', join(dir, 'o.wav'), '--tail-ms', '8000', '--json'], c.io)).toBe(0);
    const report = JSON.parse(c.out()) as { durationMs: number; heardAgentMs: number; firstAudioHeardAtMs: number; tailEndedBy: string };
    expect(report.tailEndedBy).toBe('idle');
    expect(report.heardAgentMs).toBe(1000);
    const playbackEnd = report.firstAudioHeardAtMs + 1000;
    expect(report.durationMs).toBeGreaterThanOrEqual(playbackEnd + 2000);
    expect(report.durationMs).toBeLessThanOrEqual(playbackEnd + 2040);
  });

  it('--idle-ms sets the quiet time; at the --tail-ms cap it says how much of the reply was cut', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.once('message', () => sendFrames(conn.ws, tone(2500, 440, 6000)));
    });
    const input = join(dir, 'in.wav');
    writeWav(input, new Int16Array(1600), 8000); // 0.2 s
    const capped = capture();
    expect(await runCallCommand([sts.url, '--in', input, '--out', join(dir, 'o.wav'), '--tail-ms', '1000', '--idle-ms', '300'], capped.io)).toBe(0);
    expect(capped.out()).toMatch(/\ntail: hung up at the --tail-ms cap \(1\.00 s after the input\); 1\.\d\d s of agent audio still queued was cut\n/);

    const quiet = capture();
    expect(await runCallCommand([sts.url, '--in', input, '--out', join(dir, 'o.wav'), '--tail-ms', '8000', '--idle-ms', '300'], quiet.io)).toBe(0);
    expect(quiet.out()).toMatch(/\ntail: hung up after 0\.30 s without agent audio\n/);
    expect(quiet.out()).toMatch(/heard: 2\.50 s of agent audio/);

    const bad = capture();
    expect(await runCallCommand([sts.url, '--in', input, '--out', join(dir, 'o.wav'), '--idle-ms', 'x'], bad.io)).toBe(2);
    expect(bad.err()).toMatch(/^error: --idle-ms must be a number >= 0/);
  });

  it('parses --dtmf lists', () => {
    expect(parseDtmf('1500:5, 2300:#,3000:a')).toEqual([
      { atMs: 1500, digit: '5' },
      { atMs: 2300, digit: '#' },
      { atMs: 3000, digit: 'A' },
    ]);
    expect(() => parseDtmf('5')).toThrow(/invalid --dtmf entry "5"/);
  });
});
