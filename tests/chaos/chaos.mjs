// chaos.mjs — the chaos suite (issue 5): scripted failure scenarios under mixed load, with numbers.
//
//   node tests/chaos/chaos.mjs [--only a,b] [--out FILE] [--flap-seconds N]
//   (scripts/chaos.sh builds first; meson: `meson test -C build --suite chaos`)
//
// Every scenario starts its own cluster on loopback — llmesh-control, 2 workers, 3 mock
// providers in one model group `chat`: `primary` (OpenAI format, weight 18 ≈ 90 % of the
// traffic), `fallback` (OpenAI, weight 1) and `claude` (Anthropic format, weight 1) — and
// drives mixed load through both workers (CLIENTS concurrent keep-alive clients: chat
// non-stream via fetch, chat streams via raw fetch and via the `openai` SDK, Anthropic
// /v1/messages). Then it runs the phases
//
//   baseline (BASELINE_MS) → fault on `primary` (FAULT_MS; the first SETTLE_MS are the time
//   the design gives breakers to react) → heal → recovery (until ≥ 80 % of a 1 s window is
//   answered by `primary`, at most RECOVERY_MAX_MS)
//
// and measures: client success rate (whole fault phase and after SETTLE_MS), requests the
// sick provider still received (whole fault phase / after SETTLE_MS: the mock's own counter,
// or the workers' attempt counter when the mock is dead), added latency (p50/p99 of
// successful requests after SETTLE_MS minus the baseline's), recovery time (heal → start of
// the first 1 s window with ≥ 80 % of requests answered by `primary`).
//
// Invariants checked in every scenario (honesty): no answer is ever truncated yet presented as
// a success (a stream that ends without an error but with less than the whole answer, or
// with [DONE] after an error); every failure is an OpenAI-shaped (Anthropic-shaped on
// /v1/messages) error or an in-band SSE error event, never leaking a provider host or key.
//
// Prints one markdown table and writes it to bench/results/chaos.md. Exit 1 when a scenario
// misses a threshold. Thresholds come from docs/resilience.md (local breaker: 3 failures,
// reacts at once; control plane: ≈ 2 s; cooldown_time 2 s here, doubling on re-trip; slow
// start 10 s; retry budget 20 % + 10/s) and leave room for a loaded 2-core CI VM. Do not
// lower them to make unfinished code pass.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import {
  Env, Mock, BIN, SOURCE_ROOT, BUILD_DIR, MASTER_KEY, PROVIDER_KEY, LITERAL_KEY,
  deployment, sleep, waitFor, portOpen, metricSum,
} from '../integration/lib/harness.mjs';

// The official SDK from tests/integration's node_modules (no dependencies of our own).
const requireIt = createRequire(path.join(SOURCE_ROOT, 'tests', 'integration', 'package.json'));
const { default: OpenAI } = await import(pathToFileURL(
  path.join(path.dirname(requireIt.resolve('openai')), 'index.mjs')).href);

// ------------------------------------------------------------------ thresholds (one table)
//
// success      min % of client requests answered completely, whole fault phase
// successLate  min % after SETTLE_MS
// sickLate     max requests the sick provider received after SETTLE_MS (what a 2-worker
//              cluster leaks through open breakers: half-open trials and probes; without a
//              breaker it would be ≈ 130/s × 6 s ≈ 800)
// sickVsBase   max sick requests over the fault phase ÷ what it got at the baseline rate
//              (a partly sick provider must not get retries piled on it)
// shareLate    max % of successful answers from `primary` after SETTLE_MS (slow provider)
// addP50/addP99 max added latency after SETTLE_MS, ms (successful requests vs baseline)
// errP99       max p99 latency of the errors, ms (all down: fast, clear errors)
// upstreamLate max upstream requests (all mocks) ÷ client requests after SETTLE_MS (all down)
// errorStatuses allowed HTTP statuses of client errors
// recoveryS    max s from heal to ≥ 80 % of a 1 s window answered by `primary`
export const THRESHOLDS = {
  // primary's port closed (process SIGKILLed): connect errors trip the local breaker at the
  // 3rd failure; each failed attempt fails over at once (refused on loopback is ~0 ms).
  'hard-outage': { success: 99, sickLate: 20, addP50: 50, addP99: 250, recoveryS: 15 },
  // 30 % 500s: every 500 fails over to another provider; health weight 0.7 / allowed_fails.
  '500s-30pct': { success: 99, sickVsBase: 1.0, addP50: 50, addP99: 250, recoveryS: 15 },
  // delay_ms 1500 (< timeout 2 s): the latency factor min(1, median/own)^0.5 ≈ 0.06 takes
  // primary from 90 % to ≈ 35 % of the traffic within one control period.
  'latency-spike': { success: 99, shareLate: 40, addP50: 100, addP99: 2000, recoveryS: 15 },
  // 429 + retry-after: 2 → cooldown until the reset, no health failure; clients never see it.
  '429-storm': { success: 99, sickLate: 40, addP50: 50, addP99: 250, recoveryS: 15 },
  // every provider 503: fast OpenAI-shaped 5xx/429, upstream load bounded (breakers + budget).
  'all-down': { errP99: 500, upstreamLate: 0.2, errorStatuses: [429, 502, 503, 504], recoveryS: 15 },
  // 503 for FLAP_MS (60 s), then healthy: the fallbacks serve meanwhile, primary back ≤ 30 s.
  flapping: { success: 99, sickLate: 60, addP50: 50, addP99: 250, recoveryS: 30 },
  // cut_after 0 on streams: committed (the role chunk went out), then cut (non-streams are
  // cut before headers → plain failover). Mid-stream continuation (docs/resilience.md):
  // every stream over the whole fault phase completes on another deployment, the assembled
  // text is exactly one answer ([DONE], no error event). The cut comes before any text
  // because the mock ignores a prefill (it answers from the start: text after a later cut
  // would be there twice); midstream.test.mjs splices delivered text with scripted contents.
  // After the control plane opens the circuit (≈ 2 s) streams go elsewhere at once.
  'stream-cut': { success: 99, sickLate: 20, recoveryS: 15 },
  // chunk_delay_ms 5000 on streams: the role chunk, then silence; on the 2 s idle bound the
  // stream is continued on another deployment (a stall is never re-tried on the same one):
  // every stream of the fault phase completes, 2 s late, as one answer — as stream-cut.
  // SETTLE is 4 s here (idle bound 2 s + control reaction 2 s) for sickLate: half-open
  // trials still meet the stall.
  'stream-stall': { success: 99, sickLate: 40, recoveryS: 15, settleMs: 4000 },
  // hang: never answers; each attempt costs one timeout (2 s) then fails over; timeouts
  // trip the local breaker, half-open sends one trial at a time.
  silent: { success: 99, sickLate: 30, addP50: 50, addP99: 2500, recoveryS: 15 },
  // control SIGKILLed, then primary's port closed: workers serve on their last snapshot,
  // the local breakers alone protect (and close again on their own trial after the heal).
  'control-down': { success: 99, sickLate: 20, addP50: 50, addP99: 250, recoveryS: 15 },
};

// ------------------------------------------------------------------ knobs

const CLIENTS = 24;            // concurrent clients, split over the two workers
const THINK_MS = [50, 150];    // pause between a client's requests (uniform), ms
const WARMUP_MS = 1000;        // load before the baseline (connections, EWMAs)
const BASELINE_MS = 3000;
const FAULT_MS = 8000;
const SETTLE_MS = 2000;        // "after the first 2 s": breakers have reacted (design: ≈ 2 s)
const RECOVERY_MAX_MS = 22000;
const RECOVERED_SHARE = 0.8;   // of a 1 s window, answered by primary
const DEADLINE = 2;            // s: deployment and router timeout (also the stream idle bound)

const MESSAGES = [{ role: 'user', content: 'Say hello.' }];
const hello = (dep) => `[${dep}] Hello from the mock.`;
// A stream continued after a mid-stream failure carries the continuing deployment's answer
// under the first one's x-llmesh-deployment: whole means exactly one deployment's answer.
const wholeStream = (content, dep) =>
  content === hello(dep) || ['primary', 'fallback', 'claude'].some((d) => content === hello(d));
const now = () => performance.now();

function parseArgs(argv) {
  const o = { only: null, out: path.join(SOURCE_ROOT, 'bench', 'results', 'chaos.md'), flapSeconds: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') o.only = argv[++i].split(',').filter(Boolean);
    else if (a === '--out') o.out = path.resolve(argv[++i]);
    else if (a === '--flap-seconds') o.flapSeconds = Number(argv[++i]);
    else if (a === '--help' || a === '-h') {
      console.log('usage: chaos.mjs [--only SCENARIO,...] [--out FILE] [--flap-seconds N]\n' +
        `scenarios: ${Object.keys(THRESHOLDS).join(', ')}`);
      process.exit(0);
    } else { console.error(`chaos.mjs: unknown argument ${a}`); process.exit(2); }
  }
  if (process.env.LLMESH_CHAOS_ONLY && !o.only) o.only = process.env.LLMESH_CHAOS_ONLY.split(',');
  for (const n of o.only ?? []) {
    if (!THRESHOLDS[n]) { console.error(`chaos.mjs: unknown scenario ${n}`); process.exit(2); }
  }
  return o;
}

// ------------------------------------------------------------------ small statistics

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pct(values, q) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

// ------------------------------------------------------------------ one client request

const LEAKS = [PROVIDER_KEY, LITERAL_KEY, '127.0.0.1', 'http://', 'https://'];
const leaks = (text) => LEAKS.some((k) => String(text).includes(k));

// A result: {kind, t0, t1, ok, dep, status, honest (failures: an error the client can read),
// dishonest (why: truncated answer shown as success, bare cut, leak), why}.
function result(kind, t0, fields) {
  return { kind, t0, t1: now(), ok: false, dep: null, status: 0, honest: false, dishonest: null, why: '', ...fields };
}

function openaiErrorOk(status, json, text) {
  const e = json && json.error;
  return status >= 400 && e && typeof e.message === 'string' && e.message.length > 0 &&
    typeof e.type === 'string' && !leaks(text);
}

async function chatOnce(w) {
  const t0 = now();
  try {
    const res = await fetch(`${w.base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: MESSAGES }),
      signal: AbortSignal.timeout(20000),
    });
    const text = await res.text();
    let json; try { json = JSON.parse(text); } catch { /* checked below */ }
    const dep = res.headers.get('x-llmesh-deployment');
    if (res.status === 200) {
      const c = json?.choices?.[0];
      if (c?.message?.content === hello(dep) && c.finish_reason === 'stop') return result('chat', t0, { ok: true, dep, status: 200 });
      return result('chat', t0, { dep, status: 200, dishonest: `200 with a wrong body: ${text.slice(0, 160)}` });
    }
    const honest = openaiErrorOk(res.status, json, text);
    return result('chat', t0, { status: res.status, honest, dishonest: honest ? null : `bad error body: ${text.slice(0, 160)}`, why: `${res.status} ${json?.error?.code ?? ''}` });
  } catch (e) {
    return result('chat', t0, { dishonest: `transport: ${e.message}`, why: e.message });
  }
}

async function messagesOnce(w) {
  const t0 = now();
  try {
    const res = await fetch(`${w.base}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': MASTER_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', max_tokens: 64, messages: MESSAGES }),
      signal: AbortSignal.timeout(20000),
    });
    const text = await res.text();
    let json; try { json = JSON.parse(text); } catch { /* checked below */ }
    const dep = res.headers.get('x-llmesh-deployment');
    if (res.status === 200) {
      const t = (json?.content ?? []).filter((b) => b.type === 'text').map((b) => b.text).join('');
      if (t === hello(dep) && json.stop_reason === 'end_turn') return result('messages', t0, { ok: true, dep, status: 200 });
      return result('messages', t0, { dep, status: 200, dishonest: `200 with a wrong body: ${text.slice(0, 160)}` });
    }
    const e = json?.error;
    const honest = json?.type === 'error' && e && typeof e.type === 'string' && typeof e.message === 'string' && !leaks(text);
    return result('messages', t0, { status: res.status, honest, dishonest: honest ? null : `bad error body: ${text.slice(0, 160)}`, why: `${res.status} ${e?.type ?? ''}` });
  } catch (e) {
    return result('messages', t0, { dishonest: `transport: ${e.message}`, why: e.message });
  }
}

// Raw SSE: sees exactly what the wire carried ([DONE], error events, a bare cut).
async function streamRawOnce(w) {
  const t0 = now();
  let res;
  try {
    res = await fetch(`${w.base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: MESSAGES, stream: true }),
      signal: AbortSignal.timeout(20000),
    });
  } catch (e) {
    return result('stream', t0, { dishonest: `transport: ${e.message}`, why: e.message });
  }
  const dep = res.headers.get('x-llmesh-deployment');
  let text = '', cut = null;
  try { text = await res.text(); } catch (e) { cut = e.message; }
  if (res.status !== 200) {
    let json; try { json = JSON.parse(text); } catch { /* checked */ }
    const honest = openaiErrorOk(res.status, json, text);
    return result('stream', t0, { status: res.status, honest, dishonest: honest ? null : `bad error body: ${text.slice(0, 160)}`, why: `${res.status} ${json?.error?.code ?? ''}` });
  }
  let content = '', finish = null, done = false, errEvent = null, junk = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const d = line.slice(6).trim();
    if (d === '[DONE]') { done = true; continue; }
    let ev; try { ev = JSON.parse(d); } catch { junk++; continue; }
    if (ev.error) { errEvent = ev.error; continue; }
    const c = ev.choices?.[0];
    if (c?.delta?.content) content += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  const whole = wholeStream(content, dep) && finish === 'stop';
  if (whole && done && !errEvent && !cut && !junk) return result('stream', t0, { ok: true, dep, status: 200 });
  if (errEvent && !done && !leaks(JSON.stringify(errEvent)) && typeof errEvent.message === 'string') {
    return result('stream', t0, { dep, status: 200, honest: true, why: `in-band ${errEvent.code ?? errEvent.type}` });
  }
  const why = cut ? `cut without an error event (${cut})` : done ? `[DONE] after ${errEvent ? 'an error event' : `a partial answer "${content}"`}`
    : errEvent ? 'error event leaks' : junk ? `${junk} non-JSON events` : `clean end without [DONE] after "${content}"`;
  return result('stream', t0, { dep, status: 200, dishonest: why, why });
}

// The official SDK: a failed stream must raise; a stream that ends quietly must be whole.
async function streamSdkOnce(client) {
  const t0 = now();
  let dep = null;
  try {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'chat', messages: MESSAGES, stream: true }).withResponse();
    dep = response.headers.get('x-llmesh-deployment');
    let content = '', finish = null;
    try {
      for await (const ch of stream) {
        content += ch.choices?.[0]?.delta?.content ?? '';
        finish = ch.choices?.[0]?.finish_reason ?? finish;
      }
    } catch (e) {
      const honest = !leaks(e.message) && /stream|upstream|stall|cut|error/i.test(e.message);
      return result('sdk-stream', t0, { dep, status: 200, honest, dishonest: honest ? null : `SDK raised ${e.message}`, why: `raised: ${e.message.slice(0, 80)}` });
    }
    if (wholeStream(content, dep) && finish === 'stop') return result('sdk-stream', t0, { ok: true, dep, status: 200 });
    return result('sdk-stream', t0, { dep, status: 200, dishonest: `SDK saw a quiet end after "${content}" (finish ${finish})` });
  } catch (e) {
    const status = typeof e.status === 'number' ? e.status : 0;
    const honest = status >= 400 && typeof e.message === 'string' && !leaks(e.message);
    return result('sdk-stream', t0, { status, honest, dishonest: honest ? null : `SDK: ${e.message}`, why: `${status} ${e.code ?? ''}` });
  }
}

// ------------------------------------------------------------------ load

const MIX_ALL = [['chat', 0.45], ['stream', 0.2], ['sdk-stream', 0.2], ['messages', 0.15]];
const MIX_STREAMS = [['stream', 0.5], ['sdk-stream', 0.5]];

class Load {
  constructor(workers, mix, seed) {
    this.workers = workers;
    this.mix = mix;
    this.seed = seed;
    this.sdk = workers.map((w) => new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 }));
    this.records = [];
    this.inflight = new Set(); // start times of requests not finished yet
    this.running = false;
  }

  start() {
    this.running = true;
    this.loops = Array.from({ length: CLIENTS }, (_, i) => this.client(i));
  }

  async client(i) {
    const rnd = mulberry32(this.seed * 1000 + i);
    const wi = i % this.workers.length;
    const w = this.workers[wi];
    await sleep(rnd() * THINK_MS[1]); // spread the start
    while (this.running) {
      let x = rnd(), kind = this.mix[this.mix.length - 1][0];
      for (const [k, p] of this.mix) { if (x < p) { kind = k; break; } x -= p; }
      const t = now();
      this.inflight.add(t);
      const r = kind === 'chat' ? await chatOnce(w) : kind === 'messages' ? await messagesOnce(w)
        : kind === 'stream' ? await streamRawOnce(w) : await streamSdkOnce(this.sdk[wi]);
      this.inflight.delete(t);
      this.records.push(r);
      await sleep(THINK_MS[0] + rnd() * (THINK_MS[1] - THINK_MS[0]));
    }
  }

  async stop() { this.running = false; await Promise.all(this.loops); }

  between(from, to) { return this.records.filter((r) => r.t0 >= from && r.t0 < to); }

  /** Every request started before t has finished. */
  settledBefore(t) { for (const s of this.inflight) if (s < t) return false; return true; }
}

function summary(rs) {
  const ok = rs.filter((r) => r.ok);
  const lat = ok.map((r) => r.t1 - r.t0);
  const errs = rs.filter((r) => !r.ok);
  return {
    n: rs.length,
    ok: ok.length,
    success: rs.length ? (100 * ok.length) / rs.length : NaN,
    primary: ok.filter((r) => r.dep === 'primary').length,
    share: ok.length ? (100 * ok.filter((r) => r.dep === 'primary').length) / ok.length : NaN,
    p50: pct(lat, 0.5),
    p99: pct(lat, 0.99),
    errP99: pct(errs.map((r) => r.t1 - r.t0), 0.99),
    statuses: [...new Set(errs.map((r) => r.status))].sort(),
    dishonest: rs.filter((r) => r.dishonest),
    why: countBy(errs.map((r) => r.dishonest ? `DISHONEST ${r.dishonest}` : r.why)),
  };
}

function countBy(list) {
  const m = new Map();
  for (const k of list) m.set(k, (m.get(k) ?? 0) + 1);
  return [...m.entries()].sort((a, b) => b[1] - a[1]);
}

// ------------------------------------------------------------------ the cluster

async function startCluster(env) {
  const m = {};
  for (const n of ['primary', 'fallback', 'claude']) m[n] = await env.startMock(n);
  const base = { api_key: LITERAL_KEY, timeout: DEADLINE };
  const cluster = await env.startCluster({
    model_list: [
      deployment('chat', { ...base, model: 'openai/gpt-4o', api_base: m.primary.apiBase, weight: 18 }, { id: 'primary' }),
      deployment('chat', { ...base, model: 'openai/gpt-4o-mini', api_base: m.fallback.apiBase, weight: 1 }, { id: 'fallback' }),
      deployment('chat', { ...base, model: 'anthropic/claude-mock', api_base: m.claude.apiBase, weight: 1 }, { id: 'claude' }),
    ],
    router_settings: {
      num_retries: 2, timeout: DEADLINE, allowed_fails: 5, cooldown_time: 2, routing_strategy: 'simple-shuffle',
    },
  }, { workers: 2 });
  // Routable on both workers (the snapshot is there) before any clock starts.
  for (const w of cluster.workers) {
    await waitFor(async () => (await chatOnce(w)).ok, { timeoutMs: 10000, what: `${w.base} answers chat` });
  }
  return { mocks: m, cluster };
}

/** Attempts the workers sent to a deployment (counts even when nothing listens there). */
async function workerAttempts(cluster, dep) {
  let sum = 0;
  for (const w of cluster.workers) {
    const r = await fetch(`${w.base}/metrics`, { signal: AbortSignal.timeout(5000) });
    const lines = (await r.text()).split('\n').filter((l) => l.startsWith('llmesh_upstream_requests_total{') && l.includes(`deployment="${dep}"`));
    sum += metricSum(lines.join('\n'), 'llmesh_upstream_requests_total') || 0;
  }
  return sum;
}

/** SIGKILLs a mock: its port is closed (connection refused). */
async function killMock(mock) { await mock.proc.kill9(); }

/** A new mock process on the same port and name (the provider is back). */
async function restartMock(env, mock) {
  const proc = env.spawn(`mock-${mock.name}-again`, BIN.mock, ['--listen', `127.0.0.1:${mock.port}`, '--name', mock.name]);
  await waitFor(() => portOpen(mock.port), { timeoutMs: 5000, what: `mock ${mock.name} back on ${mock.port}` });
  return new Mock(proc, mock.port, mock.name);
}

// ------------------------------------------------------------------ scenarios
//
// fault/heal act on ctx ({env, mocks, cluster}); sick(ctx) counts requests the sick
// provider received (monotonic); mix overrides the load mix.

const viaMock = (name) => async (ctx) => (await ctx.mocks[name].stats()).requests;
const viaWorkers = (dep) => (ctx) => workerAttempts(ctx.cluster, dep);

function scenarios(opts) {
  const flapMs = opts.flapSeconds * 1000;
  return [
    { name: 'hard-outage', title: 'hard outage (port closed)', sick: viaWorkers('primary'),
      fault: (c) => killMock(c.mocks.primary),
      heal: async (c) => { c.mocks.primary = await restartMock(c.env, c.mocks.primary); } },
    { name: '500s-30pct', title: '30 % 500s', sick: viaMock('primary'),
      fault: (c) => c.mocks.primary.setDefault({ status: 500, rate: 0.3, seed: 5 }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: 'latency-spike', title: 'latency spike (+1.5 s)', sick: viaMock('primary'),
      fault: (c) => c.mocks.primary.setDefault({ delay_ms: 1500 }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: '429-storm', title: '429 storm (retry-after 2)', sick: viaMock('primary'),
      fault: (c) => c.mocks.primary.setDefault({
        status: 429, headers: { 'retry-after': '2' },
        body: { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } } }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: 'all-down', title: 'all providers down (503)',
      sick: async (c) => { let s = 0; for (const m of Object.values(c.mocks)) s += (await m.stats()).requests; return s; },
      fault: async (c) => { for (const m of Object.values(c.mocks)) await m.setDefault({ status: 503 }); },
      heal: async (c) => { for (const m of Object.values(c.mocks)) await m.setDefault({}); } },
    { name: 'flapping', title: `flapping (503 for ${opts.flapSeconds} s, then healthy)`, sick: viaMock('primary'),
      faultMs: flapMs, recoveryMaxMs: Math.max(RECOVERY_MAX_MS, 35000),
      fault: (c) => c.mocks.primary.setDefault({ status: 503 }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: 'stream-cut', title: 'stream cut mid-answer', sick: viaMock('primary'), mix: MIX_STREAMS,
      fault: (c) => c.mocks.primary.setDefault({ cut_after: 0 }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: 'stream-stall', title: 'stream stall mid-answer', sick: viaMock('primary'), mix: MIX_STREAMS,
      fault: (c) => c.mocks.primary.setDefault({ chunk_delay_ms: 5000 }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: 'silent', title: 'silent provider (never answers)', sick: viaMock('primary'),
      fault: (c) => c.mocks.primary.setDefault({ hang: true }),
      heal: (c) => c.mocks.primary.setDefault({}) },
    { name: 'control-down', title: 'control plane down during an outage', sick: viaWorkers('primary'),
      // control SIGKILLed before the baseline: the baseline already runs on the last snapshot
      prepare: async (c) => { await c.cluster.control.kill9(); await sleep(1000); },
      fault: (c) => killMock(c.mocks.primary),
      heal: async (c) => { c.mocks.primary = await restartMock(c.env, c.mocks.primary); } },
  ];
}

// ------------------------------------------------------------------ running one scenario

/** Heal → the start of the first 1 s window (250 ms steps) where ≥ 80 % of the requests
 * were answered by primary; null if none yet. Windows need ≥ 10 requests and only count
 * once every request started in them has finished. */
function recoveryAt(load, healT) {
  for (let s = healT; s + 1000 <= now() && load.settledBefore(s + 1000); s += 250) {
    const rs = load.between(s, s + 1000);
    if (rs.length < 10) continue;
    if (rs.filter((r) => r.ok && r.dep === 'primary').length >= RECOVERED_SHARE * rs.length) return s - healT;
  }
  return null;
}

async function runScenario(sc, th) {
  const env = new Env(`chaos ${sc.name}`);
  const out = { name: sc.name, title: sc.title, checks: [], error: null };
  try {
    const { mocks, cluster } = await startCluster(env);
    const ctx = { env, mocks, cluster };
    const load = new Load(cluster.workers, sc.mix ?? MIX_ALL, 7);
    const settleMs = th.settleMs ?? SETTLE_MS;
    const faultMs = sc.faultMs ?? FAULT_MS;
    load.start();
    await sleep(WARMUP_MS);
    if (sc.prepare) await sc.prepare(ctx); // before the baseline: part of the steady state
    const tBase = now();
    await sleep(BASELINE_MS);
    const sick0 = await sc.sick(ctx);
    const tBaseEnd = now();
    await sc.fault(ctx);
    const tFault = now();
    await sleep(settleMs);
    const sick1 = await sc.sick(ctx);
    const tSettle = now();
    await sleep(Math.max(0, faultMs - (now() - tFault)));
    const sick2 = await sc.sick(ctx);
    const tHeal = now();
    await sc.heal(ctx);
    // Recovery: poll until a recovered window is complete, or the maximum.
    const recMax = sc.recoveryMaxMs ?? RECOVERY_MAX_MS;
    let rec = null;
    while (rec === null && now() - tHeal < recMax) {
      await sleep(250);
      rec = recoveryAt(load, tHeal);
    }
    await load.stop();
    if (rec === null) rec = recoveryAt(load, tHeal);
    if (rec !== null && rec > recMax) rec = null;

    const base = summary(load.between(tBase, tBaseEnd));
    const fault = summary(load.between(tFault, tHeal));
    const late = summary(load.between(tSettle, tHeal));
    const all = summary(load.between(0, Infinity));
    Object.assign(out, {
      base, fault, late, all,
      sickFault: sick2 - sick0, sickLate: sick2 - sick1,
      // what primary would have received at the baseline rate over the fault phase
      sickExpected: (base.n ? base.share / 100 : 0.9) * fault.n,
      addP50: late.p50 - base.p50, addP99: late.p99 - base.p99,
      recoveryS: rec === null ? null : rec / 1000,
      faultS: (tHeal - tFault) / 1000, lateS: (tHeal - tSettle) / 1000,
    });
    out.checks = check(out, th);
  } catch (e) {
    out.error = e;
    out.checks = [{ what: 'scenario ran', ok: false, detail: e.stack || String(e) }];
  }
  const failed = out.checks.some((c) => !c.ok);
  const problems = await env.close();
  for (const p of problems) out.checks.push({ what: 'clean exit', ok: false, detail: p });
  if (failed || problems.length) dumpLogs(env, sc.name);
  else if (!process.env.LLMESH_KEEP_TMP) fs.rmSync(env.dir, { recursive: true, force: true });
  out.pass = out.checks.every((c) => c.ok);
  return out;
}

/** Where the logs are, and the last lines of the workers' and control's (the mocks log every
 * request: their tails say little). */
function dumpLogs(env, name) {
  const out = [`  chaos ${name}: logs kept in ${env.dir}`];
  for (const p of env.procs.filter((x) => !x.name.startsWith('mock'))) {
    out.push(`  ----- ${p.name} (exit ${JSON.stringify(p.exit)})`, p.tail(8));
  }
  process.stderr.write(out.join('\n') + '\n');
}

function check(o, th) {
  const c = [];
  const add = (what, ok, detail = '') => c.push({ what, ok: !!ok, detail });
  const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : String(x));
  // validity and honesty, every scenario
  add('baseline healthy (≥ 99 % success, ≥ 80 % on primary)', o.base.success >= 99 && o.base.share >= 80,
    `success ${f1(o.base.success)} %, primary ${f1(o.base.share)} %`);
  add('no truncated answer shown as success, no bare cut, no leak', o.all.dishonest.length === 0,
    o.all.dishonest.slice(0, 3).map((r) => `${r.kind}: ${r.dishonest}`).join(' | '));
  if (th.success !== undefined) add(`success ≥ ${th.success} % (fault phase)`, o.fault.success >= th.success, `${f1(o.fault.success)} % of ${o.fault.n}`);
  if (th.successLate !== undefined) add(`success ≥ ${th.successLate} % after ${(th.settleMs ?? SETTLE_MS) / 1000} s`, o.late.success >= th.successLate, `${f1(o.late.success)} % of ${o.late.n}`);
  if (th.sickLate !== undefined) add(`sick provider ≤ ${th.sickLate} requests after ${(th.settleMs ?? SETTLE_MS) / 1000} s`, o.sickLate <= th.sickLate, `${o.sickLate} in ${f1(o.lateS)} s`);
  if (th.sickVsBase !== undefined) add(`sick provider ≤ ${th.sickVsBase} × its baseline share`, o.sickFault <= th.sickVsBase * o.sickExpected, `${o.sickFault} vs ${f1(o.sickExpected)}`);
  if (th.shareLate !== undefined) add(`primary share ≤ ${th.shareLate} % after ${SETTLE_MS / 1000} s`, o.late.share <= th.shareLate, `${f1(o.late.share)} %`);
  if (th.addP50 !== undefined) add(`added p50 ≤ ${th.addP50} ms`, o.addP50 <= th.addP50, `${f1(o.addP50)} ms (${f1(o.base.p50)} → ${f1(o.late.p50)})`);
  if (th.addP99 !== undefined) add(`added p99 ≤ ${th.addP99} ms`, o.addP99 <= th.addP99, `${f1(o.addP99)} ms (${f1(o.base.p99)} → ${f1(o.late.p99)})`);
  if (th.errP99 !== undefined) add(`errors fast: p99 ≤ ${th.errP99} ms`, o.fault.errP99 <= th.errP99, `${f1(o.fault.errP99)} ms`);
  if (th.errorStatuses) {
    const bad = o.fault.statuses.filter((s) => !th.errorStatuses.includes(s));
    add(`error statuses in ${th.errorStatuses.join('/')}`, bad.length === 0, `seen ${o.fault.statuses.join(',')}`);
  }
  if (th.upstreamLate !== undefined) {
    const ratio = o.late.n ? o.sickLate / o.late.n : NaN;
    add(`upstream ≤ ${th.upstreamLate} × client requests after ${SETTLE_MS / 1000} s`, ratio <= th.upstreamLate, `${o.sickLate} upstream / ${o.late.n} client = ${f1(ratio)}`);
  }
  if (th.recoveryS !== undefined) add(`recovered (≥ 80 % on primary) ≤ ${th.recoveryS} s`, o.recoveryS !== null && o.recoveryS <= th.recoveryS, o.recoveryS === null ? 'never' : `${f1(o.recoveryS)} s`);
  return c;
}

// ------------------------------------------------------------------ report

function table(results, opts) {
  const f1 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(1));
  const sgn = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '—'
    : Math.round(x) < 0 ? `−${-Math.round(x)}` : `+${Math.round(x)}`);
  const lines = [
    '| scenario | success % | sick-provider requests (fault / after settle) | added p50 / p99 ms | recovery s | pass |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    if (!r.base) { lines.push(`| ${r.title} | — | — | — | — | FAIL (did not run) |`); continue; }
    const succ = r.name.startsWith('stream-') ? `${f1(r.fault.success)} (after settle ${f1(r.late.success)})` : f1(r.fault.success);
    // all down: nothing succeeds, so the latency that matters is the errors'
    const lat = r.name === 'all-down' ? `errors p99 ${Math.round(r.fault.errP99)}` : `${sgn(r.addP50)} / ${sgn(r.addP99)}`;
    lines.push(`| ${r.title} | ${succ} | ${r.sickFault} / ${r.sickLate} | ${lat} | ${f1(r.recoveryS)} | ${r.pass ? 'pass' : 'FAIL'} |`);
  }
  const notes = [];
  for (const r of results) {
    for (const ch of r.checks.filter((x) => !x.ok)) notes.push(`- ${r.name}: ${ch.what} — ${ch.detail.split('\n')[0].slice(0, 300)}`);
  }
  const reasons = [];
  for (const r of results) {
    if (r.fault && r.fault.why.length) reasons.push(`- ${r.name}: ${r.fault.why.slice(0, 4).map(([k, n]) => `${n}× ${k}`).join('; ')}`);
  }
  return [
    `Chaos suite — ${new Date().toISOString()}, build ${BUILD_DIR.startsWith(SOURCE_ROOT + '/') ? path.relative(SOURCE_ROOT, BUILD_DIR) : BUILD_DIR}, ` +
      `${CLIENTS} clients (think ${THINK_MS[0]}–${THINK_MS[1]} ms), 2 workers, 3 mocks; baseline ${BASELINE_MS / 1000} s, ` +
      `fault ${FAULT_MS / 1000} s (flapping ${opts.flapSeconds} s), settle ${SETTLE_MS / 1000} s; thresholds in tests/chaos/chaos.mjs.`,
    '',
    ...lines,
    '',
    ...(notes.length ? ['Missed thresholds:', ...notes, ''] : []),
    ...(reasons.length ? ['Client errors during the fault phase (most frequent first):', ...reasons, ''] : []),
  ].join('\n');
}

// ------------------------------------------------------------------ main

const opts = parseArgs(process.argv.slice(2));
const todo = scenarios(opts).filter((s) => !opts.only || opts.only.includes(s.name));
const results = [];
const t0 = Date.now();
for (const sc of todo) {
  process.stderr.write(`chaos: ${sc.name} …\n`);
  const r = await runScenario(sc, THRESHOLDS[sc.name]);
  results.push(r);
  process.stderr.write(`chaos: ${sc.name} ${r.pass ? 'pass' : 'FAIL'} (${((Date.now() - t0) / 1000).toFixed(0)} s so far)\n`);
  for (const ch of r.checks) process.stderr.write(`    ${ch.ok ? 'ok  ' : 'FAIL'} ${ch.what}${ch.detail ? ` — ${ch.detail.split('\n')[0].slice(0, 200)}` : ''}\n`);
}
const md = table(results, opts);
console.log(md);
fs.mkdirSync(path.dirname(opts.out), { recursive: true });
fs.writeFileSync(opts.out, md + '\n');
console.log(`(written to ${path.relative(process.cwd(), opts.out) || opts.out}, ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
process.exit(results.every((r) => r.pass) ? 0 : 1);
