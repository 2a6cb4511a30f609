import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  ToolSet,
  agentEnvSchema,
  avrHangupTool,
  builtinTools,
  createToolSet,
  loadTools,
  sanitizeToolName,
} from '../src/index.js';
import type { AgentTool, FetchImpl, ToolContext } from '../src/index.js';
import { captureLogger, closedPortUrl, deferred, json, startServer } from './helpers.js';
import type { CapturedLogger, RecordedRequest, TestServer } from './helpers.js';

const work = mkdtempSync(path.join(tmpdir(), 'stsgate-tools-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let dirCounter = 0;
function toolsDir(files: Record<string, string | Buffer>): string {
  const dir = path.join(work, `tools-${++dirCounter}`);
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  return dir;
}

const cjsTool = (name: string, body: string, extra = '') => `
module.exports = {
  name: ${JSON.stringify(name)},
  description: 'test tool ${name}',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  handler: ${body},
  ${extra}
};
`;

function context(log: CapturedLogger, overrides: Partial<ToolContext> = {}): ToolContext {
  return {
    callId: 'call-uuid-7',
    logger: log.logger,
    signal: new AbortController().signal,
    untilAgentAudioHeard: () => Promise.resolve(),
    ...overrides,
  };
}

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** A small avr-ami: answers /transfer and /hangup like the real one. */
async function amiServer(onRequest?: (request: RecordedRequest) => void, status = 200): Promise<TestServer> {
  const server = await startServer((request, response) => {
    const body = JSON.parse(request.body) as { uuid: string };
    if (status !== 200) return json(response, status, { message: 'Channel not found' });
    if (request.url === '/transfer') return json(response, 200, { message: `Call with UUID ${body.uuid} redirect successful` });
    if (request.url === '/hangup') return json(response, 200, { message: `Call with UUID ${body.uuid} hung up` });
    json(response, 404, { message: 'no route' });
  }, onRequest);
  servers.push(server);
  return server;
}

describe('loadTools', () => {
  const dir = toolsDir({
    'weather.js': cjsTool('get_weather', 'async (uuid, args) => `sunny in ${args.city} for ${uuid}`'),
    'lookup.cjs': cjsTool('lookup', '(uuid, args) => ({ found: true, city: args.city })'),
    'README.md': '# My tools\nmodule.exports = 1;',
    '.DS_Store': Buffer.from([0x00, 0x00, 0x00, 0x01, 0x42, 0x75, 0x64, 0x31, 0xff]),
    '._weather.js': Buffer.from([0x00, 0x05, 0x16, 0x07, 0xff, 0xfe]),
    'broken.js': 'module.exports = { name: "broken", handler: (',
    'throws.js': 'throw new Error("missing API key for the CRM");',
    'no-handler.js': 'module.exports = { name: "nohandler", description: "x", input_schema: { type: "object" } };',
    'bad-schema.js': cjsTool('bad_schema', '() => "x"').replace("{ type: 'object',", "{ type: 'string',"),
    'evil.js': cjsTool('../../etc/passwd', '() => "pwned?"'),
    'zz-twin.js': cjsTool('get_weather', '() => "second"'),
    'sub/nested.js': cjsTool('nested', '() => "nested"'),
    'dir.js/inner.js': cjsTool('inner', '() => "inner"'),
    'helper.mjs': 'export const name = "esm";',
  });
  const log = captureLogger();
  const tools = loadTools({ dirs: [dir], logger: log.logger });

  it('loads the valid CommonJS tools, sanitising names, and ignores everything else', () => {
    expect(tools.names.sort()).toEqual(['______etc_passwd', 'get_weather', 'lookup']);
    expect(tools.has('get_weather')).toBe(true);
    expect(tools.has('nested')).toBe(false);
    const spec = tools.specs.find((s) => s.name === 'get_weather');
    expect(spec).toEqual({
      name: 'get_weather',
      description: 'test tool get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    });
  });

  it('warns once for each bad module and never throws', () => {
    const warns = log.atLevel('warn');
    const byFile = (file: string) => warns.filter((line) => line['file'] === file);
    expect(byFile('broken.js')).toHaveLength(1);
    expect(byFile('broken.js')[0]?.msg).toMatch(/failed to load/);
    expect(byFile('throws.js')[0]?.['error']).toBe('missing API key for the CRM');
    expect(byFile('no-handler.js')[0]?.['problems']).toEqual(['handler: must be a function (uuid, args) => string']);
    expect(byFile('bad-schema.js')[0]?.msg).toMatch(/invalid tool module/);
    expect(byFile('evil.js')[0]?.msg).toMatch(/sanitised/);
    expect(warns.some((line) => line['tool'] === 'get_weather' && /same name/.test(line.msg))).toBe(true);
    for (const ignored of ['README.md', '.DS_Store', '._weather.js', 'sub', 'dir.js', 'helper.mjs']) expect(byFile(ignored)).toHaveLength(0);
  });

  it('keeps the first of two modules with the same name (name order)', async () => {
    expect(await tools.run('get_weather', '{"city":"Rome"}', context(log))).toBe('sunny in Rome for call-uuid-7');
  });

  it('reloads an edited tool when called again', async () => {
    const reloadDir = toolsDir({ 'greet.js': cjsTool('greet', '() => "hello v1"') });
    const reloadLog = captureLogger();
    const first = loadTools({ dirs: [reloadDir], logger: reloadLog.logger });
    expect(await first.run('greet', '{}', context(reloadLog))).toBe('hello v1');
    writeFileSync(path.join(reloadDir, 'greet.js'), cjsTool('greet', '() => "hello v2"'));
    const second = loadTools({ dirs: [reloadDir], logger: reloadLog.logger });
    expect(await second.run('greet', '{}', context(reloadLog))).toBe('hello v2');
  });

  it('accepts a tool without description or input_schema, as AVR does, with a warning', () => {
    const lenientDir = toolsDir({ 'bare.js': 'module.exports = { name: "bare", handler: () => "ok" };' });
    const lenientLog = captureLogger();
    const set = loadTools({ dirs: [lenientDir], logger: lenientLog.logger });
    expect(set.specs).toEqual([{ name: 'bare', description: '', parameters: { type: 'object', properties: {} } }]);
    expect(lenientLog.atLevel('warn')).toHaveLength(2);
  });

  it('a missing directory means built-ins only, with one info line', () => {
    const missingLog = captureLogger();
    const set = loadTools({ dirs: [path.join(work, 'does-not-exist')], logger: missingLog.logger, builtins: builtinTools() });
    expect(set.names).toEqual(['avr_transfer', 'avr_hangup']);
    expect(missingLog.atLevel('warn')).toHaveLength(0);
    expect(missingLog.atLevel('info').filter((line) => /no tools directory/.test(line.msg))).toHaveLength(1);
  });

  it('a user tool replaces a built-in of the same name, with a warning', async () => {
    const overrideDir = toolsDir({ 'hangup.js': cjsTool('avr_hangup', '() => "custom hangup"') });
    const overrideLog = captureLogger();
    const set = loadTools({ dirs: [overrideDir], logger: overrideLog.logger, builtins: builtinTools() });
    expect(set.names.sort()).toEqual(['avr_hangup', 'avr_transfer']);
    expect(await set.run('avr_hangup', '{}', context(overrideLog))).toBe('custom hangup');
    expect(overrideLog.atLevel('warn').some((line) => /replaces the built-in/.test(line.msg))).toBe(true);
  });

  it('explains a CommonJS .js tool that a "type": "module" package.json turns into an ES module; .cjs still loads', () => {
    const esmDir = toolsDir({
      'package.json': '{"type":"module"}',
      'cjs-in-esm.js': cjsTool('cjs_in_esm', '() => "x"'),
      'ok.cjs': cjsTool('ok_cjs', '() => "ok"'),
    });
    const esmLog = captureLogger();
    const set = loadTools({ dirs: [esmDir], logger: esmLog.logger });
    expect(set.names).toEqual(['ok_cjs']);
    const warn = esmLog.atLevel('warn').find((line) => line['file'] === 'cjs-in-esm.js');
    expect(warn?.msg).toMatch(/rename it to \.cjs/);
  });

  it('sanitizeToolName keeps provider-safe names', () => {
    expect(sanitizeToolName('../../etc/passwd')).toBe('______etc_passwd');
    expect(sanitizeToolName('get weather!')).toBe('get_weather_');
    expect(sanitizeToolName('x'.repeat(100))).toHaveLength(64);
  });
});

describe('ToolSet.run', () => {
  function tool(name: string, execute: AgentTool['execute'], timeoutMs?: number): AgentTool {
    return { name, description: name, parameters: { type: 'object', properties: {} }, execute, ...(timeoutMs === undefined ? {} : { timeoutMs }) };
  }
  const never = () => new Promise<never>(() => undefined);
  const set = new ToolSet(
    [
      tool('echo', (args, ctx) => `${ctx.callId}:${JSON.stringify(args)}`),
      tool('object', () => ({ temperature: 21, unit: 'C' })),
      tool('nothing', () => undefined),
      tool('throws', () => {
        throw new Error('boom');
      }),
      tool('rejects', () => Promise.reject(new Error('upstream said no'))),
      tool('slow', never),
      tool('circular', () => {
        const value: Record<string, unknown> = {};
        value['self'] = value;
        return value;
      }),
    ],
    { timeoutMs: 150 },
  );

  it('returns the handler result; non-strings are JSON-encoded', async () => {
    const log = captureLogger();
    expect(await set.run('echo', '{"a":1}', context(log))).toBe('call-uuid-7:{"a":1}');
    expect(await set.run('echo', '', context(log))).toBe('call-uuid-7:{}');
    expect(await set.run('object', '{}', context(log))).toBe('{"temperature":21,"unit":"C"}');
    expect(await set.run('nothing', '{}', context(log))).toBe('');
  });

  it('answers errors with text, never throws', async () => {
    const log = captureLogger();
    expect(await set.run('nope', '{}', context(log))).toBe('Error: unknown tool "nope"');
    expect(await set.run('echo', '{not json', context(log))).toBe('Error: the arguments of tool "echo" are not valid JSON');
    expect(await set.run('echo', '[1,2]', context(log))).toBe('Error: the arguments of tool "echo" must be a JSON object');
    expect(await set.run('throws', '{}', context(log))).toBe('Error: tool "throws" failed: boom');
    expect(await set.run('rejects', '{}', context(log))).toBe('Error: tool "rejects" failed: upstream said no');
    expect(await set.run('slow', '{}', context(log))).toBe('Error: tool "slow" timed out after 150 ms');
    expect(await set.run('circular', '{}', context(log))).toBe('Error: tool "circular" returned a value that cannot be encoded as JSON');
    expect(log.atLevel('warn').length).toBeGreaterThanOrEqual(7);
  });

  it('stops waiting when the call ends', async () => {
    const log = captureLogger();
    const controller = new AbortController();
    const pending = set.run('slow', '{}', context(log, { signal: controller.signal }));
    controller.abort();
    expect(await pending).toBe('Error: tool "slow" was cancelled: the call ended');
    expect(await set.run('echo', '{}', context(log, { signal: controller.signal }))).toBe('Error: tool "echo" was cancelled: the call ended');
  });

  it('aborts the signal a timed-out tool was given, so it can stop its work', async () => {
    let toolSignal: AbortSignal | undefined;
    const watched = new ToolSet(
      [
        tool('hangs', (_args, ctx) => {
          toolSignal = ctx.signal;
          return never();
        }),
      ],
      { timeoutMs: 50 },
    );
    const callSignal = new AbortController().signal;
    expect(await watched.run('hangs', '{}', context(captureLogger(), { signal: callSignal }))).toBe('Error: tool "hangs" timed out after 50 ms');
    expect(toolSignal?.aborted).toBe(true);
    expect(callSignal.aborted).toBe(false);
  });

  it('logs arguments and results only at debug level', async () => {
    const atInfo = captureLogger('info');
    await set.run('echo', '{"card":"4111-1111"}', context(atInfo));
    expect(atInfo.raw.join('')).not.toContain('4111-1111');
    expect(atInfo.atLevel('info').map((line) => line.msg)).toEqual(['tool call', 'tool call done']);

    const atDebug = captureLogger('debug');
    await set.run('echo', '{"card":"4111-1111"}', context(atDebug));
    expect(atDebug.atLevel('debug').filter((line) => JSON.stringify(line).includes('4111-1111'))).toHaveLength(2);
  });

  it('refuses invalid or duplicate names when built directly', () => {
    expect(() => new ToolSet([tool('bad name', () => '')])).toThrow(/invalid tool name/);
    expect(() => new ToolSet([tool('a', () => ''), tool('a', () => '')])).toThrow(/twice/);
  });
});

describe('built-in tools against avr-ami', () => {
  it('avr_transfer POSTs {uuid, exten, context, priority} with defaults and returns the message', async () => {
    const ami = await amiServer();
    const log = captureLogger();
    const tools = new ToolSet(builtinTools({ amiUrl: `${ami.baseUrl}/` }));
    const result = await tools.run('avr_transfer', '{"transfer_extension":"600"}', context(log));
    expect(result).toBe('Call with UUID call-uuid-7 redirect successful');
    expect(ami.requests).toHaveLength(1);
    expect(ami.requests[0]?.method).toBe('POST');
    expect(ami.requests[0]?.url).toBe('/transfer');
    expect(ami.requests[0]?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(ami.requests[0]?.body ?? '')).toEqual({ uuid: 'call-uuid-7', exten: '600', context: 'demo', priority: 1 });

    await tools.run('avr_transfer', '{"transfer_extension":601,"transfer_context":"sales","transfer_priority":"2"}', context(log));
    expect(JSON.parse(ami.requests[1]?.body ?? '')).toEqual({ uuid: 'call-uuid-7', exten: '601', context: 'sales', priority: 2 });
  });

  it('avr_hangup POSTs {uuid} and returns the message', async () => {
    const ami = await amiServer();
    const tools = new ToolSet(builtinTools({ amiUrl: ami.baseUrl }));
    expect(await tools.run('avr_hangup', '{}', context(captureLogger()))).toBe('Call with UUID call-uuid-7 hung up');
    expect(ami.requests.map((r) => [r.url, JSON.parse(r.body) as unknown])).toEqual([['/hangup', { uuid: 'call-uuid-7' }]]);
  });

  it('calls avr-ami only after untilAgentAudioHeard resolves', async () => {
    const events: string[] = [];
    const ami = await amiServer(() => events.push('ami request'));
    const recordingFetch: FetchImpl = (input, init) => {
      events.push('fetch');
      return fetch(input, init);
    };
    const tools = new ToolSet(builtinTools({ amiUrl: ami.baseUrl, fetchImpl: recordingFetch }));
    const heard = deferred();
    const waiting = deferred();
    const untilAgentAudioHeard = async (): Promise<void> => {
      events.push('wait');
      waiting.resolve();
      await heard.promise;
      events.push('heard');
    };
    const pending = tools.run('avr_hangup', '{}', context(captureLogger(), { untilAgentAudioHeard }));
    await waiting.promise;
    expect(events).toEqual(['wait']);
    heard.resolve();
    expect(await pending).toBe('Call with UUID call-uuid-7 hung up');
    expect(events).toEqual(['wait', 'heard', 'fetch', 'ami request']);

    events.length = 0;
    const heardTransfer = deferred();
    const pendingTransfer = tools.run('avr_transfer', '{"transfer_extension":"600"}', context(captureLogger(), {
      untilAgentAudioHeard: async () => {
        events.push('wait');
        await heardTransfer.promise;
        events.push('heard');
      },
    }));
    heardTransfer.resolve();
    await pendingTransfer;
    expect(events).toEqual(['wait', 'heard', 'fetch', 'ami request']);
  });

  it('does not call avr-ami when the call ends while waiting for the agent audio', async () => {
    const ami = await amiServer();
    let fetched = 0;
    const countingFetch: FetchImpl = (input, init) => {
      fetched += 1;
      return fetch(input, init);
    };
    const hangup = avrHangupTool({ amiUrl: ami.baseUrl, fetchImpl: countingFetch });
    const controller = new AbortController();
    const waiting = deferred();
    const pending = hangup.execute({}, context(captureLogger(), {
      signal: controller.signal,
      untilAgentAudioHeard: () => {
        waiting.resolve();
        return new Promise<void>(() => undefined);
      },
    }));
    await waiting.promise;
    controller.abort();
    expect(await pending).toBe('Error during hangup: the call has already ended');
    expect(fetched).toBe(0);
    expect(ami.requests).toHaveLength(0);
  });

  it('acts anyway when the agent audio is not confirmed within the cap', async () => {
    const ami = await amiServer();
    const log = captureLogger();
    const tools = new ToolSet(builtinTools({ amiUrl: ami.baseUrl, maxAudioWaitMs: 100 }));
    const result = await tools.run('avr_hangup', '{}', context(log, { untilAgentAudioHeard: () => new Promise<void>(() => undefined) }));
    expect(result).toBe('Call with UUID call-uuid-7 hung up');
    expect(log.atLevel('warn').some((line) => /not confirmed heard/.test(line.msg))).toBe(true);
  });

  it('reports avr-ami failures as "Error during ..." text', async () => {
    const failing = await amiServer(undefined, 500);
    const failingTools = new ToolSet(builtinTools({ amiUrl: failing.baseUrl }));
    expect(await failingTools.run('avr_transfer', '{"transfer_extension":"600"}', context(captureLogger()))).toBe(
      'Error during transfer: avr-ami answered HTTP 500: Channel not found',
    );
    const downTools = new ToolSet(builtinTools({ amiUrl: await closedPortUrl() }));
    expect(await downTools.run('avr_hangup', '{}', context(captureLogger()))).toBe('Error during hangup: avr-ami connection failed (ECONNREFUSED)');
  });

  it('validates the transfer arguments before waiting or calling avr-ami', async () => {
    const ami = await amiServer();
    const tools = new ToolSet(builtinTools({ amiUrl: ami.baseUrl }));
    const ctx = context(captureLogger(), { untilAgentAudioHeard: () => Promise.reject(new Error('must not be awaited')) });
    expect(await tools.run('avr_transfer', '{}', ctx)).toMatch(/^Error during transfer: invalid arguments: transfer_extension/);
    expect(await tools.run('avr_transfer', '{"transfer_extension":"600\\r\\nAction: Originate"}', ctx)).toMatch(/^Error during transfer: invalid arguments/);
    expect(ami.requests).toHaveLength(0);
  });
});

describe('agentEnvSchema and createToolSet', () => {
  it('has AVR defaults', () => {
    const parsed = agentEnvSchema.parse({ TOOLS_DIR: '', AMI_URL: '' });
    expect(parsed).toEqual({
      // AVR loads avr_tools (where avr-app mounts its tools) and tools.
      TOOLS_DIR: [path.resolve(process.cwd(), 'avr_tools'), path.resolve(process.cwd(), 'tools')],
      AMI_URL: 'http://127.0.0.1:6006',
      TOOL_TIMEOUT_MS: 10_000,
      AMI_TIMEOUT_MS: 5000,
      INSTRUCTIONS_URL_TIMEOUT_MS: 3000,
    });
    expect(agentEnvSchema.safeParse({ AMI_URL: 'avr-ami:6006', TOOL_TIMEOUT_MS: '-1' }).success).toBe(false);
    expect(agentEnvSchema.parse({ TOOLS_DIR: '/a, /b' }).TOOLS_DIR).toEqual(['/a', '/b']);
  });

  it('loads avr_tools and tools like AVR: the first directory wins a name both have', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'stsgate-two-dirs-'));
    const write = (dir: string, file: string, name: string, answer: string) => {
      mkdirSync(path.join(root, dir), { recursive: true });
      writeFileSync(path.join(root, dir, file), `module.exports = { name: '${name}', description: 'd', handler: async () => '${answer}' };\n`);
    };
    write('avr_tools', 'crm.js', 'crm_lookup', 'from avr_tools');
    write('tools', 'crm.js', 'crm_lookup', 'from tools');
    write('tools', 'weather.js', 'weather', 'sunny');
    const log = captureLogger();
    const set = loadTools({ dirs: [path.join(root, 'avr_tools'), path.join(root, 'tools')], logger: log.logger });
    expect(set.names.sort()).toEqual(['crm_lookup', 'weather']);
    return set.run('crm_lookup', '{}', context(log)).then((result) => {
      expect(result).toBe('from avr_tools');
      rmSync(root, { recursive: true, force: true });
    });
  });

  it('merges into an adapter schema and builds built-ins plus user tools', async () => {
    const ami = await amiServer();
    const dir = toolsDir({ 'weather.js': cjsTool('get_weather', '(uuid, args) => `rain in ${args.city}`') });
    const schema = z.object({ OPENAI_API_KEY: z.string(), ...agentEnvSchema.shape });
    const config = schema.parse({ OPENAI_API_KEY: 'sk-test', TOOLS_DIR: dir, AMI_URL: ami.baseUrl, TOOL_TIMEOUT_MS: '2000' });
    const log = captureLogger();
    const tools = createToolSet(config, log.logger);
    expect(tools.names).toEqual(['avr_transfer', 'avr_hangup', 'get_weather']);
    expect(await tools.run('get_weather', '{"city":"Oslo"}', context(log))).toBe('rain in Oslo');
    expect(await tools.run('avr_hangup', '{}', context(log))).toBe('Call with UUID call-uuid-7 hung up');
  });
});
