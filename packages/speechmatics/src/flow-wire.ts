/**
 * Flow (conversational agent) wire shapes: the `StartConversation` we send, tool conversion, and a parser for
 * every server message. Agent audio is binary PCM s16le, always 16 kHz mono.
 */
import type { ToolSpec } from '@stsgate/core';
import { z } from 'zod';
import { audioAddedSeq, idOf, noticeOf, parseEnvelope, transcriptSchema } from './common-wire.js';
import type { Notice, TranscriptMessage } from './common-wire.js';

export const DEFAULT_FLOW_URL = 'wss://flow.api.speechmatics.com/v1/flow';
/** The agent template avr-sts-speechmatics uses. */
export const DEFAULT_TEMPLATE_ID = '094671aa-4b53-496d-a4d1-ceea2b9736b9:latest';
export const FLOW_OUTPUT_SAMPLE_RATE = 16000;
export const FLOW_APP_ID = 'stsgate';

/** `ws://host:port` (the JS client's form) gets `/v1/flow`; a URL with a path is used as given. Adds `jwt`, `sm-app`. */
export function flowConnectUrl(base: string, jwt: string, appId = FLOW_APP_ID): string {
  const url = new URL(base);
  if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/v1/flow';
  url.searchParams.set('jwt', jwt);
  url.searchParams.set('sm-app', appId);
  return url.toString();
}

/** Flow tool parameters may only be these scalar types. */
const FLOW_PARAMETER_TYPES = new Set(['integer', 'number', 'string', 'boolean']);

/** A Flow tool parameter: its type, and optionally a description, the allowed values and an example (a string). */
export interface FlowToolParameter {
  readonly type: string;
  readonly description?: string;
  readonly enum?: readonly (string | number)[];
  readonly example?: string;
}

export interface FlowTool {
  readonly type: 'function';
  readonly function: {
    readonly name: string;
    readonly description: string;
    readonly parameters: {
      readonly type: 'object';
      readonly properties: Record<string, FlowToolParameter>;
      readonly required?: readonly string[];
    };
  };
}

const enumSchema = z.array(z.union([z.string(), z.number()])).min(1);
const exampleSchema = z.union([z.string(), z.number(), z.boolean()]).transform(String);

/** A host (JSON Schema) property as a Flow parameter of `type`: what Flow cannot express is left out. */
function flowParameter(type: string, property: Record<string, unknown>): FlowToolParameter {
  const description = property['description'];
  const allowed = enumSchema.safeParse(property['enum']);
  const example = exampleSchema.safeParse(property['example']);
  return {
    type,
    ...(typeof description === 'string' ? { description } : {}),
    ...(allowed.success ? { enum: allowed.data } : {}),
    ...(example.success ? { example: example.data } : {}),
  };
}

/** Host tools as Flow tools; a tool with a parameter Flow cannot express is left out (with the reason). */
export function flowTools(tools: readonly ToolSpec[]): { tools: FlowTool[]; skipped: { name: string; reason: string }[] } {
  const out: FlowTool[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const tool of tools) {
    const properties: Record<string, FlowToolParameter> = {};
    const schema = tool.parameters;
    const rawProperties = schema['properties'];
    let problem: string | undefined;
    if (rawProperties !== undefined && (typeof rawProperties !== 'object' || rawProperties === null)) problem = 'properties is not an object';
    for (const [name, value] of Object.entries((rawProperties ?? {}) as Record<string, unknown>)) {
      const property = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
      const type = property['type'];
      if (typeof type !== 'string' || !FLOW_PARAMETER_TYPES.has(type)) {
        problem = `parameter "${name}" has type ${JSON.stringify(type) ?? 'undefined'}; Flow only takes integer, number, string or boolean`;
        break;
      }
      properties[name] = flowParameter(type, property);
    }
    if (problem !== undefined) {
      skipped.push({ name: tool.name, reason: problem });
      continue;
    }
    const required = Array.isArray(schema['required']) ? schema['required'].filter((entry): entry is string => typeof entry === 'string' && entry in properties) : [];
    out.push({
      type: 'function',
      function: {
        name: tool.name,
        description: tool.description,
        parameters: { type: 'object', properties, ...(required.length === 0 ? {} : { required }) },
      },
    });
  }
  return { tools: out, skipped };
}

export interface StartConversation {
  readonly message: 'StartConversation';
  readonly conversation_config: { readonly template_id: string; readonly template_variables: Readonly<Record<string, string>> };
  readonly audio_format: { readonly type: 'raw'; readonly encoding: 'pcm_s16le'; readonly sample_rate: number };
  readonly tools?: readonly FlowTool[];
}

export function buildStartConversation(settings: {
  readonly templateId: string;
  readonly templateVariables: Readonly<Record<string, string>>;
  readonly sampleRate: number;
  readonly tools: readonly FlowTool[];
}): StartConversation {
  return {
    message: 'StartConversation',
    conversation_config: { template_id: settings.templateId, template_variables: settings.templateVariables },
    audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: settings.sampleRate },
    ...(settings.tools.length === 0 ? {} : { tools: settings.tools }),
  };
}

export type FlowClientMessage =
  | StartConversation
  | { readonly message: 'AudioReceived'; readonly seq_no: number }
  | { readonly message: 'AudioEnded'; readonly last_seq_no: number }
  | { readonly message: 'ToolResult'; readonly id: string; readonly status: 'ok' | 'rejected' | 'failed'; readonly content: string }
  | { readonly message: 'AddInput'; readonly input: string; readonly interrupt_response: boolean; readonly immediate: boolean };

const responseSchema = z.object({ content: z.string().default(''), start_time: z.number().optional(), end_time: z.number().optional() });
const toolInvokeSchema = z.object({
  id: z.string().min(1),
  function: z.object({ name: z.string().min(1), arguments: z.record(z.string(), z.unknown()).default({}) }),
});

export type FlowServerMessage =
  | { kind: 'conversation_started'; id: string | undefined }
  | { kind: 'audio_added'; seqNo: number }
  | { kind: 'transcript'; message: TranscriptMessage }
  | { kind: 'response_started' | 'response_completed' | 'response_interrupted'; content: string }
  | { kind: 'tool_invoke'; id: string; name: string; argumentsJson: string }
  | { kind: 'conversation_ending' | 'conversation_ended' }
  | Notice
  /** Debug output (`Debug`, `prompt`) this adapter does not use. */
  | { kind: 'ignored'; message: string }
  | { kind: 'invalid'; reason: string };

/** Never throws: anything unusable is `invalid`, with a reason that holds no conversation text. */
export function parseFlowMessage(text: string): FlowServerMessage {
  const envelope = parseEnvelope(text);
  if (!envelope.ok) return { kind: 'invalid', reason: envelope.reason };
  const { name, json } = envelope;
  switch (name) {
    case 'ConversationStarted':
      return { kind: 'conversation_started', id: idOf(json) };
    case 'AudioAdded': {
      const seqNo = audioAddedSeq(json);
      return seqNo === undefined ? { kind: 'invalid', reason: 'AudioAdded without seq_no' } : { kind: 'audio_added', seqNo };
    }
    case 'AddTranscript':
    case 'AddPartialTranscript': {
      const parsed = transcriptSchema.safeParse(json);
      return parsed.success ? { kind: 'transcript', message: parsed.data } : { kind: 'invalid', reason: `malformed ${name}` };
    }
    case 'ResponseStarted':
    case 'ResponseCompleted':
    case 'ResponseInterrupted': {
      const parsed = responseSchema.safeParse(json);
      if (!parsed.success) return { kind: 'invalid', reason: `malformed ${name}` };
      const kind = name === 'ResponseStarted' ? 'response_started' : name === 'ResponseCompleted' ? 'response_completed' : 'response_interrupted';
      return { kind, content: parsed.data.content };
    }
    case 'ToolInvoke': {
      const parsed = toolInvokeSchema.safeParse(json);
      if (!parsed.success) return { kind: 'invalid', reason: 'malformed ToolInvoke' };
      return { kind: 'tool_invoke', id: parsed.data.id, name: parsed.data.function.name, argumentsJson: JSON.stringify(parsed.data.function.arguments) };
    }
    case 'ConversationEnding':
      return { kind: 'conversation_ending' };
    case 'ConversationEnded':
      return { kind: 'conversation_ended' };
    case 'Info':
    case 'Warning':
    case 'Error':
      return noticeOf(name, json);
    case 'Debug':
    case 'prompt':
      return { kind: 'ignored', message: name };
    default:
      return { kind: 'invalid', reason: `unknown message "${name.slice(0, 40)}"` };
  }
}
