// embeddings_more.test.mjs — POST /v1/embeddings through the Ollama (/api/embed) and Azure
// OpenAI (/openai/deployments/{d}/embeddings) adapters with the official openai SDK: vectors
// equal the mock's own answer for the same text, string and array inputs, dimensions, the
// SDK's default base64 and explicit floats, what the provider was sent, usage, token-id
// input refused for Ollama without a provider call, and failover between the two families.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  itest, deployment, assertOpenAIError, assertNoLeak, http, lastRequest, MASTER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

const AZ_VERSION = '2024-10-21';

function client(w) {
  return new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
}

// The mock asked directly in Ollama's format: {"embeddings":[[…]],"prompt_eval_count"}.
async function ollamaDirect(mock, input, dimensions) {
  const body = { model: 'nomic-embed-text', input };
  if (dimensions) body.dimensions = dimensions;
  const r = await http('POST', `${mock.base}/api/embed`, { body });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// The mock asked directly in Azure's format (classic surface, floats).
async function azureDirect(mock, input, dimensions) {
  const body = { input, encoding_format: 'float' };
  if (dimensions) body.dimensions = dimensions;
  const r = await http('POST', `${mock.base}/openai/deployments/my-embed/embeddings?api-version=${AZ_VERSION}`,
    { headers: { 'api-key': LITERAL_KEY }, body });
  return r;
}

function assertVectors(got, want, what) {
  assert.equal(got.length, want.length, `${what}: vector count`);
  for (let i = 0; i < want.length; i++) {
    assert.equal(got[i].object, 'embedding', what);
    assert.equal(got[i].index, i, `${what}: index ${i}`);
    const gv = got[i].embedding, wv = want[i];
    assert.equal(gv.length, wv.length, `${what}[${i}]: dims`);
    for (let k = 0; k < wv.length; k++) {
      assert.ok(Math.abs(gv[k] - wv[k]) < 1e-6, `${what}[${i}][${k}]: ${gv[k]} vs ${wv[k]}`);
    }
  }
}

const inputs = ['The quick brown fox.', ['alpha', 'beta gamma', 'alpha']];

itest('embeddings via an ollama deployment: /api/embed, vectors equal the mock\'s, usage, base64, dims', async (env) => {
  const m = await env.startMock('emb-ol');
  const cluster = await env.startCluster({
    model_list: [deployment('ol-embed', { model: 'ollama/nomic-embed-text', api_base: m.base })],
    router_settings: { num_retries: 1, timeout: 10 },
  });
  const c = client(cluster.worker);
  for (const input of inputs) {
    const want = await ollamaDirect(m, input);
    // the SDK's default: encoding_format base64 on the wire, decoded to floats by the SDK
    const { data: res, response } = await c.embeddings.create({ model: 'ol-embed', input }).withResponse();
    assert.equal(response.headers.get('x-llmesh-deployment'), 'ol-embed-1');
    assert.equal(res.object, 'list');
    assert.equal(res.model, 'ol-embed');
    assertVectors(res.data, want.embeddings, `ollama ${JSON.stringify(input)}`);
    assert.equal(res.data[0].embedding.length, 8, 'the mock default is 8 dims');
    assert.equal(res.usage.prompt_tokens, want.prompt_eval_count, JSON.stringify(res.usage));
    assert.equal(res.usage.total_tokens, want.prompt_eval_count);
    const lr = lastRequest(await m.stats());
    assert.equal(lr.raw.format, 'ollama');
    assert.equal(lr.raw.path, '/api/embed');
    assert.deepEqual(lr.body, { model: 'nomic-embed-text', input }, 'only model and input are sent');
    assert.equal(lr.authorization ?? '', '', 'no key, no authorization');
  }
  // dimensions, explicit floats
  const want = await ollamaDirect(m, ['one', 'two'], 4);
  const res = await c.embeddings.create({ model: 'ol-embed', input: ['one', 'two'], dimensions: 4, encoding_format: 'float' });
  assertVectors(res.data, want.embeddings, 'ollama dims=4');
  assert.equal(lastRequest(await m.stats()).body.dimensions, 4);
  // raw: float arrays when asked for floats, base64 float32 strings when asked for base64
  const raw = await http('POST', `${cluster.worker.base}/v1/embeddings`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` },
    body: { model: 'ol-embed', input: 'one', encoding_format: 'float' },
  });
  assert.equal(raw.status, 200, raw.text);
  assert.ok(Array.isArray(raw.json.data[0].embedding));
  const b64 = await http('POST', `${cluster.worker.base}/v1/embeddings`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` },
    body: { model: 'ol-embed', input: 'one', encoding_format: 'base64' },
  });
  assert.equal(b64.status, 200, b64.text);
  const bytes = Buffer.from(b64.json.data[0].embedding, 'base64');
  assert.equal(bytes.length, 8 * 4, 'float32 × 8');
  const one = (await ollamaDirect(m, 'one')).embeddings[0];
  for (let k = 0; k < 8; k++) assert.ok(Math.abs(bytes.readFloatLE(k * 4) - one[k]) < 1e-6, `b64[${k}]`);
  assert.ok(!('encoding_format' in lastRequest(await m.stats()).body), 'encoding_format is not Ollama\'s');
});

itest('embeddings via ollama: token-id input is 400 unsupported_request, nothing sent; 500 fails over', async (env) => {
  const bad = await env.startMock('emb-ol-bad');
  const good = await env.startMock('emb-ol-good');
  const cluster = await env.startCluster({
    model_list: [
      deployment('ol-embed', { model: 'ollama/nomic-embed-text', api_base: good.base }),
      deployment('ha-embed', { model: 'ollama/nomic-embed-text', api_base: bad.base, weight: 1000 }),
      deployment('ha-embed', { model: 'ollama/nomic-embed-text', api_base: `${good.base}/v1`, weight: 1 }),
    ],
    router_settings: { num_retries: 2, timeout: 10 },
  });
  const w = cluster.worker;
  const before = (await good.stats()).requests;
  for (const input of [[1, 2, 3], [[1, 2], [3]]]) {
    const r = await http('POST', `${w.base}/v1/embeddings`, {
      headers: { authorization: `Bearer ${MASTER_KEY}` }, body: { model: 'ol-embed', input },
    });
    const e = assertOpenAIError(r, 400, 'unsupported_request');
    assert.match(e.message, /token/i, e.message);
    assertNoLeak(r.text, { ports: [good.port, bad.port] });
  }
  assert.equal((await good.stats()).requests, before, 'nothing reached the provider');

  await bad.setDefault({ status: 500 });
  const c = client(w);
  let failedOver = 0;
  for (let i = 0; i < 3; i++) {
    const want = await ollamaDirect(good, ['fail', 'over']);
    const { data: res, response } = await c.embeddings.create({ model: 'ha-embed', input: ['fail', 'over'] }).withResponse();
    assertVectors(res.data, want.embeddings, 'after failover');
    assert.equal(response.headers.get('x-llmesh-deployment'), 'ha-embed-2');
    if (response.headers.get('x-llmesh-attempts') === '2') failedOver++;
  }
  assert.ok(failedOver > 0, 'the 500ing deployment was tried first at least once');
  assert.equal(lastRequest(await good.stats()).raw.path, '/api/embed', 'a /v1 api_base still reaches /api/embed');
});

itest('embeddings via an azure deployment: /openai/deployments/{d}/embeddings, api-key, base64 passes through', async (env, t) => {
  const m = await env.startMock('emb-az');
  const probe = await azureDirect(m, 'probe');
  assert.equal(probe.status, 200, probe.text);
  const cluster = await env.startCluster({
    model_list: [
      deployment('az-embed', { model: 'azure/my-embed', api_base: m.base, api_version: AZ_VERSION, api_key: LITERAL_KEY }),
      deployment('az-v1', { model: 'azure/my-embed', api_base: `${m.base}/openai/v1`, api_key: LITERAL_KEY }),
    ],
    router_settings: { num_retries: 1, timeout: 10 },
  });
  const c = client(cluster.worker);
  for (const input of inputs) {
    const want = await azureDirect(m, input);
    assert.equal(want.status, 200, want.text);
    const { data: res, response } = await c.embeddings.create({ model: 'az-embed', input }).withResponse();
    assert.equal(response.headers.get('x-llmesh-deployment'), 'az-embed-1');
    assert.equal(res.model, 'az-embed', 'the alias, not the deployment or the underlying model');
    assertVectors(res.data, want.json.data.map((d) => d.embedding), `azure ${JSON.stringify(input)}`);
    assert.equal(res.usage.prompt_tokens, want.json.usage.prompt_tokens);
    const lr = lastRequest(await m.stats());
    assert.equal(lr.raw.path, '/openai/deployments/my-embed/embeddings');
    assert.match(lr.raw.query ?? '', new RegExp(`api-version=${AZ_VERSION}`));
    assert.equal(lr.headers['api-key'], LITERAL_KEY);
    assert.equal(lr.headers.authorization, undefined, 'never Authorization next to api-key');
    assert.equal(lr.body.model, 'my-embed', 'model spliced to the deployment');
    assert.deepEqual(lr.body.input, input);
    assert.equal(lr.body.encoding_format, 'base64', 'the SDK default reaches Azure untouched');
  }
  // floats and dimensions; the v1 surface
  const want = await azureDirect(m, ['one', 'two'], 4);
  for (const group of ['az-embed', 'az-v1']) {
    const res = await c.embeddings.create({ model: group, input: ['one', 'two'], dimensions: 4, encoding_format: 'float' });
    assertVectors(res.data, want.json.data.map((d) => d.embedding), `${group} dims=4`);
    const lr = lastRequest(await m.stats());
    assert.equal(lr.body.dimensions, 4);
    assert.equal(lr.body.encoding_format, 'float');
    if (group === 'az-v1') assert.equal(lr.raw.path, '/openai/v1/embeddings');
  }
  const b64 = await http('POST', `${cluster.worker.base}/v1/embeddings`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` },
    body: { model: 'az-embed', input: 'one', encoding_format: 'base64' },
  });
  assert.equal(b64.status, 200, b64.text);
  assert.equal(typeof b64.json.data[0].embedding, 'string');
  const bytes = Buffer.from(b64.json.data[0].embedding, 'base64');
  assert.equal(bytes.length, 4 * 8);
  const one = (await azureDirect(m, 'one')).json.data[0].embedding;
  for (let k = 0; k < 8; k++) assert.ok(Math.abs(bytes.readFloatLE(k * 4) - one[k]) < 1e-6, `b64[${k}]`);
  assertNoLeak(b64.text, { ports: [m.port] });
});
