// hedge.test.mjs — hedged requests (docs/resilience.md "Hedging"): in a group with
// `hedge: true`, an attempt whose first token is later than its deployment's recent p95 gets
// a second attempt on another deployment; the first to answer is the client's, the other
// transfer is cancelled. A group without hedging waits for the slow deployment.
//
// Tiers make the slow mock the first pick: `slow` is order 1, `fast` order 2 (only ever
// reached by a hedge or a failover). Warm-up requests give the slow deployment its p95
// estimates (streams: time to first token; non-stream: time to headers), all fast.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { itest, deployment, hello, SLOW, MASTER_KEY, LITERAL_KEY } from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];
const SLOW_MS = 3000;
const WARMUP = 14; // per group and mode: more than HEDGE_MIN_SAMPLES (10)

/** Value of one sample `name{labels...}` (every given label must match); NaN if absent. */
function metricValue(text, name, labels) {
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return NaN;
}

const logLines = (w, event) => w.proc.jsonLog().filter((l) => l.event === event);

/** What happened after this point: a warm-up request slowed by a loaded machine may have
 * been hedged too. delta(name, labels): metric growth; since(event): new log lines. */
async function baseline(w) {
  const m0 = await w.metrics();
  const logs0 = {};
  for (const e of ['hedge_started', 'hedge_won', 'hedge_lost']) logs0[e] = logLines(w, e).length;
  return {
    delta: async (name, labels) => (metricValue(await w.metrics(), name, labels) || 0) - (metricValue(m0, name, labels) || 0),
    since: (e) => logLines(w, e).slice(logs0[e]),
  };
}

/** Groups `h` (hedged) and `n` (not), each slow (order 1) then fast (order 2). */
async function setup(env) {
  const slow = await env.startMock('slow');
  const fast = await env.startMock('fast');
  const dep = (g, m, order, id) => deployment(g,
    { model: 'openai/gpt-4o', api_base: m.apiBase, api_key: LITERAL_KEY, order, timeout: 10 }, { id });
  const cluster = await env.startCluster({
    model_list: [dep('h', slow, 1, 'h-slow'), dep('h', fast, 2, 'h-fast'),
      dep('n', slow, 1, 'n-slow'), dep('n', fast, 2, 'n-fast')],
    router_settings: {
      num_retries: 1, timeout: 10, model_group_settings: { h: { hedge: true } },
    },
  });
  const w = cluster.worker;
  const client = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { slow, fast, w, client };
}

async function streamOnce(client, model) {
  const t0 = Date.now();
  const { data: stream, response } = await client.chat.completions
    .create({ model, messages, stream: true }).withResponse();
  let content = '';
  for await (const ch of stream) content += ch.choices[0]?.delta?.content ?? '';
  return { content, took: Date.now() - t0, dep: response.headers.get('x-llmesh-deployment'),
    attempts: Number(response.headers.get('x-llmesh-attempts')) };
}

async function wholeOnce(client, model) {
  const t0 = Date.now();
  const { data, response } = await client.chat.completions.create({ model, messages }).withResponse();
  return { content: data.choices[0].message.content, took: Date.now() - t0,
    dep: response.headers.get('x-llmesh-deployment'), attempts: Number(response.headers.get('x-llmesh-attempts')) };
}

async function warmUp(client) {
  for (const g of ['h', 'n']) {
    for (let i = 0; i < WARMUP; i++) {
      assert.equal((await streamOnce(client, g)).content, hello('slow'));
      assert.equal((await wholeOnce(client, g)).content, hello('slow'));
    }
  }
}

itest('hedged group: a late first token is hedged on another deployment, the loser is cancelled', async (env) => {
  const { slow, fast, w, client } = await setup(env);
  await warmUp(client);
  const b = await baseline(w);
  const since = b.since;

  // stream: the slow deployment holds its first chunk for 3 s
  await slow.setDefault({ ttft_ms: SLOW_MS });
  const cancelled0 = (await slow.stats()).cancelled;
  const s = await streamOnce(client, 'h');
  assert.equal(s.content, hello('fast'), 'the hedge answered');
  assert.ok(s.took < 1500 * SLOW, `answered well before the slow first token (${s.took} ms)`);
  assert.equal(s.dep, 'h-fast', 'x-llmesh-deployment names the winner');
  assert.equal(s.attempts, 2, 'both attempts counted');
  // the slow transfer was cancelled, not left to finish
  let st = null;
  for (let i = 0; i < 40; i++) {
    st = await slow.stats();
    if (st.cancelled > cancelled0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(st.cancelled, cancelled0 + 1, 'the losing stream was cancelled upstream');
  assert.equal(st.in_flight, 0);

  // non-stream: the slow deployment holds its headers for 3 s
  await slow.setDefault({ delay_ms: SLOW_MS });
  const n = await wholeOnce(client, 'h');
  assert.equal(n.content, hello('fast'));
  assert.ok(n.took < 1500 * SLOW, `answered well before the slow headers (${n.took} ms)`);
  assert.equal(n.dep, 'h-fast');
  for (let i = 0; i < 40; i++) {
    st = await slow.stats();
    if (st.cancelled > cancelled0 + 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(st.cancelled, cancelled0 + 2, 'the losing request was cancelled upstream');

  const m = await w.metrics();
  const hf = { deployment: 'h-fast' }, hs = { deployment: 'h-slow' };
  assert.equal(await b.delta('llmesh_hedges_total', hf), 2, 'hedges counted on the hedge target');
  assert.ok(!(metricValue(m, 'llmesh_hedges_total', hs) > 0), 'not on the slow one');
  const hsc = { ...hs, class: 'cancelled' };
  assert.equal(await b.delta('llmesh_upstream_errors_total', hsc), 2, 'the losers are counted cancelled');
  for (const cls of ['timeout', 'server_error', 'other_error']) {
    assert.ok(!(metricValue(m, 'llmesh_upstream_errors_total', { deployment: 'h-slow', class: cls }) > 0),
      `a lost race is no ${cls}`);
  }
  const started = since('hedge_started');
  assert.equal(started.length, 2);
  assert.equal(started[0].from, 'h-slow');
  assert.equal(started[0].to, 'h-fast');
  assert.ok(started[0].after_ms >= 50, `never sooner than 50 ms (${started[0].after_ms})`);
  assert.equal(since('hedge_won').length, 2);
  assert.equal(since('hedge_lost').filter((l) => l.deployment === 'h-slow' && l.reason === 'cancelled').length, 2);
});

itest('hedged group: the hedge fails → the original carries on and answers', async (env) => {
  const { slow, fast, w, client } = await setup(env);
  await warmUp(client);
  const b = await baseline(w);
  const c0 = (await slow.stats()).cancelled;
  await slow.setDefault({ ttft_ms: 800 });
  await fast.setDefault({ status: 500 });
  const s = await streamOnce(client, 'h');
  assert.equal(s.content, hello('slow'), 'the slow original answered');
  assert.equal(s.dep, 'h-slow');
  assert.ok(s.took >= 700, `waited for the slow first token (${s.took} ms)`);
  assert.equal(await b.delta('llmesh_hedges_total', { deployment: 'h-fast' }), 1);
  assert.equal(await b.delta('llmesh_upstream_errors_total', { deployment: 'h-fast', class: 'server_error' }), 1,
    'the failed hedge is counted');
  assert.equal(b.since('hedge_lost')[0]?.deployment, 'h-fast');
  assert.equal((await slow.stats()).cancelled, c0, 'the original was not cancelled');
});

itest('hedged group: the original fails first → the hedge carries on and answers', async (env) => {
  const { slow, fast, w, client } = await setup(env);
  await warmUp(client);
  const b = await baseline(w);
  await slow.setDefault({ delay_ms: 300, status: 500 });
  await fast.setDefault({ ttft_ms: 800 });
  const s = await streamOnce(client, 'h');
  assert.equal(s.content, hello('fast'), 'the hedge answered after the original failed');
  assert.equal(s.dep, 'h-fast');
  assert.equal(await b.delta('llmesh_upstream_errors_total', { deployment: 'h-slow', class: 'server_error' }), 1,
    'the original failure is counted');
  const lost = b.since('hedge_lost');
  assert.equal(lost.length, 1);
  assert.equal(lost[0].deployment, 'h-slow');
  assert.equal(lost[0].reason, 'http_500');
  assert.equal(b.since('hedge_won').length, 0, 'no race left to win');
});

itest('hedged group: both fail → the request fails over as usual and says what failed', async (env) => {
  const { slow, fast, client } = await setup(env);
  await warmUp(client);
  await slow.setDefault({ delay_ms: 300, status: 500 });
  await fast.setDefault({ status: 503 });
  const err = await client.chat.completions.create({ model: 'h', messages }).then(() => null, (e) => e);
  assert.ok(err, 'an error');
  assert.equal(err.status, 502);
  assert.match(err.message, /h-fast http_503/);
  assert.match(err.message, /h-slow http_500/);
});

itest('hedged group: the client leaves during the race → both transfers are cancelled', async (env) => {
  const { slow, fast, w, client } = await setup(env);
  await warmUp(client);
  const b = await baseline(w);
  await slow.setDefault({ ttft_ms: SLOW_MS });
  await fast.setDefault({ ttft_ms: SLOW_MS });
  const [ca0, cf0] = [(await slow.stats()).cancelled, (await fast.stats()).cancelled];
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), 500);
  const err = await client.chat.completions.create({ model: 'h', messages, stream: true }, { signal: ac.signal })
    .then(() => null, (e) => e);
  clearTimeout(t);
  assert.ok(err, 'the client aborted');
  let a = null, f = null;
  for (let i = 0; i < 40; i++) {
    [a, f] = [await slow.stats(), await fast.stats()];
    if (a.cancelled > ca0 && f.cancelled > cf0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(a.cancelled, ca0 + 1, 'the original was cancelled upstream');
  assert.equal(f.cancelled, cf0 + 1, 'the hedge was cancelled upstream');
  assert.equal(await b.delta('llmesh_upstream_errors_total', { deployment: 'h-slow', class: 'cancelled' }), 1);
  assert.equal(await b.delta('llmesh_upstream_errors_total', { deployment: 'h-fast', class: 'cancelled' }), 1);
  // the worker keeps serving
  await slow.setDefault({});
  assert.equal((await streamOnce(client, 'h')).content, hello('slow'));
});

itest('hedged group through /v1/messages (Anthropic SDK): stream and whole answers from the hedge', async (env) => {
  const { slow, w, client } = await setup(env);
  await warmUp(client);
  const anthropic = new Anthropic({ baseURL: w.base, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  const b = await baseline(w);
  await slow.setDefault({ ttft_ms: SLOW_MS });
  let t0 = Date.now();
  const final = await anthropic.messages.stream({ model: 'h', max_tokens: 64, messages }).finalMessage();
  assert.equal(final.content.map((b) => b.text ?? '').join(''), hello('fast'));
  assert.ok(Date.now() - t0 < 1500 * SLOW, `stream answered by the hedge (${Date.now() - t0} ms)`);
  await slow.setDefault({ delay_ms: SLOW_MS });
  t0 = Date.now();
  const whole = await anthropic.messages.create({ model: 'h', max_tokens: 64, messages });
  assert.equal(whole.content.map((b) => b.text ?? '').join(''), hello('fast'));
  assert.ok(Date.now() - t0 < 1500 * SLOW, `answered by the hedge (${Date.now() - t0} ms)`);
  assert.equal(await b.delta('llmesh_hedges_total', { deployment: 'h-fast' }), 2);
});

itest('hedged group under concurrent load: every request answered once, nothing left running', async (env) => {
  const { slow, fast, w, client } = await setup(env);
  await warmUp(client);
  await slow.setDefault({ ttft_ms: 400, delay_ms: 400 });
  await fast.setDefault({ ttft_ms: 100, delay_ms: 100 });
  const runs = [];
  for (let i = 0; i < 16; i++) runs.push(streamOnce(client, 'h'), wholeOnce(client, 'h'));
  const got = await Promise.all(runs);
  for (const r of got) {
    assert.ok([hello('slow'), hello('fast')].includes(r.content), `one answer: ${r.content}`);
    assert.equal(r.dep, r.content === hello('fast') ? 'h-fast' : 'h-slow', 'the header names who answered');
  }
  const m = await w.metrics();
  const hedges = metricValue(m, 'llmesh_hedges_total', { deployment: 'h-fast' });
  assert.ok(hedges >= 1, `some were hedged (${hedges})`);
  for (const mock of [slow, fast]) {
    let st = null;
    for (let i = 0; i < 40 && (!st || st.in_flight); i++) {
      st = await mock.stats();
      if (st.in_flight) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(st.in_flight, 0, `${mock.name}: nothing left running`);
  }
});

itest('group without hedge: the same slow first token is waited for', async (env) => {
  const { slow, w, client } = await setup(env);
  await warmUp(client);
  await slow.setDefault({ ttft_ms: SLOW_MS });
  const s = await streamOnce(client, 'n');
  assert.equal(s.content, hello('slow'));
  assert.equal(s.dep, 'n-slow');
  assert.ok(s.took >= SLOW_MS - 100, `no hedge: the slow first token (${s.took} ms)`);
  await slow.setDefault({ delay_ms: SLOW_MS });
  const n = await wholeOnce(client, 'n');
  assert.equal(n.content, hello('slow'));
  assert.ok(n.took >= SLOW_MS - 100, `no hedge: the slow headers (${n.took} ms)`);
  assert.ok(!(metricValue(await w.metrics(), 'llmesh_hedges_total', { deployment: 'n-fast' }) > 0), 'never hedged');
  assert.equal(logLines(w, 'hedge_started').filter((l) => l.from === 'n-slow').length, 0);
});
