// Compares the two wire formats of the OpenAI Realtime adapter on the speech fixtures:
//   pcmu  : 8 kHz PCM -> G.711 mu-law -> 8 kHz PCM (what the adapter does; no resampling)
//   pcm24 : 8 kHz PCM -> 24 kHz (core resampler) -> PCM16 wire -> 24 kHz -> 8 kHz (what the host does)
// Reports SNR against the original, wire bandwidth (base64 in JSON) and CPU per call-second of audio.
// Run after `pnpm --filter @stsgate/core build && pnpm --filter @stsgate/testkit build`:
//   node packages/openai/scripts/compare-audio-formats.mjs
import { createResampler, decodeMulaw, encodeMulaw } from '@stsgate/core';
import { FIXTURE_NAMES, fixturePath, readWavAs8k } from '@stsgate/testkit';

function snrDb(reference, test) {
  let signal = 0;
  let noise = 0;
  const n = Math.min(reference.length, test.length);
  for (let i = 0; i < n; i++) {
    signal += reference[i] ** 2;
    noise += (reference[i] - test[i]) ** 2;
  }
  return 10 * Math.log10(signal / Math.max(noise, 1e-9));
}

function concat(parts) {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function frames(samples, size) {
  const out = [];
  for (let i = 0; i < samples.length; i += size) out.push(samples.subarray(i, i + size));
  return out;
}

function muLawRoundTrip(x) {
  return decodeMulaw(encodeMulaw(x));
}

function pcm24RoundTrip(x) {
  const up = createResampler(8000, 24000);
  const down = createResampler(24000, 8000);
  const wide = concat([...frames(x, 160).map((f) => up.process(f)), up.flush()]);
  return concat([...frames(wide, 480).map((f) => down.process(f)), down.flush()]).subarray(0, x.length);
}

const b64 = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** CPU ms per second of call audio, both directions, 20 ms frames in (40 ms appends) and 100 ms deltas out, incl. base64/JSON. */
function cpuPerCallSecond(x, format) {
  const seconds = x.length / 8000;
  const inFrames = frames(x, 160);
  // What the server sends back, prepared outside the measurement: the same speech as agent audio.
  const up0 = createResampler(8000, 24000);
  const agent24 = concat([up0.process(x), up0.flush()]);
  const outDeltas =
    format === 'pcmu'
      ? frames(encodeMulaw(x), 800).map((d) => JSON.stringify({ type: 'response.output_audio.delta', delta: b64(d) }))
      : frames(agent24, 2400).map((d) => JSON.stringify({ type: 'response.output_audio.delta', delta: b64(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)) }));
  const reps = 20;
  const start = process.cpuUsage();
  for (let r = 0; r < reps; r++) {
    const up = createResampler(8000, 24000);
    const down = createResampler(24000, 8000);
    for (let i = 0; i < inFrames.length; i += 2) {
      const pcm = concat(inFrames.slice(i, i + 2));
      const wire = format === 'pcmu' ? encodeMulaw(pcm) : ((w) => new Uint8Array(w.buffer, w.byteOffset, w.byteLength))(up.process(pcm));
      JSON.stringify({ type: 'input_audio_buffer.append', audio: b64(wire) });
    }
    for (const text of outDeltas) {
      const bytes = Buffer.from(JSON.parse(text).delta, 'base64');
      if (format === 'pcmu') decodeMulaw(bytes);
      else down.process(new Int16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
    }
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / (reps * seconds);
}

console.log('fixture         mu-law SNR   pcm24 round-trip SNR   mu-law of G.711-decoded audio');
for (const name of FIXTURE_NAMES) {
  const x = readWavAs8k(fixturePath(name));
  const trunk = muLawRoundTrip(x); // what a caller on a mu-law trunk sounds like when it reaches AVR
  const tandem = snrDb(trunk, muLawRoundTrip(trunk));
  console.log(
    `${name.padEnd(15)} ${snrDb(x, muLawRoundTrip(x)).toFixed(1).padStart(7)} dB   ${snrDb(x, pcm24RoundTrip(x)).toFixed(1).padStart(7)} dB             ${tandem > 150 ? 'lossless' : `${tandem.toFixed(1)} dB`}`,
  );
}
const all = concat(FIXTURE_NAMES.map((n) => readWavAs8k(fixturePath(n))));
for (let warm = 0; warm < 3; warm++) {
  cpuPerCallSecond(all, 'pcmu');
  cpuPerCallSecond(all, 'pcm24');
}
const wire = (bytesPerSecond) => ((bytesPerSecond * 4) / 3 / 1000).toFixed(1);
console.log(`wire audio per direction: pcmu ${wire(8000)} kB/s, pcm24 ${wire(48000)} kB/s (base64)`);
console.log(`CPU per call-second (both directions, incl. base64/JSON): pcmu ${cpuPerCallSecond(all, 'pcmu').toFixed(3)} ms, pcm24 ${cpuPerCallSecond(all, 'pcm24').toFixed(3)} ms`);
