// messages.test.mjs — the Anthropic ingress end to end: the official @anthropic-ai/sdk talks
// POST /v1/messages to the worker, which routes the canonical (OpenAI) request through the
// same attempt/failover machinery as /v1/chat/completions to an OpenAI-format and an
// Anthropic-format mock deployment, and answers in Anthropic's dialect (whole and SSE).
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import {
  itest, deployment, hello, http, lastRequest, MASTER_KEY, PROVIDER_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];
const tools = [{
  name: 'get_weather', description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
}];
const scriptedArgs = { city: 'Paris', days: 3, tags: ['a "quoted" one', 'ü'] };

// Groups: gpt → gpt-1 (OpenAI mock), claude → claude-1 (Anthropic mock), ha → ha-1 (weight
// 100) then ha-2 (both OpenAI mocks: ha-1 is tried first).
async function setup(env) {
  const o = await env.startMock('gpt-1');
  const a = await env.startMock('claude-1');
  const h1 = await env.startMock('ha-1');
  const h2 = await env.startMock('ha-2');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt', { model: 'openai/gpt-mock', api_base: o.apiBase, api_key: 'os.environ/MOCK_KEY' }),
      deployment('claude', { model: 'anthropic/claude-mock', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY' }),
      deployment('ha', { model: 'openai/gpt-mock', api_base: h1.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1000 }),
      deployment('ha', { model: 'openai/gpt-mock', api_base: h2.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1 }),
    ],
    // mid_stream_fallback error: the cut test pins the error event (continuation: midstream.test.mjs)
    router_settings: { num_retries: 2, timeout: 10, mid_stream_fallback: 'error' },
  });
  const w = cluster.worker;
  const client = new Anthropic({ baseURL: w.base, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { o, a, h1, h2, cluster, w, client };
}

const text = (msg) => msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

/** Raw event stream: every event type in order plus the text. */
async function rawStream(client, body) {
  const stream = await client.messages.create({ ...body, stream: true });
  const types = [];
  let content = '', stop = null, usage = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') content += ev.delta.text;
    if (ev.type === 'message_delta') { stop = ev.delta.stop_reason; usage = ev.usage; }
  }
  return { types, content, stop, usage };
}

for (const [group, mockName, fmt] of [['gpt', 'gpt-1', 'openai'], ['claude', 'claude-1', 'anthropic']]) {
  itest(`messages via ${fmt} deployment: non-stream and stream answers equal the mock's`, async (env) => {
    const { o, a, client } = await setup(env);
    const mock = fmt === 'openai' ? o : a;
    const { data: msg, response } = await client.messages
      .create({ model: group, max_tokens: 64, messages }).withResponse();
    assert.equal(response.headers.get('x-llmesh-deployment'), `${group}-1`);
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    // OpenAI deployments: translated, the client's alias is reported. Anthropic deployments:
    // the upstream message is relayed untouched (passthrough), so its own model name.
    assert.equal(msg.model, fmt === 'openai' ? group : 'claude-mock', 'the reported model');
    assert.match(msg.id, /^msg_/);
    assert.equal(text(msg), hello(mockName));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, JSON.stringify(msg.usage));
    const lr = lastRequest(await mock.stats());
    assert.equal(lr.raw.format, fmt, 'the upstream spoke the deployment format');
    assert.equal(lr.model, fmt === 'openai' ? 'gpt-mock' : 'claude-mock');
    if (fmt === 'openai') assert.equal(lr.authorization, `Bearer ${PROVIDER_KEY}`);
    else assert.equal(lr.headers['x-api-key'], PROVIDER_KEY);

    // The SDK's streaming helper accumulates the final message.
    const stream = client.messages.stream({ model: group, max_tokens: 64, messages });
    let deltas = '';
    stream.on('text', (t) => { deltas += t; });
    const final = await stream.finalMessage();
    assert.equal(text(final), hello(mockName));
    assert.equal(deltas, hello(mockName));
    assert.equal(final.stop_reason, 'end_turn');
    assert.ok(final.usage.output_tokens > 0, JSON.stringify(final.usage));
    assert.ok(final.usage.input_tokens > 0, `input tokens from the usage chunk: ${JSON.stringify(final.usage)}`);

    // create({stream:true}): Anthropic's event order.
    const r = await rawStream(client, { model: group, max_tokens: 64, messages });
    assert.equal(r.content, hello(mockName));
    assert.equal(r.stop, 'end_turn');
    assert.equal(r.types[0], 'message_start');
    assert.equal(r.types.at(-1), 'message_stop');
    assert.ok(r.types.includes('content_block_start') && r.types.includes('content_block_stop'), r.types.join(','));
    assert.ok(r.types.filter((t) => t === 'content_block_delta').length >= 3, r.types.join(','));

    // Authorization: Bearer works as well as x-api-key; raw SSE content type.
    const raw = await http('POST', `${client.baseURL}/v1/messages`, {
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'anthropic-version': '2023-06-01' },
      body: { model: group, max_tokens: 64, messages, stream: true },
    });
    assert.equal(raw.status, 200, raw.text);
    assert.match(raw.headers.get('content-type'), /^text\/event-stream/);
    assert.match(raw.text, /^event: message_start\ndata: /);
    assert.match(raw.text, /event: message_stop\ndata: /);
    assert.ok(!raw.text.includes('[DONE]'), 'no OpenAI terminator leaks');
  });

  itest(`messages via ${fmt} deployment: a scripted tool call comes back as tool_use, stream and not`, async (env) => {
    const { o, a, client } = await setup(env);
    const mock = fmt === 'openai' ? o : a;
    const fault = { content: '', tool_calls: [{ name: 'get_weather', arguments: scriptedArgs, id: 'call_w1' }] };
    await mock.faults(fault, fault);
    const msg = await client.messages.create({ model: group, max_tokens: 64, messages, tools });
    assert.equal(msg.stop_reason, 'tool_use');
    const uses = msg.content.filter((b) => b.type === 'tool_use');
    assert.equal(uses.length, 1, JSON.stringify(msg.content));
    assert.equal(uses[0].name, 'get_weather');
    assert.deepEqual(uses[0].input, scriptedArgs);
    assert.ok(uses[0].id, 'tool_use id');
    const sent = lastRequest(await mock.stats()).body;
    if (fmt === 'openai') assert.equal(sent.tools[0].function.name, 'get_weather');
    else assert.equal(sent.tools[0].name, 'get_weather');

    const final = await client.messages.stream({ model: group, max_tokens: 64, messages, tools }).finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const su = final.content.filter((b) => b.type === 'tool_use');
    assert.equal(su.length, 1, JSON.stringify(final.content));
    assert.equal(su[0].name, 'get_weather');
    assert.deepEqual(su[0].input, scriptedArgs);
  });

  itest(`messages via ${fmt} deployment: a stream cut after commit makes the SDK throw`, async (env) => {
    const { o, a, client } = await setup(env);
    const mock = fmt === 'openai' ? o : a;
    await mock.setDefault({ cut_after: 2 });
    const events = [];
    await assert.rejects((async () => {
      const stream = await client.messages.create({ model: group, max_tokens: 64, messages, stream: true });
      for await (const ev of stream) events.push(ev.type);
    })(), 'iterating a cut stream throws');
    assert.ok(events.includes('message_start'), `committed before the cut: ${events.join(',')}`);
    assert.ok(!events.includes('message_stop'), 'never message_stop after a cut');
    await assert.rejects(client.messages.stream({ model: group, max_tokens: 64, messages }).finalMessage(),
      'the stream helper rejects too');
    const raw = await http('POST', `${client.baseURL}/v1/messages`, {
      headers: { 'x-api-key': MASTER_KEY }, body: { model: group, max_tokens: 64, messages, stream: true },
    });
    assert.equal(raw.status, 200);
    assert.match(raw.text, /event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"[^"]*upstream_stream_cut/,
      `an Anthropic error event ends the cut stream: ${raw.text.slice(-300)}`);
    assert.ok(!raw.text.includes('message_stop') && !raw.text.includes('"code"'), 'no message_stop, no OpenAI error');
  });
}

itest('messages: failover (first deployment 500) is invisible, stream and not', async (env) => {
  const { h1, h2, client } = await setup(env);
  await h1.setDefault({ status: 500 });
  let failedOver = 0;
  for (let i = 0; i < 3; i++) {
    const { data: msg, response } = await client.messages
      .create({ model: 'ha', max_tokens: 64, messages }).withResponse();
    assert.equal(text(msg), hello('ha-2'));
    assert.equal(msg.stop_reason, 'end_turn');
    if (response.headers.get('x-llmesh-attempts') === '2') failedOver++;
    const final = await client.messages.stream({ model: 'ha', max_tokens: 64, messages }).finalMessage();
    assert.equal(text(final), hello('ha-2'));
    assert.equal(final.stop_reason, 'end_turn');
  }
  assert.ok(failedOver > 0, 'the 500ing deployment was tried first at least once');
  assert.ok((await h1.stats()).requests > 0);
  assert.ok((await h2.stats()).requests >= 6);
});

itest('messages: errors are Anthropic-shaped — unknown model, bad key, bad request, all failed', async (env) => {
  const { w, h1, h2, client } = await setup(env);
  await assert.rejects(client.messages.create({ model: 'no-such-model', max_tokens: 8, messages }),
    (e) => e instanceof Anthropic.NotFoundError && e.status === 404 && e.error?.type === 'error' &&
      e.error?.error?.type === 'not_found_error');
  const bad = new Anthropic({ baseURL: w.base, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: 'gpt', max_tokens: 8, messages }),
    (e) => e instanceof Anthropic.AuthenticationError && e.status === 401 &&
      e.error?.error?.type === 'authentication_error');
  await assert.rejects(client.messages.create({ model: 'gpt', messages }), // no max_tokens
    (e) => e instanceof Anthropic.BadRequestError && e.error?.error?.type === 'invalid_request_error');
  const r = await http('POST', `${w.base}/v1/messages`, {
    headers: { 'x-api-key': MASTER_KEY }, body: '{"model":',
  });
  assert.equal(r.status, 400);
  assert.equal(r.json?.type, 'error');
  assert.equal(r.json?.error?.type, 'invalid_request_error');
  await h1.setDefault({ status: 500 });
  await h2.setDefault({ status: 503 });
  const all = await http('POST', `${w.base}/v1/messages`, {
    headers: { 'x-api-key': MASTER_KEY }, body: { model: 'ha', max_tokens: 8, messages },
  });
  assert.equal(all.status, 502, all.text);
  assert.equal(all.json?.type, 'error');
  assert.equal(all.json?.error?.type, 'api_error');
  assert.ok(!all.text.includes('127.0.0.1'), 'no upstream address');
});

itest('GET /v1/models: owned_by is the provider family of the group', async (env) => {
  const { w } = await setup(env);
  const r = await http('GET', `${w.base}/v1/models`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  assert.equal(r.status, 200);
  const by = Object.fromEntries(r.json.data.map((m) => [m.id, m.owned_by]));
  assert.deepEqual(by, { gpt: 'openai', claude: 'anthropic', ha: 'openai' });
  for (const m of r.json.data) assert.equal(m.object, 'model');
});
