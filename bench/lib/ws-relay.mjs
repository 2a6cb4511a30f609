// The scale bench's calibration relay: the bare cost of the two loopback WebSocket hops a caller frame takes (AVR
// Core -> gateway process -> provider socket), with nothing of the gateway's work in between. Started by
// bench/scale.mjs pinned to the gateway's core, driven by the same load generator as the gateway.
//
// It uses `ws`, like the gateway, on both sides: each AVR connection's `init` opens a provider connection to the fake
// provider (`session.update` naming the call, as the gateway's instructions do), and each AVR `audio` message is
// forwarded at once as one `input_audio_buffer.append` carrying the same base64 (PCM16 8 kHz: no decoding, batching or
// resampling). Nothing flows back to AVR Core.
//
// Run: node bench/lib/ws-relay.mjs <provider ws url> <api key>   (prints `listening <port>` on stdout)
import { createRequire } from 'node:module';
import { UUID_MARK } from './scale-load.mjs';

const WebSocket = createRequire(new URL('../../packages/testkit/package.json', import.meta.url))('ws');
const [providerUrl, apiKey] = process.argv.slice(2);
if (providerUrl === undefined || apiKey === undefined) throw new Error('usage: node bench/lib/ws-relay.mjs <provider ws url> <api key>');

const AUDIO_PREFIX = '{"type":"audio","audio":"';

const server = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
server.on('connection', (avr) => {
  let provider;
  avr.on('message', (data) => {
    const text = data.toString('utf8');
    if (text.startsWith(AUDIO_PREFIX)) {
      // `{"type":"audio","audio":"<b64>"}` -> `{"type":"input_audio_buffer.append","audio":"<b64>"}`
      if (provider?.readyState === WebSocket.OPEN) provider.send(`{"type":"input_audio_buffer.append","audio":${text.slice(AUDIO_PREFIX.length - 1)}`);
      return;
    }
    const message = JSON.parse(text);
    if (message.type !== 'init' || provider !== undefined) return;
    provider = new WebSocket(providerUrl, { perMessageDeflate: false, headers: { Authorization: `Bearer ${apiKey}` } });
    provider.on('message', (event) => {
      if (JSON.parse(event.toString('utf8')).type === 'session.created') {
        provider.send(JSON.stringify({ type: 'session.update', event_id: 'relay_update', session: { type: 'realtime', instructions: UUID_MARK(message.uuid) } }));
      }
    });
    provider.on('error', () => avr.terminate());
    provider.on('close', () => avr.close());
  });
  avr.on('close', () => provider?.close());
  avr.on('error', () => provider?.terminate());
});
server.on('listening', () => process.stdout.write(`listening ${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
