// chat.test.mjs — the happy path through a real worker with the official openai SDK:
// non-stream and stream chat, deployment headers, alias → upstream model rewrite,
// provider key injection, /v1/models, weighted choice.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  itest, deployment, lastRequest, assertNoLeak, hello, http,
  MASTER_KEY, PROVIDER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

// gpt-4 → gpt-4-1 (gpt-4o, key from env, weight 5) and gpt-4-2 (gpt-4o-mini, literal key,
// weight 1); claude → one deployment named by model_info.id. One mock per deployment,
// named like the deployment, so content and x-llmesh-deployment must agree.
async function setup(env) {
  const m1 = await env.startMock('gpt-4-1');
  const m2 = await env.startMock('gpt-4-2');
  const m3 = await env.startMock('claude-primary');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt-4', { model: 'openai/gpt-4o', api_base: m1.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 5 }),
      deployment('gpt-4', { model: 'openai/gpt-4o-mini', api_base: m2.apiBase, api_key: LITERAL_KEY, weight: 1 }),
      deployment('claude', { model: 'openai/claude-mock', api_base: m3.apiBase, api_key: 'x' }, { id: 'claude-primary' }),
    ],
    router_settings: { fallbacks: [{ 'gpt-4': ['claude'] }] },
  });
  const w = cluster.worker;
  const client = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 15000 });
  const mocks = { 'gpt-4-1': m1, 'gpt-4-2': m2, 'claude-primary': m3 };
  const upstream = { 'gpt-4-1': ['gpt-4o', `Bearer ${PROVIDER_KEY}`], 'gpt-4-2': ['gpt-4o-mini', `Bearer ${LITERAL_KEY}`] };
  const ports = [m1.port, m2.port, m3.port];
  return { m1, m2, m3, cluster, w, client, mocks, upstream, ports };
}

const messages = [{ role: 'user', content: 'Say hello.' }];

itest('non-stream chat via the openai SDK', async (env) => {
  const { client, mocks, upstream, ports } = await setup(env);

  const { data, response } = await client.chat.completions.create({ model: 'gpt-4', messages }).withResponse();
  assert.equal(response.status, 200);
  const dep = response.headers.get('x-llmesh-deployment');
  assert.ok(['gpt-4-1', 'gpt-4-2'].includes(dep), `x-llmesh-deployment is a gpt-4 deployment: ${dep}`);
  assert.equal(response.headers.get('x-llmesh-attempts'), '1');
  assert.ok((response.headers.get('x-request-id') || '').length > 0, 'x-request-id present');
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices.length, 1);
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].message.content, hello(dep));
  assert.equal(data.choices[0].finish_reason, 'stop');

  // The chosen mock saw the upstream model (alias rewritten) and the provider key.
  const st = await mocks[dep].stats();
  assert.equal(st.requests, 1, `${dep} got exactly one request`);
  const lr = lastRequest(st);
  assert.equal(lr.model, upstream[dep][0], `upstream model rewritten: ${JSON.stringify(lr.raw)}`);
  assert.equal(lr.authorization, upstream[dep][1], `provider key sent upstream: ${JSON.stringify(lr.raw)}`);
  assert.deepEqual(lr.body.messages, messages, 'messages passed through unchanged');
  const other = dep === 'gpt-4-1' ? 'gpt-4-2' : 'gpt-4-1';
  assert.equal((await mocks[other].stats()).requests, 0, 'the other deployment got nothing');

  // The client sees neither the provider key nor the provider address.
  const raw = await client.chat.completions.create({ model: 'gpt-4', messages }).asResponse();
  const text = await raw.text();
  const hdrs = JSON.stringify([...raw.headers.entries()]);
  assertNoLeak(text + hdrs, { ports });

  // model_info.id names the deployment.
  const c = await client.chat.completions.create({ model: 'claude', messages }).withResponse();
  assert.equal(c.response.headers.get('x-llmesh-deployment'), 'claude-primary');
  assert.equal(c.data.choices[0].message.content, hello('claude-primary'));
  const lc = lastRequest(await mocks['claude-primary'].stats());
  assert.equal(lc.model, 'claude-mock');
  assert.equal(lc.authorization, 'Bearer x');
  assert.ok(!JSON.stringify(lc.raw).includes(MASTER_KEY), 'the master key is not forwarded upstream');
});

itest('stream chat via the openai SDK', async (env) => {
  const { client, mocks } = await setup(env);

  for (const model of ['claude', 'gpt-4']) {
    const { data: stream, response } = await client.chat.completions
      .create({ model, messages, stream: true, stream_options: { include_usage: true } }).withResponse();
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') || '', /^text\/event-stream/);
    const dep = response.headers.get('x-llmesh-deployment');
    assert.ok(mocks[dep], `x-llmesh-deployment names a deployment of ${model}: ${dep}`);
    assert.equal(response.headers.get('x-llmesh-attempts'), '1');
    let content = '';
    let finish = null;
    let chunks = 0;
    let usage = null;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        if (ch.delta?.content) content += ch.delta.content;
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert.equal(content, hello(dep), 'deltas concatenate to the content');
    assert.equal(finish, 'stop', 'stream ends with finish_reason stop');
    assert.ok(chunks >= 3, `streamed in several chunks (${chunks})`);
    assert.ok(usage && usage.total_tokens > 0, `usage chunk relayed: ${JSON.stringify(usage)}`);
    const lr = lastRequest(await mocks[dep].stats());
    assert.equal(lr.body.stream, true, 'upstream request is a stream');
  }
});

itest('GET /v1/models lists the aliases', async (env) => {
  const { client, w, ports } = await setup(env);
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['claude', 'gpt-4']);
  const r = await http('GET', `${w.base}/v1/models`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  assert.equal(r.status, 200);
  assert.equal(r.json.object, 'list');
  assertNoLeak(r.text, { ports });
  assert.ok(!r.text.includes('gpt-4o'), 'upstream model names are not listed as aliases');
});

itest('weighted choice: 5:1 gives the heavier deployment clearly more', async (env) => {
  const { client, m1, m2 } = await setup(env);
  const counts = { 'gpt-4-1': 0, 'gpt-4-2': 0 };
  const N = 120;
  let next = 0;
  async function runner() {
    while (next < N) {
      next++;
      const { data, response } = await client.chat.completions.create({ model: 'gpt-4', messages }).withResponse();
      const dep = response.headers.get('x-llmesh-deployment');
      assert.equal(data.choices[0].message.content, hello(dep));
      counts[dep]++;
    }
  }
  await Promise.all(Array.from({ length: 8 }, runner));
  assert.equal(counts['gpt-4-1'] + counts['gpt-4-2'], N);
  // Expected 100:20. Binomial(120, 1/6): P(light < 5) and P(heavy <= 2*light) are ~1e-5.
  assert.ok(counts['gpt-4-2'] >= 5, `lighter deployment still used: ${JSON.stringify(counts)}`);
  assert.ok(counts['gpt-4-1'] > 2 * counts['gpt-4-2'], `heavier gets clearly more: ${JSON.stringify(counts)}`);
  // The mocks agree with the headers.
  assert.equal((await m1.stats()).requests, counts['gpt-4-1']);
  assert.equal((await m2.stats()).requests, counts['gpt-4-2']);
});
