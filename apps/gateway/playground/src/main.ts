// The playground page: the call form, live meters and statistics, and the conversation timeline.
import { PlaygroundCall, type CallEvent } from './call.js';

type EntryKind = 'user' | 'agent' | 'turn' | 'barge-in' | 'error' | 'info';

/** Timeline entries kept on the page (the oldest go first). */
const MAX_ENTRIES = 500;
/** The meters' floor. */
const METER_MIN_DBFS = -70;

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`the page has no #${id}`);
  return found;
}

const form = element('call-form', HTMLFormElement);
const urlInput = element('url', HTMLInputElement);
const uuidInput = element('uuid', HTMLInputElement);
const fromInput = element('from', HTMLInputElement);
const toInput = element('to', HTMLInputElement);
const tokenInput = element('token', HTMLInputElement);
const echoCancellationInput = element('echo-cancellation', HTMLInputElement);
const callButton = element('call', HTMLButtonElement);
const hangUpButton = element('hang-up', HTMLButtonElement);
const status = element('status', HTMLParagraphElement);
const notice = element('notice', HTMLParagraphElement);
const callerMeter = element('caller-level', HTMLMeterElement);
const callerState = element('caller-state', HTMLSpanElement);
const agentMeter = element('agent-level', HTMLMeterElement);
const agentState = element('agent-state', HTMLSpanElement);
const statTurns = element('stat-turns', HTMLElement);
const statLastLatency = element('stat-last-latency', HTMLElement);
const statMedianLatency = element('stat-median-latency', HTMLElement);
const statBargeIns = element('stat-barge-ins', HTMLElement);
const statAgentAudio = element('stat-agent-audio', HTMLElement);
const statErrors = element('stat-errors', HTMLElement);
const timeline = element('timeline', HTMLOListElement);

let call: PlaygroundCall | undefined;
let latencies: number[] = [];
let bargeIns = 0;
let errors = 0;

/** The gateway serving this page, as a WebSocket URL (any path is a call; `..` keeps a reverse proxy's prefix). */
function defaultGatewayUrl(): string {
  const url = new URL('..', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

function callUrl(): URL {
  const url = new URL(urlInput.value.trim());
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new Error('the gateway URL must start with ws:// or wss://');
  for (const [name, input] of [['from', fromInput], ['to', toInput], ['token', tokenInput]] as const) {
    const value = input.value.trim();
    if (value !== '') url.searchParams.set(name, value);
  }
  return url;
}

function setState(state: 'idle' | 'connecting' | 'in-call' | 'ended', text: string): void {
  status.dataset.state = state;
  status.textContent = text;
  const busy = state === 'connecting' || state === 'in-call';
  callButton.disabled = busy;
  hangUpButton.disabled = !busy;
  for (const input of [urlInput, uuidInput, fromInput, toInput, tokenInput, echoCancellationInput]) input.disabled = busy;
}

function addEntry(kind: EntryKind, at: number, who: string, text: string, data: Record<string, string> = {}): void {
  const item = document.createElement('li');
  item.className = `entry ${kind}`;
  Object.assign(item.dataset, data);
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = `${at.toFixed(1)} s`;
  const label = document.createElement('span');
  label.className = 'who';
  label.textContent = who;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  item.append(time, label, body);
  timeline.append(item);
  while (timeline.children.length > MAX_ENTRIES) timeline.firstElementChild?.remove();
  item.scrollIntoView({ block: 'nearest' });
}

function setStat(target: HTMLElement, text: string, value: number): void {
  target.textContent = text;
  target.dataset.value = String(value);
}

function resetStats(): void {
  latencies = [];
  bargeIns = 0;
  errors = 0;
  timeline.replaceChildren();
  setStat(statTurns, '0', 0);
  setStat(statLastLatency, '–', 0);
  setStat(statMedianLatency, '–', 0);
  setStat(statBargeIns, '0', 0);
  setStat(statAgentAudio, '0.0 s', 0);
  setStat(statErrors, '0', 0);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function showLevel(meter: HTMLMeterElement, state: HTMLSpanElement, dbfs: number, speaking: boolean): void {
  meter.value = Math.max(METER_MIN_DBFS, Math.min(0, dbfs));
  state.textContent = speaking ? 'speaking' : 'quiet';
  state.classList.toggle('speaking', speaking);
}

function onCallEvent(event: CallEvent): void {
  switch (event.type) {
    case 'connected':
      setState('in-call', 'In call: speak, and the agent answers');
      addEntry('info', event.at, 'Call', `connected as ${uuidInput.value}`);
      return;
    case 'transcript':
      addEntry(event.role, event.at, event.role === 'user' ? 'You' : 'Agent', event.text);
      return;
    case 'turn':
      latencies.push(event.latencyMs);
      setStat(statTurns, String(latencies.length), latencies.length);
      setStat(statLastLatency, `${event.latencyMs} ms`, event.latencyMs);
      setStat(statMedianLatency, `${Math.round(median(latencies))} ms`, Math.round(median(latencies)));
      addEntry('turn', event.at, 'Turn', `agent answered ${event.latencyMs} ms after you stopped talking`, { latencyMs: String(event.latencyMs) });
      return;
    case 'barge_in':
      bargeIns++;
      setStat(statBargeIns, String(bargeIns), bargeIns);
      addEntry(
        'barge-in',
        event.at,
        'Barge-in',
        event.wasSpeaking
          ? `interruption: agent silent after ${event.silentAfterMs} ms (incl. ${event.outputLatencyMs} ms output latency), ${(event.discardedMs / 1000).toFixed(1)} s of reply dropped`
          : 'interruption while the agent was not playing anything',
        {
          silentAfterMs: String(event.silentAfterMs),
          outputLatencyMs: String(event.outputLatencyMs),
          discardedMs: String(event.discardedMs),
          wasSpeaking: String(event.wasSpeaking),
        },
      );
      return;
    case 'error':
      errors++;
      setStat(statErrors, String(errors), errors);
      addEntry('error', event.at, 'Error', event.message);
      return;
    case 'levels':
      showLevel(callerMeter, callerState, event.callerDbfs, event.callerSpeaking);
      showLevel(agentMeter, agentState, event.agentDbfs, event.agentSpeaking);
      setStat(statAgentAudio, `${(event.agentAudibleMs / 1000).toFixed(1)} s`, event.agentAudibleMs);
      return;
    case 'ended':
      call = undefined;
      showLevel(callerMeter, callerState, METER_MIN_DBFS, false);
      showLevel(agentMeter, agentState, METER_MIN_DBFS, false);
      addEntry('info', event.at, 'Call', `ended: ${event.reason}`);
      setState('ended', `Call ended: ${event.reason}`);
      uuidInput.value = crypto.randomUUID();
      return;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (call !== undefined) return;
  let url: URL;
  try {
    url = callUrl();
  } catch (error) {
    setState('idle', error instanceof Error ? error.message : String(error));
    return;
  }
  resetStats();
  setState('connecting', 'Connecting…');
  call = new PlaygroundCall({ url, uuid: uuidInput.value.trim() || crypto.randomUUID(), echoCancellation: echoCancellationInput.checked }, onCallEvent);
  void call.start();
});

hangUpButton.addEventListener('click', () => call?.hangUp());
window.addEventListener('pagehide', () => call?.hangUp());

urlInput.value = defaultGatewayUrl();
if (!window.isSecureContext || typeof AudioWorkletNode === 'undefined') {
  // Browsers give microphones and audio worklets only to https:// pages and to http://localhost.
  notice.hidden = false;
  setState('idle', 'Unavailable here: open this page over https:// or on http://localhost.');
  callButton.disabled = true;
} else {
  uuidInput.value = crypto.randomUUID();
  setState('idle', 'Ready: press Call and allow the microphone.');
}
