// resilience.test.mjs — the worker's attempt loop obeys breakers, cooldowns, budgets and
// deadlines (docs/resilience.md): a refused port trips the worker-local breaker, a 429's
// retry-after keeps its deployment out for exactly that long, a refused credential fails
// over (and is reported, never leaked), context-length refusals go to the group's
// context_window_fallbacks, total_timeout bounds a request, and a fully rate-limited
// group answers 429 with Retry-After instead of hammering the providers.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  itest, deployment, assertOpenAIError, assertNoLeak, hello, freePort, portOpen, waitFor, sleep,
  Mock, BIN, SLOW, MASTER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

function client(w) {
  return new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 30000 });
}

async function chat(c, model) {
  const { data, response } = await c.chat.completions.create({ model, messages }).withResponse();
  return {
    data, response,
    dep: response.headers.get('x-llmesh-deployment'),
    attempts: Number(response.headers.get('x-llmesh-attempts')),
    rid: response.headers.get('x-request-id'),
  };
}

/** Value of one sample `name{labels...}` (labels as an object, all must match); NaN if absent. */
function metricValue(text, name, labels) {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return NaN;
}

const logLines = (w, event) => w.proc.jsonLog().filter((l) => l.event === event);

/** Telemetry as the control plane sums it (`llmesh-ctl status --json`), for deployment name. */
async function ctlDeployment(cluster, name, pred, what) {
  return waitFor(async () => {
    const d = (await cluster.status()).deployments.find((x) => x.name === name);
    return d && pred(d) ? d : null;
  }, { timeoutMs: 5000, what: `llmesh-ctl status: ${name} ${what}` });
}

itest('refused port: the local breaker opens after 3 connect errors; then one attempt, shown in /metrics', async (env) => {
  const closed = await freePort(); // nothing listens there
  const b = await env.startMock('healthy');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: `http://127.0.0.1:${closed}/v1`, api_key: 'k', weight: 1000 }, { id: 'dead' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k', weight: 1 }, { id: 'alive' }),
    ],
    // long local open period: the circuit must still be open while the test looks at it
    router_settings: { local_trip_failures: 3, local_cooldown: 60 },
  });
  const w = cluster.worker;
  const c = client(w);
  let failovers = 0;
  let afterTrip = 0;
  for (let i = 0; i < 20 && afterTrip < 4; i++) {
    const r = await chat(c, 'g');
    assert.equal(r.dep, 'alive');
    assert.equal(r.data.choices[0].message.content, hello('healthy'));
    if (r.attempts === 2) {
      assert.ok(afterTrip === 0, 'no attempt on the dead deployment once its circuit is open');
      failovers++;
    } else {
      assert.equal(r.attempts, 1);
      if (failovers >= 3) afterTrip++;
    }
  }
  assert.equal(failovers, 3, 'exactly local_trip_failures connect errors before the circuit opened');
  assert.equal(afterTrip, 4, 'requests after the trip are answered with x-llmesh-attempts: 1');

  const open = await waitFor(() => logLines(w, 'circuit_open').find((l) => l.deployment === 'dead'),
    { what: 'a circuit_open log line' });
  assert.equal(open.circuit_level, 'local'); // not "level": that is the line's severity
  assert.equal(open.level, 'warn');
  assert.equal(open.consecutive_failures, 3);
  assert.equal(open.trip_on, 'connect'); // the run that tripped it (5xx runs log 'server')
  const skip = logLines(w, 'route_skip').find((l) => l.deployment === 'dead');
  assert.ok(skip && skip.reason === 'local_open', `route_skip logged: ${JSON.stringify(skip)}`);

  const m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_circuit_state', { deployment: 'dead', level: 'local' }), 1, m);
  assert.equal(metricValue(m, 'llmesh_circuit_state', { deployment: 'alive', level: 'local' }), 0);
  assert.equal(metricValue(m, 'llmesh_local_trips_total', { deployment: 'dead' }), 1);
  assert.ok(metricValue(m, 'llmesh_route_refusals_total', { deployment: 'dead', reason: 'local_open' }) >= 1);
  assert.equal(metricValue(m, 'llmesh_upstream_errors_total', { deployment: 'dead', class: 'connect_error' }), 3);
  assert.equal(metricValue(m, 'llmesh_deployment_in_flight', { deployment: 'dead' }), 0, 'no attempt leaked');
  assert.equal(metricValue(m, 'llmesh_deployment_in_flight', { deployment: 'alive' }), 0);
  // the same numbers reach the control plane (Telemetry DeploymentStats 15-23)
  await ctlDeployment(cluster, 'dead', (d) => d.local_trips === 1 && d.in_flight === 0, 'local_trips 1');
});

itest('local breaker: after its open period one trial goes through; a success closes it', async (env) => {
  const port = await freePort(); // closed now, a mock listens there later
  const b = await env.startMock('healthy');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: `http://127.0.0.1:${port}/v1`, api_key: 'k', weight: 1000 }, { id: 'flaky' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k', weight: 1 }, { id: 'steady' }),
    ],
    router_settings: { local_trip_failures: 2, local_cooldown: 1 },
  });
  const w = cluster.worker;
  const c = client(w);
  await waitFor(async () => { await chat(c, 'g'); return logLines(w, 'circuit_open').length > 0; },
    { timeoutMs: 5000, intervalMs: 10, what: 'the local circuit of flaky open' });
  const openedAt = Date.now();
  const proc = env.spawn('mock-revived', BIN.mock, ['--listen', `127.0.0.1:${port}`, '--name', 'revived']);
  await env.waitReady(proc, () => portOpen(port), `port ${port} accepting`, 5000);
  const revived = new Mock(proc, port, 'revived');
  const r = await chat(c, 'g');
  if (Date.now() - openedAt < 900) assert.equal(r.dep, 'steady', 'open: not tried');
  const back = await waitFor(async () => {
    const x = await chat(c, 'g');
    return x.dep === 'flaky' ? x : null;
  }, { timeoutMs: 5000, intervalMs: 100, what: 'the trial on flaky after the open period' });
  assert.ok(Date.now() - openedAt >= 900, 'not before local_cooldown (1 s)');
  assert.equal(back.data.choices[0].message.content, hello('revived'));
  assert.equal(back.attempts, 1);
  assert.ok(logLines(w, 'circuit_half_open').some((l) => l.deployment === 'flaky' && l.circuit_level === 'local'));
  assert.ok(logLines(w, 'circuit_closed').some((l) => l.deployment === 'flaky' && l.request_id === back.rid));
  const m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_circuit_state', { deployment: 'flaky', level: 'local' }), 0);
  assert.equal((await revived.stats()).requests, 1, 'one trial, answered');
});

itest('429 with retry-after: 2 keeps the deployment out for ~2 s, then it is used again', async (env) => {
  const a = await env.startMock('a');
  const b = await env.startMock('b');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'k', weight: 1000 }, { id: 'ra' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k', weight: 1 }, { id: 'rb' }),
    ],
  });
  const w = cluster.worker;
  const c = client(w);
  // The mock's 429 also sends retry-after-ms: 1000 by default (it wins over retry-after):
  // script both to 2 s.
  const fault = {
    status: 429, headers: { 'retry-after': '2', 'retry-after-ms': '2000' },
    body: { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } },
  };
  await a.setDefault(fault);
  let t429 = 0;
  for (let i = 0; i < 10 && !t429; i++) {
    const before = (await a.stats()).requests;
    const r = await chat(c, 'g');
    assert.equal(r.dep, 'rb');
    if ((await a.stats()).requests > before) { t429 = Date.now(); assert.equal(r.attempts, 2); }
  }
  assert.ok(t429, 'the rate-limited deployment was tried first (weight 1000:1)');
  await a.setDefault({}); // healthy again: only the cooldown keeps it out now
  const aAfter = (await a.stats()).requests;
  while (Date.now() - t429 < 1500) {
    const r = await chat(c, 'g');
    assert.equal(r.dep, 'rb', 'cooling deployment not used');
    assert.equal(r.attempts, 1, 'cooling deployment not even tried');
    await sleep(100);
  }
  assert.equal((await a.stats()).requests, aAfter, 'no request reached the cooling deployment');
  const back = await waitFor(async () => {
    const r = await chat(c, 'g');
    return r.dep === 'ra' ? Date.now() : 0;
  }, { timeoutMs: 6000, intervalMs: 100, what: 'the deployment used again after its cooldown' });
  assert.ok(back - t429 >= 1800, `used again after ${back - t429} ms (retry-after 2 s)`);
  const cool = logLines(w, 'cooldown').find((l) => l.deployment === 'ra');
  assert.ok(cool && cool.reset_hint_ms === 2000, `cooldown logged with the hint: ${JSON.stringify(cool)}`);
  const m = await w.metrics();
  assert.ok(metricValue(m, 'llmesh_cooldowns_total', { deployment: 'ra' }) >= 1, m);
  assert.ok(metricValue(m, 'llmesh_route_refusals_total', { deployment: 'ra', reason: 'cooling' }) >= 1);
  await ctlDeployment(cluster, 'ra', (d) => d.cooldowns >= 1 && d.rate_limited >= 1, 'cooldowns');
});

itest('401 from a passthrough deployment fails over, is logged and counted; only 401s → 502 without the key', async (env) => {
  const a = await env.startMock('a');
  const b = await env.startMock('b');
  const s = await env.startMock('s');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 1000 }, { id: 'ka' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k', weight: 1 }, { id: 'kb' }),
      deployment('solo', { model: 'openai/gpt-4o', api_base: s.apiBase, api_key: LITERAL_KEY }, { id: 'ks' }),
    ],
  });
  const w = cluster.worker;
  const c = client(w);
  const denied = { status: 401, body: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } } };
  await a.setDefault(denied);
  await s.setDefault(denied);
  let r = null;
  for (let i = 0; i < 8; i++) {
    const before = (await a.stats()).requests;
    const x = await chat(c, 'g');
    assert.equal(x.dep, 'kb', 'the client never sees our credential problem');
    assert.equal(x.data.choices[0].message.content, hello('b'));
    if ((await a.stats()).requests > before) { r = x; break; }
  }
  assert.ok(r, 'the refusing deployment was tried first (weight 1000:1)');
  assert.equal(r.attempts, 2);
  const line = await waitFor(() => logLines(w, 'credential_failed').find((l) => l.request_id === r.rid),
    { what: 'credential_failed for the request' });
  assert.equal(line.deployment, 'ka');
  assert.equal(line.status, 401);
  assert.equal(line.level, 'warn');
  assertNoLeak(JSON.stringify(line));
  // the refused credential keeps the deployment out (one trial after 60 s)
  const again = await chat(c, 'g');
  assert.equal(again.dep, 'kb');
  assert.equal(again.attempts, 1);
  let m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_upstream_errors_total', { deployment: 'ka', class: 'auth_error' }), 1, m);

  // a group whose only deployment refuses our key: 502 upstream_auth_failed naming it, no key
  const only = await w.chat({ model: 'solo', messages });
  const err = assertOpenAIError(only, 502, 'upstream_auth_failed');
  assert.match(err.message, /ks/);
  assertNoLeak(only.text + JSON.stringify([...only.headers.entries()]), { ports: [s.port] });
  // ... and while its credential is out, nothing is sent: 503 saying why
  const sBefore = (await s.stats()).requests;
  const out = await w.chat({ model: 'solo', messages });
  const e2 = assertOpenAIError(out, 503, 'no_healthy_deployment');
  assert.match(e2.message, /1 with a refused credential/);
  assert.ok(Number(out.headers.get('retry-after')) >= 1, 'Retry-After on 503');
  assert.equal((await s.stats()).requests, sBefore, 'no request while the credential is out');
  m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_request_failures_total', { reason: 'upstream_auth_failed' }), 1);
  await ctlDeployment(cluster, 'ka', (d) => d.auth_error === 1 && d.client_error === 0, 'auth_error 1');
});

itest('context_window_fallbacks / content_policy_fallbacks: a refusal goes to the fallback group', async (env) => {
  const sm = await env.startMock('small');
  const bg = await env.startMock('big');
  const ot = await env.startMock('other');
  const cluster = await env.startCluster({
    model_list: [
      deployment('small', { model: 'openai/gpt-4o-mini', api_base: sm.apiBase, api_key: 'k' }),
      deployment('big', { model: 'openai/gpt-4o', api_base: bg.apiBase, api_key: 'k' }),
      deployment('other', { model: 'openai/gpt-4o', api_base: ot.apiBase, api_key: 'k' }),
    ],
    router_settings: {
      context_window_fallbacks: [{ small: ['big'] }],
      content_policy_fallbacks: [{ small: ['big'] }],
    },
  });
  const w = cluster.worker;
  const c = client(w);
  const tooLong = {
    status: 400,
    body: { error: { message: "This model's maximum context length is 8192 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } },
  };
  await sm.faults(tooLong);
  const r = await chat(c, 'small');
  assert.equal(r.dep, 'big-1');
  assert.equal(r.data.choices[0].message.content, hello('big'));
  assert.equal(r.attempts, 2);
  assert.equal((await sm.stats()).requests, 1);
  const line = await waitFor(() => logLines(w, 'failover').find((l) => l.request_id === r.rid),
    { what: 'failover log for the diverted request' });
  assert.equal(line.reason, 'context_window');
  assert.equal(line.from, 'small-1');

  await sm.faults({ status: 400, body: { error: { message: 'Flagged by the content filter.', type: 'invalid_request_error', code: 'content_filter' } } });
  const p = await chat(c, 'small');
  assert.equal(p.dep, 'big-1');
  const pl = await waitFor(() => logLines(w, 'failover').find((l) => l.request_id === p.rid), { what: 'failover log' });
  assert.equal(pl.reason, 'content_policy');

  // a group without such fallbacks: the 400 goes to the client as before
  await ot.faults(tooLong);
  const o = await w.chat({ model: 'other', messages });
  const e = assertOpenAIError(o, 400);
  assert.equal(e.code, 'context_length_exceeded');
  assert.equal((await bg.stats()).requests, 2, 'no fallback for a group without one');
  const m = await w.metrics();
  assert.ok(metricValue(m, 'llmesh_failovers_total', { deployment: 'small-1', reason: 'context_window' }) >= 1, m);
});

itest('total_timeout: hanging deployments → 504 request_timeout within the total deadline', async (env) => {
  const a = await env.startMock('a');
  const b = await env.startMock('b');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'k' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k' }),
    ],
    router_settings: { timeout: 10, total_timeout: 2 },
  });
  const w = cluster.worker;
  await a.setDefault({ hang: true });
  await b.setDefault({ hang: true });
  const t0 = Date.now();
  const r = await w.chat({ model: 'g', messages }, { timeoutMs: 20000 });
  const took = Date.now() - t0;
  assertOpenAIError(r, 504, 'request_timeout');
  assert.ok(took >= 1900 && took < 2000 + 1200 * SLOW, `answered after ${took} ms (total_timeout 2 s)`);
  assertNoLeak(r.text, { ports: [a.port, b.port] });
  // stream, and a deadline that passes after commit: the in-band error, no [DONE]
  await a.setDefault({ chunk_delay_ms: 700, content: 'one two three four five six seven eight' });
  await b.setDefault({ chunk_delay_ms: 700, content: 'one two three four five six seven eight' });
  const t1 = Date.now();
  const s = await w.chat({ model: 'g', messages, stream: true }, { timeoutMs: 20000 });
  const took2 = Date.now() - t1;
  assert.equal(s.status, 200);
  assert.match(s.text, /"code":"upstream_stream_stalled"/);
  assert.ok(!s.text.includes('[DONE]'), 'no [DONE] after the deadline');
  assert.ok(took2 < 2000 + 1200 * SLOW, `stream ended after ${took2} ms`);
  const m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_request_failures_total', { reason: 'request_timeout' }), 2, m);
  assert.ok(logLines(w, 'request_timeout').length >= 2);
  // the deadline cut the attempts short: never counted as the provider's timeout
  assert.equal(metricValue(m, 'llmesh_local_trips_total', { deployment: 'g-1' }), 0);
});

itest('everything rate limited: 429 with Retry-After, later requests are not sent upstream', async (env) => {
  const a = await env.startMock('a');
  const b = await env.startMock('b');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'k' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k' }),
    ],
    router_settings: { max_retry_after: 1 }, // resets of 3 s are not waited for in-line
  });
  const w = cluster.worker;
  const rl = { status: 429, headers: { 'retry-after': '3', 'retry-after-ms': '3000' } };
  await a.setDefault(rl);
  await b.setDefault(rl);
  const r = await w.chat({ model: 'g', messages });
  assertOpenAIError(r, 429, 'rate_limit_exceeded');
  assert.equal(r.headers.get('retry-after'), '3');
  assert.equal((await a.stats()).requests, 1);
  assert.equal((await b.stats()).requests, 1);
  for (let i = 0; i < 5; i++) {
    const x = await w.chat({ model: 'g', messages });
    const e = assertOpenAIError(x, 429, 'rate_limit_exceeded');
    const ra = Number(x.headers.get('retry-after'));
    assert.ok(ra >= 1 && ra <= 3, `Retry-After ${ra}`);
    assert.match(e.message, /cooling down/);
  }
  assert.equal((await a.stats()).requests + (await b.stats()).requests, 2, 'no hammering while cooling');
  const m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_request_failures_total', { reason: 'all_cooling' }), 5, m);
  assert.ok(metricValue(m, 'llmesh_cooldown_remaining_ms', { deployment: 'g-1' }) > 0);
});

itest('a short retry-after on the only deployment is waited for once, then retried', async (env) => {
  const a = await env.startMock('a');
  const cluster = await env.startCluster({
    model_list: [deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'k' })],
  });
  const w = cluster.worker;
  await a.faults({ status: 429, headers: { 'retry-after': '1', 'retry-after-ms': '1000' } });
  const t0 = Date.now();
  const r = await chat(client(w), 'g');
  const took = Date.now() - t0;
  assert.equal(r.data.choices[0].message.content, hello('a'));
  assert.equal(r.attempts, 2);
  assert.equal((await a.stats()).requests, 2);
  assert.ok(took >= 950 && took < 4000 * SLOW, `waited for the reset: ${took} ms`);
  assert.ok(logLines(w, 'retry_after_wait').some((l) => l.request_id === r.rid));
});

itest('adapter deployments: an Anthropic 401 fails over as auth_error; "prompt is too long" goes to context_window_fallbacks', async (env) => {
  const an = await env.startMock('anth');
  const op = await env.startMock('oai');
  const bg = await env.startMock('big');
  const cluster = await env.startCluster({
    model_list: [
      deployment('c', { model: 'anthropic/claude-mock', api_base: an.apiBase, api_key: LITERAL_KEY, weight: 1000 }, { id: 'c-anth' }),
      deployment('c', { model: 'openai/gpt-4o', api_base: op.apiBase, api_key: 'k', weight: 1 }, { id: 'c-oai' }),
      deployment('big', { model: 'openai/gpt-4o', api_base: bg.apiBase, api_key: 'k' }, { id: 'big-oai' }),
    ],
    router_settings: { context_window_fallbacks: [{ c: ['big'] }] },
  });
  const w = cluster.worker;
  const cl = client(w);
  await an.faults({ status: 401 });
  let r = null;
  for (let i = 0; i < 8 && !r; i++) {
    const before = (await an.stats()).requests;
    const x = await chat(cl, 'c');
    assert.equal(x.dep, 'c-oai');
    if ((await an.stats()).requests > before) r = x;
  }
  assert.ok(r, 'the Anthropic deployment was tried first (weight 1000:1)');
  const line = await waitFor(() => logLines(w, 'credential_failed').find((l) => l.request_id === r.rid),
    { what: 'credential_failed for the adapter deployment' });
  assert.equal(line.deployment, 'c-anth');
  assert.equal(line.status, 401);
  const m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_upstream_errors_total', { deployment: 'c-anth', class: 'auth_error' }), 1, m);
  // c-anth is out for its credential now; the fallback test needs it: a fresh worker
  const w2 = await env.startWorker(cluster);
  await an.faults({ status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 210000 tokens > 200000 maximum' } } });
  let d = null;
  for (let i = 0; i < 8 && !d; i++) {
    const before = (await an.stats()).requests;
    const x = await chat(client(w2), 'c');
    if ((await an.stats()).requests > before) d = x;
    else assert.equal(x.dep, 'c-oai');
  }
  assert.ok(d, 'the Anthropic deployment was tried first');
  assert.equal(d.dep, 'big-oai', 'context length refusal → context_window_fallbacks');
  assert.equal(d.data.choices[0].message.content, hello('big'));
  const fo = await waitFor(() => logLines(w2, 'failover').find((l) => l.request_id === d.rid), { what: 'failover log' });
  assert.equal(fo.reason, 'context_window');
});

itest('retry budget: failovers onto a survivor stop when its budget is empty (logged, counted)', async (env) => {
  const a = await env.startMock('a');
  const b = await env.startMock('b');
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'k', weight: 1000 }, { id: 'ba' }),
      deployment('g', { model: 'openai/gpt-4o', api_base: b.apiBase, api_key: 'k', weight: 1 }, { id: 'bb' }),
    ],
    // 1 free retry per second, 1 % of first attempts: an outage of ba cannot double bb's load
    // (local_trip_failures high: ba's 500s would open its local circuit after 5 and end the test)
    router_settings: { retry_budget_percent: 1, retry_budget_min_per_second: 1, num_retries: 1, local_trip_failures: 1000 },
  });
  const w = cluster.worker;
  await a.setDefault({ status: 500 });
  const statuses = [];
  let refused = null;
  for (let i = 0; i < 40; i++) {
    const r = await w.chat({ model: 'g', messages });
    statuses.push(r.status);
    if (r.status === 502) refused = r;
  }
  if (refused) assert.match(assertOpenAIError(refused, 502).message, /refused by the retry budget/);
  const ok = statuses.filter((s) => s === 200).length;
  assert.ok(ok > 0, `some failovers were granted: ${statuses}`);
  assert.ok(statuses.some((s) => s === 502), `some were refused by the budget: ${statuses}`);
  assert.ok((await b.stats()).requests < 40, 'the survivor did not get every retry');
  const line = logLines(w, 'retry_budget_exhausted')[0];
  assert.ok(line && line.skipped >= 1, `retry_budget_exhausted logged: ${JSON.stringify(line)}`);
  const m = await w.metrics();
  assert.ok(metricValue(m, 'llmesh_retry_budget_exhausted_total', { deployment: 'bb' }) >= 1, m);
  assert.ok(metricValue(m, 'llmesh_retries_total', { deployment: 'bb' }) >= 1);
});

itest('client gone during a Retry-After wait and mid-stream: nothing stays in flight, the worker goes on', async (env) => {
  const a = await env.startMock('a');
  const cluster = await env.startCluster({
    model_list: [deployment('g', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'k' }, { id: 'ga' })],
  });
  const w = cluster.worker;
  const post = (body, ms) => fetch(`${w.base}/v1/chat/completions`, {
    method: 'POST', signal: AbortSignal.timeout(ms),
    headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  // 1. the only deployment answers 429 / 2 s: the request waits in-line; the client leaves
  await a.faults({ status: 429, headers: { 'retry-after': '2', 'retry-after-ms': '2000' } });
  await assert.rejects(post({ model: 'g', messages }, 400));
  await waitFor(() => logLines(w, 'retry_after_wait').length === 1, { what: 'the in-line wait' });
  await waitFor(() => logLines(w, 'client_gone').length === 1, { what: 'client_gone' });
  // 2. a stream the client leaves after its first bytes
  await sleep(2100); // the cooldown is over
  await a.setDefault({ chunk_delay_ms: 300, content: 'one two three four five six' });
  const res = await post({ model: 'g', messages, stream: true }, 10000).catch((e) => e);
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  await reader.read();
  await reader.cancel();
  await waitFor(async () => (await a.stats()).cancelled >= 1, { what: 'the upstream transfer cancelled' });
  await waitFor(() => logLines(w, 'client_gone').length === 2, { what: 'client_gone after the stream' });
  const m = await w.metrics();
  assert.equal(metricValue(m, 'llmesh_deployment_in_flight', { deployment: 'ga' }), 0, m);
  assert.equal(metricValue(m, 'llmesh_circuit_state', { deployment: 'ga', level: 'local' }), 0);
  assert.ok(metricValue(m, 'llmesh_upstream_errors_total', { deployment: 'ga', class: 'cancelled' }) >= 1);
  // the worker still serves
  await a.setDefault({});
  const r = await chat(client(w), 'g');
  assert.equal(r.data.choices[0].message.content, hello('a'));
});
