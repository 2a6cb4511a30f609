export {
  DEFAULT_INSTRUCTIONS_URL_TIMEOUT_MS,
  MAX_TEMPLATE_VALUE_LENGTH,
  checkInstructionFile,
  instructionSourceFromEnv,
  instructionsUrlFor,
  instructionsEnv,
  instructionsUrlTimeoutEnv,
  renderInstructions,
  resolveInstructions,
  sanitizeTemplateValue,
} from './instructions.js';
export type { InstructionCall, InstructionSource, InstructionsEnv, InstructionsEnvSchema, InstructionsEnvShape } from './instructions.js';
export {
  DEFAULT_TOOLS_DIRS,
  DEFAULT_TOOL_TIMEOUT_MS,
  TOOL_NAME_PATTERN,
  ToolSet,
  agentEnvSchema,
  createToolSet,
  loadTools,
  sanitizeToolName,
} from './tools.js';
export type { AgentEnv, AgentTool, LoadToolsOptions, ToolSetOptions } from './tools.js';
/** The tool contract lives in core; re-exported for tool authors who depend on the agent package. */
export type { ToolContext, ToolRunner } from '@stsgate/core';
export {
  DEFAULT_AMI_TIMEOUT_MS,
  DEFAULT_AMI_URL,
  DEFAULT_MAX_AUDIO_WAIT_MS,
  avrHangupTool,
  avrTransferTool,
  builtinTools,
} from './builtin-tools.js';
export type { BuiltinToolsOptions } from './builtin-tools.js';
export { isHttpUrl, safeUrl } from './env.js';
export type { FetchImpl } from './http.js';
