import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallMetric, CallRuntimeObserver } from '@stsgate/core';

/** Prometheus metrics owned by one gateway instance (its own registry: two apps never share counters). */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly activeCalls = new Gauge({ name: 'stsgate_active_calls', help: 'Calls currently connected', registers: [this.registry] });
  readonly callsTotal = new Counter({
    name: 'stsgate_calls_total',
    help: 'Calls accepted, by provider and how they ended',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly callDurationSeconds = new Histogram({
    name: 'stsgate_call_duration_seconds',
    help: 'Call duration, from the connection to the end of the call, by provider and how it ended',
    labelNames: ['provider', 'outcome'] as const,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600],
    registers: [this.registry],
  });
  readonly eventLoopUtilization = new Gauge({
    name: 'stsgate_event_loop_utilization',
    help: 'Share of the time the event loop (the one core every call runs on) was busy over the last 3 s: near 1, calls get late; MAX_EVENT_LOOP_UTILIZATION refuses new calls above it',
    registers: [this.registry],
  });
  readonly callerAudioBatched = new Gauge({
    name: 'stsgate_caller_audio_batched',
    help: 'Whether caller audio goes to the providers two 20 ms frames per message (1) because the event loop is busy (CALLER_AUDIO_BATCH_UTILIZATION), or frame by frame (0)',
    registers: [this.registry],
  });
  readonly framesIn = new Counter({ name: 'stsgate_frames_in_total', help: 'Audio messages received from AVR Core', registers: [this.registry] });
  readonly framesOut = new Counter({ name: 'stsgate_frames_out_total', help: '20 ms audio frames sent to AVR Core', registers: [this.registry] });
  readonly lateAgentAudio = new Counter({
    name: 'stsgate_late_agent_audio_total',
    help: "Gaps in a reply: its audio reached AVR Core after AVR Core's buffer had run dry (the caller heard silence mid-reply)",
    labelNames: ['provider'],
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'stsgate_errors_total',
    help: 'Errors by kind (protocol codes, provider categories, internal) and the provider of the call or route, if any',
    labelNames: ['kind', 'provider'] as const,
    registers: [this.registry],
  });
  readonly policyCloses = new Counter({
    name: 'stsgate_policy_closes_total',
    help: 'Calls closed with 1008 because the peer broke a per-connection budget (message_rate, protocol_errors, not_reading)',
    labelNames: ['kind', 'provider'] as const,
    registers: [this.registry],
  });
  readonly dtmfDropped = new Counter({
    name: 'stsgate_dtmf_dropped_total',
    help: 'DTMF digits dropped because a call sent them faster than CALL_MAX_DTMF_PER_SECOND',
    registers: [this.registry],
  });
  readonly interruptions = new Counter({
    name: 'stsgate_interruptions_total',
    help: 'Barge-ins sent to AVR Core, by provider',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly bargeInReactionSeconds = new Histogram({
    name: 'stsgate_barge_in_reaction_seconds',
    help: "Caller's speech onset over agent audio (as the provider or VAD located it in the caller audio) to the interruption sent to AVR Core",
    labelNames: ['provider'] as const,
    buckets: [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3],
    registers: [this.registry],
  });
  readonly reconnects = new Counter({
    name: 'stsgate_provider_reconnects_total',
    help: 'Reconnections of a provider session during a call (a dropped socket, a retryable error), by provider',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly responseLatencySeconds = new Histogram({
    name: 'stsgate_response_latency_seconds',
    help: "Caller end of speech to the reply's first agent audio sent to AVR Core, where the provider reports the end of speech",
    labelNames: ['provider'] as const,
    buckets: [0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10],
    registers: [this.registry],
  });
  readonly earlyAudioDropped = new Counter({
    name: 'stsgate_early_audio_dropped_frames_total',
    help: 'Caller frames dropped because the provider was not ready and the early-audio buffer was full',
    registers: [this.registry],
  });
  readonly httpStreams = new Gauge({
    name: 'stsgate_http_streams_active',
    help: 'AVR HTTP requests in progress (asr: /speech-to-text-stream, llm: /prompt-stream, tts: /text-to-speech-stream)',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'stsgate_http_requests_total',
    help: 'AVR HTTP requests, by route and outcome',
    labelNames: ['route', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly providerConnectSeconds = new Histogram({
    name: 'stsgate_provider_connect_seconds',
    help: 'Time to open a provider session',
    labelNames: ['provider', 'outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /** Per-turn stage timings reported by composed agents (the cascade), labelled by the stage's provider. */
  readonly turnAsrFinalSeconds = turnHistogram('stsgate_turn_asr_final_seconds', 'Caller end of speech to the final transcript that ended the turn', this.registry);
  readonly turnLlmFirstTokenSeconds = turnHistogram('stsgate_turn_llm_first_token_seconds', 'LLM request to its first token', this.registry);
  readonly turnTtsFirstAudioSeconds = turnHistogram('stsgate_turn_tts_first_audio_seconds', 'First text sent to TTS to its first audio', this.registry);

  constructor(collectProcessMetrics = true) {
    if (!collectProcessMetrics) return;
    collectDefaultMetrics({ register: this.registry, prefix: 'stsgate_' });
    // prom-client adds three gauges named `*_total`, a suffix Prometheus keeps for counters; their per-type gauges
    // (`stsgate_nodejs_active_handles{type=...}` and the like) carry the same numbers.
    for (const name of ['active_handles', 'active_requests', 'active_resources']) this.registry.removeSingleMetric(`stsgate_nodejs_${name}_total`);
  }

  /** Where one call's runtime reports: its metrics, labelled with the call's provider. */
  callObserver(provider: string): CallRuntimeObserver {
    return { record: (metric) => this.recordCall(provider, metric) };
  }

  private recordCall(provider: string, metric: CallMetric): void {
    switch (metric.type) {
      case 'call_opened':
        this.activeCalls.inc();
        return;
      case 'call_closed':
        this.activeCalls.dec();
        this.callsTotal.inc({ provider, outcome: metric.outcome });
        this.callDurationSeconds.observe({ provider, outcome: metric.outcome }, metric.durationMs / 1000);
        return;
      case 'caller_audio':
        this.framesIn.inc();
        return;
      case 'agent_frames':
        this.framesOut.inc(metric.count);
        return;
      case 'late_agent_audio':
        this.lateAgentAudio.inc({ provider });
        return;
      case 'error':
        this.errors.inc({ kind: metric.kind, provider });
        return;
      case 'policy_close':
        this.policyCloses.inc({ kind: metric.kind, provider });
        return;
      case 'dtmf_dropped':
        this.dtmfDropped.inc();
        return;
      case 'early_audio_dropped':
        this.earlyAudioDropped.inc();
        return;
      case 'interruption':
        this.interruptions.inc({ provider });
        return;
      case 'barge_in_reaction':
        this.bargeInReactionSeconds.observe({ provider }, metric.durationMs / 1000);
        return;
      case 'provider_reconnecting':
        this.reconnects.inc({ provider: metric.provider });
        return;
      case 'provider_connect':
        this.providerConnectSeconds.observe({ provider, outcome: metric.outcome }, metric.durationMs / 1000);
        return;
      case 'response_latency':
        this.responseLatencySeconds.observe({ provider }, metric.durationMs / 1000);
        return;
      case 'turn_metrics': {
        const { asrFinal, llmFirstToken, ttsFirstAudio } = metric.metrics;
        if (asrFinal !== undefined) this.turnAsrFinalSeconds.observe({ provider: asrFinal.provider }, asrFinal.ms / 1000);
        if (llmFirstToken !== undefined) this.turnLlmFirstTokenSeconds.observe({ provider: llmFirstToken.provider }, llmFirstToken.ms / 1000);
        if (ttsFirstAudio !== undefined) this.turnTtsFirstAudioSeconds.observe({ provider: ttsFirstAudio.provider }, ttsFirstAudio.ms / 1000);
        return;
      }
      default: {
        // Compile-time check that every metric is recorded; a metric of a newer core is ignored.
        const unhandled: never = metric;
        return void unhandled;
      }
    }
  }
}

function turnHistogram(name: string, help: string, registry: Registry): Histogram<'provider'> {
  return new Histogram({
    name,
    help,
    labelNames: ['provider'] as const,
    buckets: [0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10],
    registers: [registry],
  });
}
