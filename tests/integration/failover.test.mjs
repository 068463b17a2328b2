// failover.test.mjs — the worker fails over before the client notices: 5xx, 429, refused
// connection, timeout, fallback groups, and an honest, leak-free error when all fail.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  itest, deployment, assertOpenAIError, assertNoLeak, hello, metricSum, freePort, waitFor, SLOW,
  MASTER_KEY, PROVIDER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

// gpt-4 → gpt-4-1 (weight 100, 1 s timeout: chosen first almost always) and gpt-4-2
// (weight 1); fallback gpt-4 → claude (claude-1). `first` overrides gpt-4-1's api_base
// (e.g. a closed port).
async function setup(env, { first, routerTimeout = 5 } = {}) {
  const a = first ? null : await env.startMock('gpt-4-1');
  const b = await env.startMock('gpt-4-2');
  const c = await env.startMock('claude-1');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt-4', { model: 'openai/gpt-4o', api_base: first ?? a.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 100, timeout: 1 }),
      deployment('gpt-4', { model: 'openai/gpt-4o-mini', api_base: b.apiBase, api_key: LITERAL_KEY, weight: 1 }),
      deployment('claude', { model: 'openai/claude-mock', api_base: c.apiBase, api_key: 'x' }),
    ],
    // mid_stream_fallback error: the cut test pins the error event (continuation: midstream.test.mjs)
    router_settings: { num_retries: 2, timeout: routerTimeout, fallbacks: [{ 'gpt-4': ['claude'] }], mid_stream_fallback: 'error' },
  });
  const w = cluster.worker;
  const client = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { a, b, c, cluster, w, client };
}

async function chat(client, model = 'gpt-4', extra = {}) {
  const { data, response } = await client.chat.completions.create({ model, messages, ...extra }).withResponse();
  return { data, response, dep: response.headers.get('x-llmesh-deployment'), attempts: Number(response.headers.get('x-llmesh-attempts')) };
}

// gpt-4-1 is broken as scripted; gpt-4-2 is healthy. Every request must succeed from
// gpt-4-2, and whenever gpt-4-1 was tried first (weight 100:1, so nearly always) the
// answer says attempts = 2. Deterministic: each request is checked against the mocks'
// counters, and we stop at the first failover seen (at most 8 tries).
async function expectFailover(env, { a, b, client, failingRequests }) {
  let seen = 0;
  let failedOver = null;
  for (let i = 0; i < 8 && seen === 0; i++) {
    const before = failingRequests ? await failingRequests() : (await a.stats()).requests;
    const bBefore = (await b.stats()).requests;
    const r = await chat(client);
    const after = failingRequests ? await failingRequests() : (await a.stats()).requests;
    assert.equal(r.dep, 'gpt-4-2', 'answered by the healthy deployment');
    assert.equal(r.data.choices[0].message.content, hello('gpt-4-2'));
    assert.equal((await b.stats()).requests - bBefore, 1, 'healthy deployment called once');
    if (after - before >= 1) {
      assert.equal(r.attempts, 2, 'x-llmesh-attempts = 2 after one failed attempt');
      seen++;
      failedOver = r;
    } else {
      assert.equal(r.attempts, 1);
    }
  }
  assert.ok(seen > 0, 'the failing deployment was tried first at least once in 8 requests (weight 100:1)');
  return failedOver;
}

// Every failover decision is logged with its reason (DEVELOPERS.md, common/log.h), under
// the request id the client saw; and every log line is one JSON object.
async function expectFailoverLogged(w, r, from = 'gpt-4-1') {
  const rid = r.response.headers.get('x-request-id');
  assert.ok(rid, 'x-request-id');
  const line = await waitFor(() => w.proc.jsonLog().find((l) => l.event === 'failover' && l.request_id === rid),
    { timeoutMs: 2000, what: `a "failover" log line for ${rid}` });
  assert.equal(line.from, from, `failover log names the deployment: ${JSON.stringify(line)}`);
  assert.ok(typeof line.reason === 'string' && line.reason.length > 0, `failover log has a reason: ${JSON.stringify(line)}`);
  assertNoLeak(JSON.stringify(line), { keys: [PROVIDER_KEY, LITERAL_KEY] });
  return line;
}

itest('500 on the first deployment → success from the other, counted in /metrics', async (env) => {
  const s = await setup(env);
  await s.a.setDefault({ status: 500, body: { error: { message: 'boom', type: 'server_error' } } });
  const t0 = Date.now();
  const r = await expectFailover(env, s);
  assert.ok(Date.now() - t0 < 10000 * SLOW, 'fast failover');
  await expectFailoverLogged(s.w, r);
  const m = await s.w.metrics();
  assert.ok(metricSum(m, 'llmesh_failovers_total') > 0, `llmesh_failovers_total > 0 in:\n${m}`);
});

itest('429 with retry-after → failover', async (env) => {
  const s = await setup(env);
  await s.a.setDefault({
    status: 429, headers: { 'retry-after': '1' },
    body: { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } },
  });
  await expectFailoverLogged(s.w, await expectFailover(env, s));
});

itest('refused connection → failover', async (env) => {
  const closed = await freePort(); // nothing listens there
  const s = await setup(env, { first: `http://127.0.0.1:${closed}/v1` });
  // A closed port leaves no trace in a mock: attempts = 2 is the proof it was tried.
  let tried = 0;
  for (let i = 0; i < 8 && tried === 0; i++) {
    const r = await chat(s.client);
    assert.equal(r.dep, 'gpt-4-2');
    assert.equal(r.data.choices[0].message.content, hello('gpt-4-2'));
    assert.ok(r.attempts === 1 || r.attempts === 2, `attempts ${r.attempts}`);
    if (r.attempts === 2) { tried++; await expectFailoverLogged(s.w, r); }
  }
  assert.ok(tried > 0, 'the refused deployment was tried and failed over at least once');
  const m = await s.w.metrics();
  assert.ok(metricSum(m, 'llmesh_failovers_total') > 0, 'failover counted');
});

itest('timeout (delay beyond the deployment timeout) → failover', async (env) => {
  const s = await setup(env);
  await s.a.setDefault({ delay_ms: 4000 }); // gpt-4-1 has timeout: 1 (s)
  const t0 = Date.now();
  const r = await expectFailover(env, s);
  const took = Date.now() - t0;
  await expectFailoverLogged(s.w, r);
  // One timed-out attempt costs ~1 s; waiting for the mock's 4 s would mean no deadline.
  assert.ok(took < 3800 * SLOW, `deployment timeout honoured (took ${took} ms)`);
});

itest('all deployments of gpt-4 fail → fallback group claude answers', async (env) => {
  const s = await setup(env);
  await s.a.setDefault({ status: 500 });
  await s.b.setDefault({ status: 503 });
  const r = await chat(s.client);
  assert.equal(r.dep, 'claude-1');
  assert.equal(r.data.choices[0].message.content, hello('claude-1'));
  const [sa, sb, sc] = [await s.a.stats(), await s.b.stats(), await s.c.stats()];
  assert.ok(sa.requests >= 1 && sb.requests >= 1, `both gpt-4 deployments tried first: ${sa.requests}, ${sb.requests}`);
  assert.equal(sc.requests, 1);
  assert.equal(r.attempts, sa.requests + sb.requests + sc.requests, 'x-llmesh-attempts counts every attempt');

  // Streams fall back too (failure before the first byte is invisible to the client).
  const { data: stream, response } = await s.client.chat.completions
    .create({ model: 'gpt-4', messages, stream: true }).withResponse();
  assert.equal(response.headers.get('x-llmesh-deployment'), 'claude-1');
  let content = '';
  for await (const ch of stream) content += ch.choices[0]?.delta?.content ?? '';
  assert.equal(content, hello('claude-1'));
});

itest('everything fails → 5xx OpenAI-shaped error that leaks nothing', async (env) => {
  const s = await setup(env, { routerTimeout: 2 });
  for (const m of [s.a, s.b, s.c]) await m.setDefault({ status: 500 });
  const ports = [s.a.port, s.b.port, s.c.port];

  const r = await s.w.chat({ model: 'gpt-4', messages });
  assertOpenAIError(r, [502, 504]);
  assertNoLeak(r.text + JSON.stringify([...r.headers.entries()]), { ports, keys: [PROVIDER_KEY, LITERAL_KEY, 'Bearer x'] });
  const total = (await s.a.stats()).requests + (await s.b.stats()).requests + (await s.c.stats()).requests;
  assert.ok(total >= 3, `every deployment tried (${total} attempts)`);

  // The SDK surfaces it as an APIError with the status.
  await assert.rejects(s.client.chat.completions.create({ model: 'gpt-4', messages }), (e) => {
    assert.ok(e instanceof OpenAI.APIError, `APIError: ${e}`);
    assert.ok(e.status === 502 || e.status === 504, `status ${e.status}`);
    assertNoLeak(e.message, { ports });
    return true;
  });

  // Same for a stream that never got a first byte.
  const rs = await s.w.chat({ model: 'gpt-4', messages, stream: true });
  assertOpenAIError(rs, [502, 504]);
  assertNoLeak(rs.text, { ports });

  // Upstream timeouts everywhere (router timeout 2 s) → 504 (or 502), still no leak. The 5xx
  // runs above opened the worker-local circuits (5 in a row): wait out their 1 s first.
  await new Promise((r) => setTimeout(r, 1100));
  for (const m of [s.a, s.b, s.c]) await m.setDefault({ hang: true });
  const rt = await s.w.chat({ model: 'claude', messages }, { timeoutMs: 30000 });
  assertOpenAIError(rt, [502, 504]);
  assertNoLeak(rt.text, { ports });

  const m = await s.w.metrics();
  assert.ok(metricSum(m, 'llmesh_failovers_total') > 0, 'failovers counted');
});

itest('stream whose first event is late → failover before the client sees a byte', async (env) => {
  const s = await setup(env);
  // Headers at once, first chunk after 4 s; gpt-4-1's stream deadline is its timeout (1 s).
  await s.a.setDefault({ ttft_ms: 4000 });
  const t0 = Date.now();
  let seen = 0;
  for (let i = 0; i < 8 && seen === 0; i++) {
    const before = (await s.a.stats()).requests;
    const { data: stream, response } = await s.client.chat.completions
      .create({ model: 'gpt-4', messages, stream: true }).withResponse();
    let content = '';
    for await (const ch of stream) content += ch.choices[0]?.delta?.content ?? '';
    assert.equal(response.headers.get('x-llmesh-deployment'), 'gpt-4-2');
    assert.equal(content, hello('gpt-4-2'), 'the client sees only the healthy stream');
    if ((await s.a.stats()).requests > before) {
      assert.equal(response.headers.get('x-llmesh-attempts'), '2');
      seen++;
    }
  }
  assert.ok(seen > 0, 'the slow deployment was tried first at least once');
  assert.ok(Date.now() - t0 < 3800 * SLOW, 'failed over on the deadline, not after the late chunk');
});

itest('stream cut after the first bytes → the client is told, never a clean end', async (env) => {
  const s = await setup(env);
  await s.c.setDefault({ cut_after: 2 }); // claude-1: close after two content chunks
  const { data: stream, response } = await s.client.chat.completions
    .create({ model: 'claude', messages, stream: true }).withResponse();
  assert.equal(response.status, 200);
  let content = '';
  let finish = null;
  await assert.rejects((async () => {
    for await (const ch of stream) {
      content += ch.choices[0]?.delta?.content ?? '';
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
  })(), 'iterating a cut stream fails (error event or broken connection)');
  assert.notEqual(finish, 'stop', 'no fake finish_reason');
  assert.ok(content.length < hello('claude-1').length, `partial content only: ${content}`);

  // Non-stream: a cut before the answer completes is a failed attempt → failover.
  await s.a.setDefault({ cut_after: 1 });
  let failedOver = 0;
  for (let i = 0; i < 8 && failedOver === 0; i++) {
    const r = await chat(s.client);
    assert.equal(r.dep, 'gpt-4-2');
    assert.equal(r.data.choices[0].message.content, hello('gpt-4-2'));
    if (r.attempts === 2) failedOver++;
  }
  assert.ok(failedOver > 0, 'a cut non-stream answer fails over');
});
