// embeddings.test.mjs — POST /v1/embeddings end to end with the official openai SDK: an
// OpenAI-format deployment (passthrough, model rewritten) and a Gemini deployment
// (:batchEmbedContents through the adapter), string and array inputs, dimensions, the
// SDK's default base64 encoding and explicit floats, failover on 500, and families
// without embeddings.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  itest, deployment, assertOpenAIError, http, lastRequest, MASTER_KEY, PROVIDER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

async function setup(env) {
  const o = await env.startMock('emb-oa');
  const g = await env.startMock('emb-gm');
  const a = await env.startMock('emb-an');
  const h1 = await env.startMock('ha-1');
  const h2 = await env.startMock('ha-2');
  const cluster = await env.startCluster({
    model_list: [
      deployment('oa-embed', { model: 'openai/text-embed-mock', api_base: o.apiBase, api_key: 'os.environ/MOCK_KEY' }),
      deployment('gm-embed', { model: 'gemini/gemini-embed-mock', api_base: `${g.base}/v1beta`, api_key: LITERAL_KEY }),
      deployment('claude', { model: 'anthropic/claude-mock', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY' }),
      deployment('ha-embed', { model: 'openai/text-embed-mock', api_base: h1.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1000 }),
      deployment('ha-embed', { model: 'gemini/gemini-embed-mock', api_base: `${h2.base}/v1beta`, api_key: LITERAL_KEY, weight: 1 }),
    ],
    router_settings: { num_retries: 2, timeout: 10 },
  });
  const w = cluster.worker;
  const client = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  // The mock called directly (OpenAI format): its vectors are deterministic from the text.
  const direct = new OpenAI({ baseURL: o.apiBase, apiKey: PROVIDER_KEY, maxRetries: 0, timeout: 20000 });
  return { o, g, a, h1, h2, w, client, direct };
}

function assertVectorsEqual(got, want, what) {
  assert.equal(got.length, want.length, `${what}: vector count`);
  for (let i = 0; i < want.length; i++) {
    assert.equal(got[i].index, i, `${what}: index ${i}`);
    assert.equal(got[i].object, 'embedding');
    const gv = got[i].embedding, wv = want[i].embedding;
    assert.equal(gv.length, wv.length, `${what}[${i}]: dims`);
    for (let k = 0; k < wv.length; k++) assert.ok(Math.abs(gv[k] - wv[k]) < 1e-6, `${what}[${i}][${k}]: ${gv[k]} vs ${wv[k]}`);
  }
}

const inputs = ['The quick brown fox.', ['alpha', 'beta gamma', 'alpha']];

for (const [group, fmt] of [['oa-embed', 'openai'], ['gm-embed', 'gemini']]) {
  itest(`embeddings via ${fmt} deployment: vectors equal the mock's, string and array, dims`, async (env) => {
    const { o, g, client, direct } = await setup(env);
    const mock = fmt === 'openai' ? o : g;
    for (const input of inputs) {
      const want = await direct.embeddings.create({ model: 'x', input });
      const { data: res, response } = await client.embeddings.create({ model: group, input }).withResponse();
      assert.equal(response.headers.get('x-llmesh-deployment'), `${group}-1`);
      assert.equal(res.object, 'list');
      assertVectorsEqual(res.data, want.data, `${fmt} ${JSON.stringify(input)}`);
      assert.equal(res.data[0].embedding.length, 8, 'the mock default is 8 dims');
      assert.ok(res.usage && typeof res.usage.prompt_tokens === 'number', JSON.stringify(res.usage));
      const lr = lastRequest(await mock.stats());
      assert.equal(lr.raw.format, fmt);
      if (fmt === 'openai') {
        assert.equal(lr.model, 'text-embed-mock', 'model rewritten upstream');
        assert.equal(lr.authorization, `Bearer ${PROVIDER_KEY}`);
        assert.match(lr.raw.path, /\/v1\/embeddings$/);
      } else {
        assert.match(lr.raw.path, /\/v1beta\/models\/gemini-embed-mock:batchEmbedContents$/);
        assert.equal(lr.headers['x-goog-api-key'], LITERAL_KEY);
        const n = Array.isArray(input) ? input.length : 1;
        assert.equal(lr.body.requests.length, n);
        assert.equal(lr.body.requests[0].model, 'models/gemini-embed-mock');
      }
    }
    // dimensions honoured, explicit float encoding
    const want = await direct.embeddings.create({ model: 'x', input: ['one', 'two'], dimensions: 4, encoding_format: 'float' });
    const res = await client.embeddings.create({ model: group, input: ['one', 'two'], dimensions: 4, encoding_format: 'float' });
    assertVectorsEqual(res.data, want.data, `${fmt} dims=4`);
    assert.equal(res.data[0].embedding.length, 4);
    if (fmt === 'gemini') assert.equal(lastRequest(await g.stats()).body.requests[1].outputDimensionality, 4);
    // raw: floats are JSON numbers when asked for; base64 is a string
    const raw = await http('POST', `${client.baseURL}/embeddings`, {
      headers: { authorization: `Bearer ${MASTER_KEY}` },
      body: { model: group, input: 'one', encoding_format: 'base64' },
    });
    assert.equal(raw.status, 200, raw.text);
    assert.equal(typeof raw.json.data[0].embedding, 'string');
    assert.equal(Buffer.from(raw.json.data[0].embedding, 'base64').length, 8 * 4, 'float32 × 8');
  });
}

itest('embeddings: failover on 500 is invisible; families without embeddings are skipped or 400', async (env) => {
  const { h1, h2, client, direct, w } = await setup(env);
  await h1.setDefault({ status: 500 });
  let failedOver = 0;
  for (let i = 0; i < 3; i++) {
    const want = await direct.embeddings.create({ model: 'x', input: ['fail', 'over'] });
    const { data: res, response } = await client.embeddings.create({ model: 'ha-embed', input: ['fail', 'over'] }).withResponse();
    assertVectorsEqual(res.data, want.data, 'after failover');
    assert.equal(response.headers.get('x-llmesh-deployment'), 'ha-embed-2');
    if (response.headers.get('x-llmesh-attempts') === '2') failedOver++;
  }
  assert.ok(failedOver > 0, 'the 500ing deployment was tried first at least once');
  assert.ok((await h1.stats()).requests > 0 && (await h2.stats()).requests >= 3);

  const r = await http('POST', `${w.base}/v1/embeddings`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` }, body: { model: 'claude', input: 'x' },
  });
  assertOpenAIError(r, 400, 'unsupported_request');
  const t = await http('POST', `${w.base}/v1/embeddings`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` }, body: { model: 'gm-embed', input: [[1, 2, 3]] },
  });
  assertOpenAIError(t, 400, 'unsupported_request');
  const nf = await http('POST', `${w.base}/v1/embeddings`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` }, body: { model: 'nope', input: 'x' },
  });
  assertOpenAIError(nf, 404, 'model_not_found');
  const na = await http('POST', `${w.base}/v1/embeddings`, { body: { model: 'oa-embed', input: 'x' } });
  assertOpenAIError(na, 401, 'authentication_error');
});
