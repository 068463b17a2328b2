// messages_passthrough.test.mjs — POST /v1/messages to an Anthropic deployment: the client's
// body goes upstream byte for byte except `model`, and the upstream answer (message, SSE,
// relayed 4xx) comes back untouched. Failover to another family uses the translated path.
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import {
  itest, deployment, hello, http, lastRequest, metricSum, MASTER_KEY, PROVIDER_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

// claude → claude-1 (Anthropic mock); mix → mix-a (Anthropic, tried first) then mix-o (OpenAI).
async function setup(env) {
  const a = await env.startMock('claude-1');
  const ma = await env.startMock('mix-a');
  const mo = await env.startMock('mix-o');
  const cluster = await env.startCluster({
    model_list: [
      deployment('claude', { model: 'anthropic/claude-mock', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY' }),
      deployment('mix', { model: 'anthropic/claude-mock', api_base: ma.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1000 }),
      deployment('mix', { model: 'openai/gpt-mock', api_base: mo.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1 }),
    ],
    router_settings: { num_retries: 2, timeout: 10 },
  });
  const w = cluster.worker;
  const client = new Anthropic({ baseURL: w.base, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { a, ma, mo, w, client };
}

const text = (msg) => msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
// Unusual key order, whitespace, escapes and fields llmesh has no canonical slot for.
const rawBody = (model, stream) => `{ "max_tokens" :64 ,\n\t"messages":[ {"content":"Say h\\u00e9llo.","role":"user"} ],` +
  `   "model"  :  "${model}" , "metadata":{"user_id":"u-1"},"thinking":{"type":"disabled"}` +
  `${stream ? ', "stream" : true' : ''} }\n`;
const normalize = (t) => t.replace(/msg_mock_\d+/g, 'msg_mock_N');

itest('passthrough: upstream body is the client body byte for byte except model; answers untouched', async (env) => {
  const { a, w } = await setup(env);
  for (const stream of [false, true]) {
    const sent = rawBody('claude', stream);
    const r = await http('POST', `${w.base}/v1/messages`, {
      headers: { 'x-api-key': MASTER_KEY, 'anthropic-version': '2023-06-01' }, body: sent,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-llmesh-deployment'), 'claude-1');
    const lr = lastRequest(await a.stats());
    assert.equal(lr.raw.format, 'anthropic');
    assert.equal(lr.raw.body, sent.replace('"claude"', '"claude-mock"'), 'byte-exact except model');
    assert.equal(lr.headers['x-api-key'], PROVIDER_KEY);
    assert.equal(lr.headers['anthropic-version'], '2023-06-01');
    assert.ok(!JSON.stringify(lr.headers).includes(MASTER_KEY), 'the client key is not forwarded');
    // The mock's own answer to that very body.
    const direct = await http('POST', `${a.base}/v1/messages`, {
      headers: { 'x-api-key': PROVIDER_KEY, 'anthropic-version': '2023-06-01' }, body: lr.raw.body,
    });
    assert.equal(direct.status, 200, direct.text);
    assert.equal(normalize(r.text), normalize(direct.text), `${stream ? 'stream' : 'message'} relayed untouched`);
    if (stream) {
      assert.match(r.headers.get('content-type'), /^text\/event-stream/);
      assert.match(r.text, /event: message_stop\n/);
      assert.match(r.text, /event: ping\n/, 'upstream ping events pass through');
    } else {
      assert.equal(r.json.model, 'claude-mock');
    }
  }
  // Usage was read from the relayed bytes: the mock's counts reach /metrics.
  const m = (await http('GET', `${w.base}/metrics`)).text;
  const prompt = metricSum(m.split('\n').filter((l) => l.includes('deployment="claude-1"')).join('\n'), 'llmesh_tokens_total');
  assert.ok(prompt > 0, `tokens accounted for claude-1: ${prompt}`);
});

itest('passthrough: the client anthropic-version and anthropic-beta are forwarded; the SDK gets the mock answers', async (env) => {
  const { a, client, w } = await setup(env);
  const r = await http('POST', `${w.base}/v1/messages`, {
    headers: { 'x-api-key': MASTER_KEY, 'anthropic-version': '2024-01-01',
               'anthropic-beta': 'prompt-caching-2024-07-31,token-efficient-tools-2025-02-19' },
    body: { model: 'claude', max_tokens: 16, messages },
  });
  assert.equal(r.status, 200, r.text);
  const lr0 = lastRequest(await a.stats());
  assert.equal(lr0.headers['anthropic-version'], '2024-01-01');
  assert.equal(lr0.headers['anthropic-beta'], 'prompt-caching-2024-07-31,token-efficient-tools-2025-02-19',
               'anthropic-beta is forwarded on the passthrough');

  const body = { model: 'claude', max_tokens: 64, messages, temperature: 0.5, top_k: 5 };
  const msg = await client.messages.create(body);
  assert.equal(text(msg), hello('claude-1'));
  assert.equal(msg.stop_reason, 'end_turn');
  assert.match(msg.id, /^msg_mock_/, 'the upstream message id as is');
  const lr = lastRequest(await a.stats());
  assert.deepEqual(lr.body, { ...body, model: 'claude-mock' });

  const events = [];
  const stream = await client.messages.create({ ...body, stream: true });
  let content = '';
  for await (const ev of stream) {
    events.push(ev.type);
    if (ev.type === 'content_block_delta') content += ev.delta.text;
  }
  assert.equal(content, hello('claude-1'));
  assert.equal(events.at(-1), 'message_stop');
  assert.deepEqual(lastRequest(await a.stats()).body, { ...body, model: 'claude-mock', stream: true });
});

itest('passthrough: a 400 from the Anthropic deployment is relayed untouched', async (env) => {
  const { a, client } = await setup(env);
  await a.faults({ status: 400 });
  await assert.rejects(client.messages.create({ model: 'claude', max_tokens: 16, messages }),
    (e) => e instanceof Anthropic.BadRequestError && e.error?.type === 'error' &&
      e.error?.error?.type === 'invalid_request_error' && /^req_mock_/.test(e.error?.request_id ?? ''),
    'the mock error body (with its request_id) reaches the client');
});

itest('passthrough: 529 on the Anthropic deployment fails over to OpenAI (translated) invisibly', async (env) => {
  const { ma, mo, client } = await setup(env);
  await ma.setDefault({ status: 529 });
  const { data: msg, response } = await client.messages
    .create({ model: 'mix', max_tokens: 64, messages }).withResponse();
  assert.equal(text(msg), hello('mix-o'));
  assert.equal(msg.model, 'mix', 'translated path reports the alias');
  assert.equal(response.headers.get('x-llmesh-attempts'), '2');
  assert.equal(response.headers.get('x-llmesh-deployment'), 'mix-2');
  assert.equal(lastRequest(await mo.stats()).raw.format, 'openai');
  const final = await client.messages.stream({ model: 'mix', max_tokens: 64, messages }).finalMessage();
  assert.equal(text(final), hello('mix-o'));
  assert.equal(final.stop_reason, 'end_turn');
  // A 529 is a cooldown (docs/resilience.md): the stream, sent while mix-1 cools down, may
  // skip it (1 s default cooldown); it was tried at least for the first request.
  const tried = (await ma.stats()).requests;
  assert.ok(tried === 1 || tried === 2, `the Anthropic deployment was tried first (${tried})`);
});

itest('passthrough: a cut stream ends with event: error; an upstream in-band error is relayed once', async (env) => {
  const { a, w, client } = await setup(env);
  await a.setDefault({ cut_after: 2 });
  await assert.rejects((async () => {
    const s = await client.messages.create({ model: 'claude', max_tokens: 64, messages, stream: true });
    for await (const ev of s) void ev;
  })());
  const raw = await http('POST', `${w.base}/v1/messages`, {
    headers: { 'x-api-key': MASTER_KEY }, body: { model: 'claude', max_tokens: 64, messages, stream: true },
  });
  assert.equal(raw.status, 200);
  assert.match(raw.text, /^event: message_start\n/);
  assert.match(raw.text, /event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"[^"]*upstream_stream_cut/,
    raw.text.slice(-300));
  assert.ok(!raw.text.includes('message_stop'), 'never message_stop after a cut');

  await a.setDefault({ error_after: 2 });
  const e = await http('POST', `${w.base}/v1/messages`, {
    headers: { 'x-api-key': MASTER_KEY }, body: { model: 'claude', max_tokens: 64, messages, stream: true },
  });
  assert.equal(e.status, 200);
  assert.equal(e.text.match(/event: error\n/g)?.length, 1, e.text.slice(-400));
  assert.match(e.text, /overloaded_error/, 'the upstream error event as is');
  assert.ok(!e.text.includes('upstream_stream_cut') && !e.text.includes('message_stop'));
});
