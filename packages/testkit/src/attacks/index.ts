// Hostile-client drivers: what a misbehaving or malicious AVR Core (or anything that can reach the gateway's port) can
// do, for reliability tests and bench/reliability.mjs. Each driver opens its own sockets and timers and closes every one
// of them before its promise resolves; none of them throws on what the server does (a refused upgrade, a reset, a
// close): that is what the report is for.
//
// - floodWebSocket (ws-flood.ts): one WebSocket (the `ws` client) sending one message as fast as its own send buffer
//   allows; optionally a client that never reads, so the server's writes back up.
// - floodRawFrames (raw-frames.ts): the RFC 6455 handshake by hand, then malformed or abusive frames as fast as the
//   socket drains.
// - tricklePosts / hangingRequest (http-trickle.ts): HTTP POSTs whose body never ends (one byte at a time, or a few
//   bytes then nothing).
// - probeHealth (health-probe.ts): sequential GET /health on fresh connections, latency and failures.
// - echoCall (echo-call.ts): a well-behaved AVR Core call against the loopback provider, to see whether an attack hurts
//   other calls.
export { floodWebSocket, type FloodWebSocketOptions, type FloodReport } from './ws-flood.js';
export { RAW_FRAME_ABUSES, type RawFrameAbuse } from './ws-frames.js';
export { floodRawFrames, type FloodRawFramesOptions, type RawFloodReport } from './raw-frames.js';
export {
  tricklePosts,
  hangingRequest,
  type TricklePostsOptions,
  type TrickleReport,
  type HangingRequestOptions,
  type HangingRequest,
} from './http-trickle.js';
export { probeHealth, type ProbeHealthOptions, type HealthProbe, type HealthReport } from './health-probe.js';
export { echoCall, type EchoCallOptions, type EchoReport } from './echo-call.js';
