import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { envInt, zodProblems } from '@stsgate/core';
import type { ToolContext, ToolRunner, ToolSpec } from '@stsgate/core';
import { builtinTools, DEFAULT_AMI_TIMEOUT_MS, DEFAULT_AMI_URL } from './builtin-tools.js';
import { blankToUndefined, envHttpUrl } from './env.js';
import type { FetchImpl } from './http.js';
import { instructionsUrlTimeoutEnv } from './instructions.js';

export const DEFAULT_TOOL_TIMEOUT_MS = 10_000;
/** AVR's two tool directories, in AVR's order: `avr_tools` (where avr-app mounts its tools), then `tools` (the user's). */
export const DEFAULT_TOOLS_DIRS: readonly string[] = ['avr_tools', 'tools'];
/** Names every provider accepts (OpenAI, Gemini, ...). */
export const TOOL_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

/** What the host gives a tool for one invocation. */
/** A tool the agent may call. */
export interface AgentTool {
  /** Matches TOOL_NAME_PATTERN. */
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments object. */
  readonly parameters: Readonly<Record<string, unknown>>;
  /** Overrides the tool set's timeout for this tool. */
  readonly timeoutMs?: number;
  /** The result is sent to the model: a string as is, anything else JSON-encoded. */
  execute(args: Readonly<Record<string, unknown>>, context: ToolContext): unknown;
}

export interface ToolSetOptions {
  /** Longest a tool may run before its call is answered with an error (default 10 000 ms). */
  readonly timeoutMs?: number;
}

const MAX_ERROR_LENGTH = 500;

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function errorMessage(error: unknown): string {
  return clip(error instanceof Error ? error.message : String(error), MAX_ERROR_LENGTH);
}

/** The tools of one agent: specs for the provider, `run` for the host. `run` never throws. */
export class ToolSet implements ToolRunner {
  readonly specs: readonly ToolSpec[];
  private readonly tools: ReadonlyMap<string, AgentTool>;
  private readonly timeoutMs: number;

  constructor(tools: readonly AgentTool[], options: ToolSetOptions = {}) {
    const map = new Map<string, AgentTool>();
    for (const tool of tools) {
      if (!TOOL_NAME_PATTERN.test(tool.name)) throw new Error(`invalid tool name "${tool.name}"`);
      if (map.has(tool.name)) throw new Error(`tool "${tool.name}" is defined twice`);
      map.set(tool.name, tool);
    }
    this.tools = map;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
    this.specs = [...map.values()].map((tool) => ({ name: tool.name, description: tool.description, parameters: tool.parameters }));
  }

  get names(): string[] {
    return [...this.tools.keys()];
  }

  has(name: string): boolean {
    return this.tools.has(name);
  }

  /**
   * Runs a tool call from the model and returns the text to send back. Unknown tools, invalid arguments, a
   * failing handler, a timeout and the end of the call all produce an error text, never an exception.
   */
  async run(name: string, argumentsJson: string, context: ToolContext): Promise<string> {
    const { logger } = context;
    const tool = this.tools.get(name);
    if (tool === undefined) {
      const shown = clip(name, 64);
      logger.warn({ tool: shown }, 'the model called an unknown tool');
      return `Error: unknown tool "${shown}"`;
    }
    let args: Readonly<Record<string, unknown>>;
    try {
      const parsed: unknown = argumentsJson.trim() === '' ? {} : JSON.parse(argumentsJson);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        logger.warn({ tool: name }, 'tool arguments are not a JSON object');
        return `Error: the arguments of tool "${name}" must be a JSON object`;
      }
      args = parsed as Record<string, unknown>;
    } catch {
      logger.warn({ tool: name }, 'tool arguments are not valid JSON');
      return `Error: the arguments of tool "${name}" are not valid JSON`;
    }
    logger.info({ tool: name }, 'tool call');
    logger.debug({ tool: name, arguments: args }, 'tool call arguments');
    const started = performance.now();
    const outcome = await this.execute(tool, args, context);
    const durationMs = Math.round(performance.now() - started);
    if (outcome.ok) {
      logger.info({ tool: name, durationMs }, 'tool call done');
    } else {
      logger.warn({ tool: name, durationMs }, outcome.text);
    }
    logger.debug({ tool: name, result: outcome.text }, 'tool call result');
    return outcome.text;
  }

  private execute(tool: AgentTool, args: Readonly<Record<string, unknown>>, context: ToolContext): Promise<{ ok: boolean; text: string }> {
    const { name } = tool;
    const timeoutMs = tool.timeoutMs ?? this.timeoutMs;
    if (context.signal.aborted) return Promise.resolve({ ok: false, text: `Error: tool "${name}" was cancelled: the call ended` });
    return new Promise((resolve) => {
      // The tool's own signal: aborted when the call ends and when its time is up, so a timed-out tool stops its work.
      const cancel = new AbortController();
      let settled = false;
      const finish = (ok: boolean, text: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        context.signal.removeEventListener('abort', onAbort);
        if (!ok) cancel.abort();
        resolve({ ok, text });
      };
      const timer = setTimeout(() => finish(false, `Error: tool "${name}" timed out after ${timeoutMs} ms`), timeoutMs);
      const onAbort = (): void => finish(false, `Error: tool "${name}" was cancelled: the call ended`);
      context.signal.addEventListener('abort', onAbort, { once: true });
      let pending: Promise<unknown>;
      try {
        pending = Promise.resolve(tool.execute(args, { ...context, signal: cancel.signal }));
      } catch (error) {
        pending = Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      pending.then(
        (value) => {
          const text = resultText(value);
          if (text === undefined) finish(false, `Error: tool "${name}" returned a value that cannot be encoded as JSON`);
          else finish(true, text);
        },
        (error: unknown) => finish(false, `Error: tool "${name}" failed: ${errorMessage(error)}`),
      );
    });
  }
}

function resultText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value === undefined) return '';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return undefined;
  }
}

type UserHandler = (uuid: string, args: Readonly<Record<string, unknown>>) => unknown;

/** The AVR tool module contract (`module.exports = { name, description, input_schema, handler }`). */
const toolModuleSchema = z.object({
  name: z.string().refine((name) => name.trim() !== '', 'must not be empty'),
  // AVR's loaders default a missing description / input_schema; so do we (with a warning).
  description: z.string().optional(),
  input_schema: z
    .record(z.string(), z.unknown())
    .refine((schema) => schema['type'] === undefined || schema['type'] === 'object', { message: 'must describe an object ("type": "object")' })
    .optional(),
  handler: z.custom<UserHandler>((value) => typeof value === 'function', { message: 'must be a function (uuid, args) => string' }),
});

/** Provider-safe tool name: every other character becomes `_`, at most 64 characters. */
export function sanitizeToolName(name: string): string {
  return name.trim().replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64);
}

function isEsmScopeError(error: unknown): boolean {
  return error instanceof Error && /ES module scope|require is not defined|module is not defined/.test(error.message);
}

function loadToolModule(file: string, logger: Logger): AgentTool | undefined {
  const fileName = path.basename(file);
  const requireTool = createRequire(file);
  let exported: unknown;
  try {
    const resolved = requireTool.resolve(file);
    // A fresh load, so calling loadTools again picks up an edited tool (its own dependencies stay cached).
    delete requireTool.cache[resolved];
    exported = requireTool(resolved);
  } catch (error) {
    const hint = isEsmScopeError(error)
      ? ' (the file is loaded as an ES module: rename it to .cjs, or make sure no package.json above it declares "type": "module")'
      : '';
    logger.warn({ file: fileName, error: errorMessage(error) }, `tool module failed to load; skipped${hint}`);
    return undefined;
  }
  let parsed = toolModuleSchema.safeParse(exported);
  if (!parsed.success && typeof exported === 'object' && exported !== null && 'default' in exported) {
    const fromDefault = toolModuleSchema.safeParse((exported as { default: unknown }).default);
    if (fromDefault.success) parsed = fromDefault;
  }
  if (!parsed.success) {
    logger.warn({ file: fileName, problems: zodProblems(parsed.error) }, 'invalid tool module; skipped');
    return undefined;
  }
  const { handler, description, input_schema: inputSchema } = parsed.data;
  const name = sanitizeToolName(parsed.data.name);
  if (name !== parsed.data.name) logger.warn({ file: fileName, name }, 'tool name sanitised (allowed: letters, digits, _ and -, 64 at most)');
  if (description === undefined || description.trim() === '') logger.warn({ file: fileName, tool: name }, 'tool has no description: the model may not know when to use it');
  if (inputSchema === undefined) logger.warn({ file: fileName, tool: name }, 'tool has no input_schema: it takes no arguments');
  const parameters = { type: 'object', properties: {}, ...inputSchema };
  const owner = exported;
  return {
    name,
    description: description ?? '',
    parameters,
    execute: (args, context) => handler.call(owner, context.callId, args),
  };
}

/** The `.js`/`.cjs` tool modules of `dir` (dotfiles, other files and subdirectories ignored), in name order. */
function loadUserTools(dir: string, logger: Logger): AgentTool[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? (error as { code: unknown }).code : undefined;
    if (code === 'ENOENT') logger.info({ dir }, 'no tools directory; only built-in tools are available');
    else logger.warn({ dir, error: errorMessage(error) }, 'cannot read the tools directory; only built-in tools are available');
    return [];
  }
  const tools: AgentTool[] = [];
  for (const entry of entries.sort()) {
    const extension = path.extname(entry);
    if (entry.startsWith('.') || (extension !== '.js' && extension !== '.cjs')) {
      logger.debug({ file: entry }, 'not a tool module; ignored');
      continue;
    }
    const file = path.join(dir, entry);
    try {
      // statSync follows symlinks (Kubernetes ConfigMap volumes are made of them).
      if (!statSync(file).isFile()) {
        logger.debug({ file: entry }, 'not a regular file; ignored');
        continue;
      }
    } catch (error) {
      logger.warn({ file: entry, error: errorMessage(error) }, 'cannot read tool module; skipped');
      continue;
    }
    const tool = loadToolModule(file, logger);
    if (tool !== undefined) tools.push(tool);
  }
  return tools;
}

export interface LoadToolsOptions {
  /**
   * AVR tool directories (absolute, or relative to the working directory), in priority order: a tool whose name an
   * earlier directory already gave is skipped, as AVR's loaders look in `avr_tools` before `tools`. A missing
   * directory means no tools from it.
   */
  readonly dirs: readonly string[];
  readonly logger: Logger;
  /** Default handler timeout (10 000 ms). */
  readonly timeoutMs?: number;
  /** Tools present before the user's (e.g. `builtinTools()`); a user tool of the same name replaces one. */
  readonly builtins?: readonly AgentTool[];
}

/**
 * Loads the AVR tool modules of `dirs` (CommonJS, freshly required: call again to reload) on top of `builtins`.
 * Never throws for a bad tool file: it is skipped with a warning.
 */
export function loadTools(options: LoadToolsOptions): ToolSet {
  const { logger } = options;
  const dirs = options.dirs.map((dir) => path.resolve(dir));
  const tools = new Map<string, AgentTool>();
  for (const tool of options.builtins ?? []) tools.set(tool.name, tool);
  const userNames = new Set<string>();
  for (const dir of dirs) {
    for (const tool of loadUserTools(dir, logger)) {
      if (userNames.has(tool.name)) {
        logger.warn({ tool: tool.name, dir }, 'a tool module of the same name was loaded before (an earlier directory, or this one); this one is skipped');
        continue;
      }
      if (tools.has(tool.name)) logger.warn({ tool: tool.name, dir }, 'a user tool replaces the built-in tool of the same name');
      userNames.add(tool.name);
      tools.set(tool.name, tool);
    }
  }
  const set = new ToolSet([...tools.values()], options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
  logger.info({ dirs, tools: set.names }, 'tools loaded');
  return set;
}

/** `TOOLS_DIR`: one directory, or several separated by commas (or the platform's path separator). */
function toolDirs(value: string | undefined): string[] {
  const dirs = (value ?? '')
    .split(new RegExp(`[,${path.delimiter === ';' ? ';' : ':'}]`))
    .map((dir) => dir.trim())
    .filter((dir) => dir !== '');
  return (dirs.length === 0 ? DEFAULT_TOOLS_DIRS : dirs).map((dir) => path.resolve(dir));
}

/**
 * Agent settings shared by every provider: `TOOLS_DIR` (default `avr_tools,tools` like AVR, resolved against the
 * working directory, /usr/src/app in the container image), `AMI_URL`, `TOOL_TIMEOUT_MS`, `AMI_TIMEOUT_MS`,
 * `INSTRUCTIONS_URL_TIMEOUT_MS`. Merge its `shape` into an adapter's env schema.
 */
export const agentEnvSchema = z.object({
  TOOLS_DIR: z.preprocess(blankToUndefined, z.string().optional()).transform(toolDirs),
  AMI_URL: envHttpUrl().transform((url) => url ?? DEFAULT_AMI_URL),
  TOOL_TIMEOUT_MS: envInt(100, 600_000, DEFAULT_TOOL_TIMEOUT_MS),
  AMI_TIMEOUT_MS: envInt(100, 120_000, DEFAULT_AMI_TIMEOUT_MS),
  INSTRUCTIONS_URL_TIMEOUT_MS: instructionsUrlTimeoutEnv,
});

export type AgentEnv = z.output<typeof agentEnvSchema>;

/** The built-ins (`avr_transfer`, `avr_hangup`) plus the tools of the `TOOLS_DIR` directories. */
export function createToolSet(
  config: Pick<AgentEnv, 'TOOLS_DIR' | 'AMI_URL' | 'TOOL_TIMEOUT_MS' | 'AMI_TIMEOUT_MS'>,
  logger: Logger,
  options: { readonly fetchImpl?: FetchImpl } = {},
): ToolSet {
  return loadTools({
    dirs: config.TOOLS_DIR,
    logger,
    timeoutMs: config.TOOL_TIMEOUT_MS,
    builtins: builtinTools({
      amiUrl: config.AMI_URL,
      timeoutMs: config.AMI_TIMEOUT_MS,
      ...(options.fetchImpl === undefined ? {} : { fetchImpl: options.fetchImpl }),
    }),
  });
}
