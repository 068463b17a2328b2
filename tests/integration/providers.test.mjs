// providers.test.mjs — provider adapters end to end: the official openai SDK talks to the
// worker, which speaks Anthropic Messages and Gemini generateContent to the mock provider
// (same process, other paths). Content, finish_reason, usage, tool calls (stream and
// not), failover on Anthropic 529 / Gemini 429, a client-fault 400 answered OpenAI-shaped
// without the provider's body, and the credentials/model the provider actually received.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  itest, deployment, assertOpenAIError, assertNoLeak, hello, lastRequest,
  MASTER_KEY, PROVIDER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];
const tools = [{
  type: 'function',
  function: { name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } },
}];
const scriptedArgs = { city: 'Paris', days: 3, tags: ['a "quoted" one', 'ü'] };

// Groups: claude → claude-1 (anthropic/claude-mock), gemini → gemini-1 (gemini/gemini-mock),
// mixed → both (anthropic weight 100, gemini weight 1: the anthropic one is tried first).
async function setup(env) {
  const a = await env.startMock('claude-1');
  const g = await env.startMock('gemini-1');
  const cluster = await env.startCluster({
    model_list: [
      deployment('claude', { model: 'anthropic/claude-mock', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY' }),
      deployment('gemini', { model: 'gemini/gemini-mock', api_base: `${g.base}/v1beta`, api_key: LITERAL_KEY }),
      deployment('mixed', { model: 'anthropic/claude-mock', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 100 }, { id: 'mixed-claude' }),
      deployment('mixed', { model: 'gemini/gemini-mock', api_base: `${g.base}/v1beta`, api_key: LITERAL_KEY, weight: 1 }, { id: 'mixed-gemini' }),
      deployment('gemini-first', { model: 'gemini/gemini-mock', api_base: `${g.base}/v1beta`, api_key: LITERAL_KEY, weight: 100 }, { id: 'gf-gemini' }),
      deployment('gemini-first', { model: 'anthropic/claude-mock', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1 }, { id: 'gf-claude' }),
    ],
    // mid_stream_fallback error: the cut test pins the error event (continuation: midstream.test.mjs)
    router_settings: { num_retries: 2, timeout: 10, mid_stream_fallback: 'error' },
  });
  const w = cluster.worker;
  const client = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { a, g, cluster, w, client };
}

async function collect(stream) {
  let content = '', finish = null, usage = null, chunks = 0;
  const calls = [];
  for await (const ch of stream) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices || []) {
      if (c.delta?.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
      for (const tc of c.delta?.tool_calls || []) {
        const slot = calls[tc.index] ??= { id: undefined, name: '', args: '' };
        if (tc.id) slot.id = tc.id;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.args += tc.function.arguments;
      }
    }
  }
  return { content, finish, usage, chunks, calls };
}

for (const [group, mockName, fmt, authHeader, authValue] of [
  ['claude', 'claude-1', 'anthropic', 'x-api-key', PROVIDER_KEY],
  ['gemini', 'gemini-1', 'gemini', 'x-goog-api-key', LITERAL_KEY],
]) {
  itest(`${fmt}: non-stream and stream answers equal the mock's, usage, auth and model upstream`, async (env) => {
    const { a, g, client } = await setup(env);
    const mock = fmt === 'anthropic' ? a : g;
    const { data, response } = await client.chat.completions.create({ model: group, messages }).withResponse();
    assert.equal(response.headers.get('x-llmesh-deployment'), `${group}-1`);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(data.choices[0].message.content, hello(mockName));
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0, JSON.stringify(data.usage));
    const lr = lastRequest(await mock.stats());
    assert.equal(lr.raw.format, fmt);
    assert.equal(lr.headers[authHeader], authValue, `${authHeader} carries the provider key`);
    assert.ok(!lr.authorization || !lr.authorization.includes(MASTER_KEY), 'the master key never goes upstream');
    assert.equal(lr.model, fmt === 'anthropic' ? 'claude-mock' : 'gemini-mock', 'upstream model, prefix stripped');
    if (fmt === 'anthropic') assert.ok(lr.headers['anthropic-version'], 'anthropic-version sent');
    else assert.match(lr.raw.path, /\/v1beta\/models\/gemini-mock:generateContent$/);

    const stream = await client.chat.completions.create({ model: group, messages, stream: true,
      stream_options: { include_usage: true } });
    const s = await collect(stream);
    assert.equal(s.content, hello(mockName));
    assert.equal(s.finish, 'stop');
    assert.ok(s.chunks >= 3, `several chunks (${s.chunks})`);
    assert.ok(s.usage && s.usage.prompt_tokens > 0 && s.usage.completion_tokens > 0, `usage chunk: ${JSON.stringify(s.usage)}`);
    const lr2 = lastRequest(await mock.stats());
    if (fmt === 'gemini') assert.match(lr2.raw.path + '?' + lr2.raw.query, /:streamGenerateContent\?.*alt=sse/);
    else assert.equal(lr2.body.stream, true);

    const noUsage = await collect(await client.chat.completions.create({ model: group, messages, stream: true }));
    assert.equal(noUsage.content, hello(mockName));
    assert.equal(noUsage.usage, null, 'no usage chunk unless include_usage');
  });

  itest(`${fmt}: a scripted tool call comes back as OpenAI tool_calls, stream and non-stream`, async (env) => {
    const { a, g, client } = await setup(env);
    const mock = fmt === 'anthropic' ? a : g;
    const fault = { content: '', tool_calls: [{ name: 'get_weather', arguments: scriptedArgs, id: 'call_w1' }] };
    await mock.faults(fault, fault);
    const data = await client.chat.completions.create({ model: group, messages, tools });
    const m = data.choices[0].message;
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
    assert.equal(m.tool_calls.length, 1);
    assert.equal(m.tool_calls[0].type, 'function');
    assert.equal(m.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), scriptedArgs);
    assert.ok(m.tool_calls[0].id, 'tool call id');
    const sent = lastRequest(await mock.stats()).body;
    if (fmt === 'anthropic') assert.equal(sent.tools[0].name, 'get_weather');
    else assert.equal(sent.tools[0].functionDeclarations[0].name, 'get_weather');

    const s = await collect(await client.chat.completions.create({ model: group, messages, tools, stream: true }));
    assert.equal(s.finish, 'tool_calls');
    assert.equal(s.calls.length, 1);
    assert.equal(s.calls[0].name, 'get_weather');
    assert.ok(s.calls[0].id, 'tool call id in the stream');
    assert.deepEqual(JSON.parse(s.calls[0].args), scriptedArgs);
  });
}

itest('anthropic 529 (overloaded) fails over to the gemini deployment, stream and not', async (env) => {
  const { a, g, client } = await setup(env);
  await a.setDefault({ status: 529 });
  for (const stream of [false, true]) {
    for (let i = 0; i < 3; i++) {
      const before = (await a.stats()).requests;
      if (stream) {
        const { data, response } = await client.chat.completions.create({ model: 'mixed', messages, stream: true }).withResponse();
        const s = await collect(data);
        assert.equal(s.content, hello('gemini-1'));
        assert.equal(response.headers.get('x-llmesh-deployment'), 'mixed-gemini');
      } else {
        const { data, response } = await client.chat.completions.create({ model: 'mixed', messages }).withResponse();
        assert.equal(data.choices[0].message.content, hello('gemini-1'));
        assert.equal(response.headers.get('x-llmesh-deployment'), 'mixed-gemini');
        const tried = (await a.stats()).requests - before;
        assert.equal(Number(response.headers.get('x-llmesh-attempts')), 1 + tried);
      }
    }
  }
  assert.ok((await a.stats()).requests >= 1, 'the overloaded deployment was tried');
  const log = env.procs.find((p) => p.name.startsWith('worker')).jsonLog();
  assert.ok(log.some((l) => l.event === 'failover' && l.reason === 'overloaded' && l.from === 'mixed-claude'),
    'failover logged with reason overloaded');
});

itest('gemini 429 fails over to the anthropic deployment; all rate limited → 429', async (env) => {
  const { a, g, w, client } = await setup(env);
  await g.setDefault({ status: 429 });
  let sawFailover = false;
  for (let i = 0; i < 4; i++) {
    const before = (await g.stats()).requests;
    const { data, response } = await client.chat.completions.create({ model: 'gemini-first', messages }).withResponse();
    assert.equal(data.choices[0].message.content, hello('claude-1'));
    assert.equal(response.headers.get('x-llmesh-deployment'), 'gf-claude');
    if ((await g.stats()).requests > before) { sawFailover = true; assert.equal(response.headers.get('x-llmesh-attempts'), '2'); }
  }
  assert.ok(sawFailover, 'gemini (weight 100) tried first at least once');
  const log = env.procs.find((p) => p.name.startsWith('worker')).jsonLog();
  assert.ok(log.some((l) => l.event === 'failover' && l.reason === 'rate_limited' && l.from === 'gf-gemini'));
  await a.setDefault({ status: 429 });
  const r = await w.chat({ model: 'gemini-first', messages });
  assertOpenAIError(r, 429, 'rate_limit_exceeded');
  assertNoLeak(r.text, { ports: [a.port, g.port] });
});

itest('anthropic 400 → client gets an OpenAI-shaped 400 without the provider body; no failover', async (env) => {
  const { a, g, w } = await setup(env);
  const raw = JSON.stringify({ type: 'error', error: { type: 'invalid_request_error',
    message: `messages.0: bad thing, see ${a.base}/docs SECRET-MARKER-77` } });
  await a.faults({ status: 400, body: raw });
  const gBefore = (await g.stats()).requests;
  const r = await w.chat({ model: 'mixed', messages });
  const err = assertOpenAIError(r, 400, 'invalid_request_error');
  assert.ok(!r.text.includes('SECRET-MARKER-77'), `no provider message with a URL: ${r.text}`);
  assert.ok(!r.text.includes('"type":"error"'), 'not the provider body');
  assert.match(err.message, /mixed-claude/);
  assertNoLeak(r.text, { ports: [a.port, g.port] });
  assert.equal((await g.stats()).requests, gBefore, 'a client fault is not failed over');

  // the mock's own 400 message (no address in it) is summarised for the client
  await a.faults({ status: 400 });
  const r2 = await w.chat({ model: 'claude', messages });
  assertOpenAIError(r2, 400, 'invalid_request_error');
  assertNoLeak(r2.text, { ports: [a.port, g.port] });

  // context length → code context_length_exceeded
  await a.faults({ status: 400, body: JSON.stringify({ type: 'error', error: { type: 'invalid_request_error',
    message: 'prompt is too long: 250000 tokens > 200000 maximum' } }) });
  const r3 = await w.chat({ model: 'claude', messages });
  const e3 = assertOpenAIError(r3, 400);
  assert.equal(e3.code, 'context_length_exceeded');
});

itest('a request an adapter cannot express: another family serves it, else 400', async (env) => {
  const { a, g, w } = await setup(env);
  // input_audio has no Anthropic equivalent; Gemini takes it as inlineData.
  const audio = [{ role: 'user', content: [{ type: 'text', text: 'Transcribe.' },
    { type: 'input_audio', input_audio: { data: 'UklGRgAAAABXQVZF', format: 'wav' } }] }];
  const aBefore = (await a.stats()).requests;
  const r = await w.chat({ model: 'claude', messages: audio });
  const err = assertOpenAIError(r, 400, 'unsupported_request');
  assert.match(err.message, /input_audio/);
  assertNoLeak(r.text, { ports: [a.port, g.port] });
  for (let i = 0; i < 3; i++) {
    const ok = await w.chat({ model: 'mixed', messages: audio });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('x-llmesh-deployment'), 'mixed-gemini');
    assert.equal(ok.headers.get('x-llmesh-attempts'), '1', 'nothing was sent to anthropic');
    assert.equal(ok.json.choices[0].message.content, hello('gemini-1'));
  }
  assert.equal((await a.stats()).requests, aBefore, 'the anthropic mock never saw the request');
});

itest('a field the provider cannot honour is dropped with a fields_dropped warning, counted in /metrics', async (env) => {
  const { a, w, client } = await setup(env);
  const { data, response } = await client.chat.completions.create({ model: 'claude', messages,
    logit_bias: { 50256: -100 }, temperature: 0.5 }).withResponse();
  assert.equal(data.choices[0].message.content, hello('claude-1'));
  const rid = response.headers.get('x-request-id');
  assert.ok(rid, 'x-request-id echoed');
  const sent = lastRequest(await a.stats()).body;
  assert.equal(sent.logit_bias, undefined, 'not sent upstream');
  const worker = env.procs.find((p) => p.name.startsWith('worker'));
  let line;
  for (let i = 0; i < 50 && !line; i++) {
    line = worker.jsonLog().find((l) => l.event === 'fields_dropped' && l.request_id === rid);
    if (!line) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(line, `a fields_dropped line for ${rid}:\n${worker.tail()}`);
  assert.equal(line.level, 'warn');
  assert.equal(line.deployment, 'claude-1');
  assert.equal(line.provider, 'anthropic');
  assert.match(line.fields, /(^|,)logit_bias(,|$)/);
  assert.doesNotMatch(line.fields, /temperature/);
  const m = await w.metrics();
  const mm = m.match(/^llmesh_fields_dropped_total\{deployment="claude-1"\} (\d+)$/m);
  assert.ok(mm && Number(mm[1]) > 0, `llmesh_fields_dropped_total > 0 in:\n${m}`);
});

itest('unsupported provider families are never routed to and warned about once', async (env) => {
  const m = await env.startMock('ok-1');
  const cluster = await env.startCluster({
    model_list: [
      // families no adapter exists for (azure and bedrock have adapters now)
      deployment('co', { model: 'cohere/command-r', api_base: m.apiBase, api_key: 'x', api_version: '2024-06-01' }),
      deployment('mix', { model: 'sagemaker/jumpstart-llm', api_base: m.apiBase, api_key: 'x' }),
      deployment('mix', { model: 'openai/gpt-4o', api_base: m.apiBase, api_key: 'x' }),
    ],
  });
  const w = cluster.worker;
  const r = await w.chat({ model: 'co', messages });
  assertOpenAIError(r, 503, 'no_deployment_available');
  assertNoLeak(r.text, { ports: [m.port] });
  for (let i = 0; i < 5; i++) {
    const ok = await w.chat({ model: 'mix', messages });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('x-llmesh-deployment'), 'mix-2');
  }
  assert.equal((await m.stats()).requests, 5, 'only the openai deployment was called');
  const logText = env.procs.find((p) => p.name.startsWith('worker')).log();
  const warns = env.procs.find((p) => p.name.startsWith('worker')).jsonLog().filter((l) => l.event === 'deployment_unsupported');
  assert.deepEqual(warns.map((l) => `${l.deployment}:${l.provider}`).sort(), ['co-1:cohere', 'mix-1:sagemaker']);
  assert.ok(!logText.includes(m.apiBase), 'the warning never carries the URL');
});

itest('adapter streams: garbage before the first event fails over; a cut after commit ends with an error', async (env) => {
  const { a, client } = await setup(env);
  await a.faults({ garbage: true });
  const { data, response } = await client.chat.completions.create({ model: 'mixed', messages, stream: true }).withResponse();
  const s = await collect(data);
  assert.equal(s.content, hello('gemini-1'));
  assert.equal(response.headers.get('x-llmesh-deployment'), 'mixed-gemini');
  assert.equal(response.headers.get('x-llmesh-attempts'), '2');

  await a.faults({ cut_after: 2 });
  const cut = await client.chat.completions.create({ model: 'claude', messages, stream: true });
  let got = '';
  await assert.rejects(async () => {
    for await (const ch of cut) got += ch.choices[0]?.delta?.content ?? '';
  }, (e) => /upstream stream ended before completion|upstream_stream_cut/.test(String(e.message) + JSON.stringify(e.error ?? {})));
  assert.ok(got.length > 0 && hello('claude-1').startsWith(got) && got !== hello('claude-1'), `partial content: ${got}`);
});
