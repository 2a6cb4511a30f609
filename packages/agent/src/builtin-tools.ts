import { z } from 'zod';
import { zodProblems } from '@stsgate/core';
import { blankToUndefined } from './env.js';
import { RequestFailure, requestText } from './http.js';
import type { FetchImpl } from './http.js';
import type { ToolContext } from '@stsgate/core';
import type { AgentTool } from './tools.js';

export const DEFAULT_AMI_URL = 'http://127.0.0.1:6006';
export const DEFAULT_AMI_TIMEOUT_MS = 5000;
/** Longest a call-control tool waits for the agent's last words to be heard before acting anyway. */
export const DEFAULT_MAX_AUDIO_WAIT_MS = 30_000;

export interface BuiltinToolsOptions {
  /** avr-ami base URL (default http://127.0.0.1:6006). */
  readonly amiUrl?: string;
  /** Timeout of the AMI request (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Cap on `untilAgentAudioHeard` (default 30 000 ms); past it the action goes ahead with a warning. */
  readonly maxAudioWaitMs?: number;
  readonly fetchImpl?: FetchImpl;
}

interface AmiSettings {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly maxAudioWaitMs: number;
  readonly fetchImpl: FetchImpl;
}

function settings(options: BuiltinToolsOptions): AmiSettings {
  return {
    baseUrl: (options.amiUrl ?? DEFAULT_AMI_URL).replace(/\/+$/, ''),
    timeoutMs: options.timeoutMs ?? DEFAULT_AMI_TIMEOUT_MS,
    maxAudioWaitMs: options.maxAudioWaitMs ?? DEFAULT_MAX_AUDIO_WAIT_MS,
    fetchImpl: options.fetchImpl ?? fetch,
  };
}

/** Waits until the agent's audio so far has been heard, the cap passes, or the call ends. */
function agentAudioHeard(context: ToolContext, maxWaitMs: number): Promise<'heard' | 'cap' | 'ended'> {
  if (context.signal.aborted) return Promise.resolve('ended');
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: 'heard' | 'cap' | 'ended'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      context.signal.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    const timer = setTimeout(() => finish('cap'), maxWaitMs);
    const onAbort = (): void => finish('ended');
    context.signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve()
      .then(() => context.untilAgentAudioHeard())
      .then(
        () => finish('heard'),
        (error: unknown) => {
          context.logger.debug({ error: error instanceof Error ? error.message : String(error) }, 'agent audio wait failed; acting now');
          finish('heard');
        },
      );
  });
}

/** Waits for the agent's audio, then POSTs to avr-ami and returns its `message` (or an `Error during <label>: ...` text). */
async function callAmi(
  ami: AmiSettings,
  tool: string,
  label: string,
  route: string,
  body: Readonly<Record<string, unknown>>,
  context: ToolContext,
): Promise<string> {
  const { logger } = context;
  const waited = await agentAudioHeard(context, ami.maxAudioWaitMs);
  if (waited === 'ended') return `Error during ${label}: the call has already ended`;
  if (waited === 'cap') logger.warn({ tool, maxAudioWaitMs: ami.maxAudioWaitMs }, 'agent audio not confirmed heard in time; acting now');
  logger.info({ tool }, `requesting the ${label} from avr-ami`);
  let response;
  try {
    // Not tied to the call's signal: once sent, the request is seen through (a hangup ends the call by design).
    response = await requestText(ami.fetchImpl, `${ami.baseUrl}${route}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      timeoutMs: ami.timeoutMs,
      maxBytes: 64 * 1024,
    });
  } catch (error) {
    const reason = error instanceof RequestFailure ? error.message : String(error);
    return `Error during ${label}: avr-ami ${reason}`;
  }
  let message: string | undefined;
  try {
    const parsed: unknown = JSON.parse(response.text);
    if (typeof parsed === 'object' && parsed !== null && 'message' in parsed && typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // not JSON: answered below with the status
  }
  if (!response.ok) return `Error during ${label}: avr-ami answered HTTP ${response.status}${message === undefined ? '' : `: ${message}`}`;
  return message ?? `${label} requested`;
}

// Extensions and contexts go into an AMI action: no whitespace or control characters, bounded length.
const transferArgsSchema = z.object({
  transfer_extension: z
    .union([z.string(), z.number()])
    .transform((value) => String(value).trim())
    .pipe(z.string().regex(/^[\w*#+.-]{1,80}$/, 'must be a dialplan extension (letters, digits, * # + _ . -)')),
  transfer_context: z.preprocess(blankToUndefined, z.string().trim().regex(/^[\w.-]{1,80}$/, 'must be a dialplan context name').default('demo')),
  transfer_priority: z.preprocess(blankToUndefined, z.coerce.number().pipe(z.number().int().min(1).max(1_000_000)).default(1)),
});

/** `avr_transfer`: redirects the call to an extension via avr-ami, after the agent's last words. */
export function avrTransferTool(options: BuiltinToolsOptions = {}): AgentTool {
  const ami = settings(options);
  return {
    name: 'avr_transfer',
    description:
      'Transfers the call to a designated internal extension when the user requests to speak with an internal operator or be redirected to another extension. Optional context and priority information may be included to support proper call handling and routing.',
    parameters: {
      type: 'object',
      properties: {
        transfer_extension: { type: 'string', description: 'The transfer extension to transfer the call to.' },
        transfer_context: { type: 'string', description: 'The context to transfer the call to.' },
        transfer_priority: { type: 'string', description: 'The priority of the transfer.' },
      },
      required: ['transfer_extension'],
    },
    timeoutMs: ami.maxAudioWaitMs + ami.timeoutMs + 1000,
    async execute(args, context) {
      const parsed = transferArgsSchema.safeParse(args);
      if (!parsed.success) return `Error during transfer: invalid arguments: ${zodProblems(parsed.error).join('; ')}`;
      const { transfer_extension: exten, transfer_context: dialContext, transfer_priority: priority } = parsed.data;
      return callAmi(ami, 'avr_transfer', 'transfer', '/transfer', { uuid: context.callId, exten, context: dialContext, priority }, context);
    },
  };
}

/** `avr_hangup`: ends the call via avr-ami, after the agent's last words. */
export function avrHangupTool(options: BuiltinToolsOptions = {}): AgentTool {
  const ami = settings(options);
  return {
    name: 'avr_hangup',
    description:
      'Ends the call when the customer has no further information to request, after all relevant actions have been completed, or when the customer explicitly says goodbye, ensuring a clean and graceful termination of the interaction.',
    parameters: { type: 'object', properties: {}, required: [] },
    timeoutMs: ami.maxAudioWaitMs + ami.timeoutMs + 1000,
    execute: (_args, context) => callAmi(ami, 'avr_hangup', 'hangup', '/hangup', { uuid: context.callId }, context),
  };
}

/** AVR's built-in call-control tools, `avr_transfer` and `avr_hangup`. */
export function builtinTools(options: BuiltinToolsOptions = {}): AgentTool[] {
  return [avrTransferTool(options), avrHangupTool(options)];
}
