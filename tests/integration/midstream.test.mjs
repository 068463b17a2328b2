// midstream.test.mjs — mid-stream failover (docs/resilience.md "Mid-stream failover"): a
// committed stream that dies (cut, stall, in-band error) is continued on another deployment
// and spliced so the client sees ONE well-formed stream — with the official openai SDK and,
// through /v1/messages, the official Anthropic SDK. A continuation that is refused never
// masks the original failure; `mid_stream_fallback: error` keeps the error event.
//
// The mock splits `content` into words, each with its trailing spaces (the first also with
// its leading ones): "one two three four five six" cut after 3 chunks has delivered
// "one two three ". An Anthropic-format fallback gets the prefill "one two three" (trailing
// space cut: Anthropic rejects it) and answers " four five six", whose leading space the
// splicer strips once; an OpenAI-format fallback gets the whole text plus the continuation
// instruction and answers "four five six".
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
  itest, deployment, http, lastRequest, MASTER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Count to six.' }];
const FULL = 'one two three four five six';
const DELIVERED = 'one two three '; // cut_after 3
const CONTINUE_PROMPT =
  'Continue your previous answer exactly where it stopped, without repeating anything already written.';

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

/** Text of a message's content: a string, or Anthropic text blocks joined. */
function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((b) => b.text ?? '').join('');
  return undefined;
}

/** Primary (OpenAI format, tier 1) and fallback (tier 2) of group `g`; fmt = the fallback's. */
async function setup(env, { fmt = 'anthropic', router = {}, groupSettings } = {}) {
  const p = await env.startMock('primary');
  const f = await env.startMock('fallback');
  const fb = fmt === 'anthropic'
    ? { model: 'anthropic/claude-mock', api_base: f.apiBase, api_key: LITERAL_KEY, order: 2, timeout: 5 }
    : { model: 'openai/gpt-4o', api_base: f.apiBase, api_key: LITERAL_KEY, order: 2, timeout: 5 };
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'openai/gpt-4o', api_base: p.apiBase, api_key: LITERAL_KEY, order: 1, timeout: 1 }, { id: 'prim' }),
      deployment('g', fb, { id: 'fb' }),
    ],
    router_settings: {
      num_retries: 1, timeout: 5, ...router,
      ...(groupSettings ? { model_group_settings: { g: groupSettings } } : {}),
    },
  });
  const w = cluster.worker;
  const openai = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  const anthropic = new Anthropic({ baseURL: w.base, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { p, f, w, openai, anthropic };
}

/** Streams with the openai SDK; returns what the client assembled (throws only on setup). */
async function openaiStream(client) {
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'g', messages, stream: true, stream_options: { include_usage: true } }).withResponse();
  const out = { response, content: '', finish: null, usage: null, ids: new Set(), created: new Set(), roles: 0, error: null };
  try {
    for await (const ch of stream) {
      out.ids.add(ch.id);
      out.created.add(ch.created);
      if (ch.usage) out.usage = ch.usage;
      const c = ch.choices[0];
      if (!c) continue;
      if (c.delta?.role) out.roles++;
      out.content += c.delta?.content ?? '';
      out.finish = c.finish_reason ?? out.finish;
    }
  } catch (e) {
    out.error = e;
  }
  return out;
}

/** The assertions every continued stream must pass, whatever killed the primary. */
async function assertContinued(s, out, reason, expectPrefill) {
  assert.equal(out.error, null, `no error reached the client: ${out.error?.message}`);
  assert.equal(out.response.status, 200);
  assert.equal(out.response.headers.get('x-llmesh-deployment'), 'prim', 'headers name the first deployment');
  assert.equal(out.content, FULL, 'every token exactly once');
  assert.equal(out.finish, 'stop');
  assert.ok(out.usage && out.usage.completion_tokens > 0, `usage present: ${JSON.stringify(out.usage)}`);
  assert.equal(out.ids.size, 1, `one id for the whole stream: ${[...out.ids]}`);
  assert.match([...out.ids][0], /^chatcmpl-mock-/, 'the original (primary) id');
  assert.equal(out.created.size, 1, 'one created for the whole stream');
  assert.equal(out.roles, 1, 'one role chunk');
  const body = lastRequest(await s.f.stats()).body;
  const msgs = body.messages;
  if (expectPrefill === 'prefill') {
    const last = msgs[msgs.length - 1];
    assert.equal(last.role, 'assistant', `prefill last: ${JSON.stringify(msgs)}`);
    assert.equal(textOf(last.content), DELIVERED.trimEnd(), 'the delivered text, trailing space cut');
  } else if (expectPrefill === 'instruction') {
    const [a, u] = msgs.slice(-2);
    assert.equal(a.role, 'assistant');
    assert.equal(textOf(a.content), DELIVERED);
    assert.equal(u.role, 'user');
    assert.equal(textOf(u.content), CONTINUE_PROMPT);
  } else { // nothing delivered: the original request
    assert.deepEqual(msgs.map((m) => m.role), ['user'], JSON.stringify(msgs));
  }
  const m = await s.w.metrics();
  assert.equal(metricValue(m, 'llmesh_midstream_continuations_total', { deployment: 'fb', result: 'ok' }), 1, m);
  assert.equal(metricValue(m, 'llmesh_midstream_continuations_total', { deployment: 'fb', result: 'failed' }), 0);
  assert.equal(metricValue(m, 'llmesh_midstream_continued_total', { deployment: 'fb' }), 1);
  assert.ok(metricValue(m, 'llmesh_upstream_errors_total', { deployment: 'prim', class: 'other_error' }) >= 1,
    'the dead attempt counts against the primary');
  const logs = logLines(s.w, 'midstream_continued');
  assert.equal(logs.length, 1, JSON.stringify(logs));
  assert.equal(logs[0].from, 'prim');
  assert.equal(logs[0].to, 'fb');
  assert.equal(logs[0].reason, reason);
  assert.equal(logs[0].delivered_bytes, expectPrefill === 'none' ? 0 : DELIVERED.length);
}

itest('cut mid-answer → continued with a prefill on an Anthropic-format deployment (openai SDK)', async (env) => {
  const s = await setup(env);
  await s.p.setDefault({ content: FULL, cut_after: 3 });
  await s.f.setDefault({ content: ' four five six' });
  const out = await openaiStream(s.openai);
  await assertContinued(s, out, 'stream_cut', 'prefill');
  // usage: the continuation's 3 words + the delivered estimate ceil(14 / 4)
  assert.equal(out.usage.completion_tokens, 3 + Math.ceil(DELIVERED.length / 4));
  assert.equal((await s.p.stats()).requests, 1, 'the primary was not re-tried');
});

itest('cut mid-answer → continued with the instruction on an OpenAI-format deployment', async (env) => {
  const s = await setup(env, { fmt: 'openai' });
  await s.p.setDefault({ content: FULL, cut_after: 3 });
  await s.f.setDefault({ content: 'four five six' });
  const out = await openaiStream(s.openai);
  await assertContinued(s, out, 'stream_cut', 'instruction');
});

itest('in-band error mid-answer → held back, continued (openai SDK)', async (env) => {
  const s = await setup(env);
  await s.p.setDefault({ content: FULL, error_after: 3 });
  await s.f.setDefault({ content: ' four five six' });
  const out = await openaiStream(s.openai);
  await assertContinued(s, out, 'stream_error', 'prefill');
});

itest('stall past the idle bound → continued (nothing delivered yet: the original request)', async (env) => {
  const s = await setup(env);
  // the role chunk at once (commit), then 5 s per chunk: the 1 s idle bound fires first
  await s.p.setDefault({ content: FULL, chunk_delay_ms: 5000 });
  await s.f.setDefault({ content: FULL });
  const t0 = Date.now();
  const out = await openaiStream(s.openai);
  assert.ok(Date.now() - t0 < 4500, `continued on the idle bound, not after the chunk (${Date.now() - t0} ms)`);
  await assertContinued(s, out, 'stream_stalled', 'none');
});

itest('Anthropic SDK through /v1/messages: a cut stream is continued, one clean message', async (env) => {
  const s = await setup(env);
  await s.p.setDefault({ content: FULL, cut_after: 3 });
  await s.f.setDefault({ content: ' four five six' });
  const stream = await s.anthropic.messages.create({ model: 'g', max_tokens: 64, messages, stream: true });
  let text = '';
  const types = [];
  let stop = null;
  let usage = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'message_delta') { stop = ev.delta.stop_reason; usage = ev.usage; }
  }
  assert.equal(text, FULL);
  assert.equal(stop, 'end_turn');
  assert.ok(usage && usage.output_tokens > 0, JSON.stringify(usage));
  assert.equal(types.filter((t) => t === 'message_start').length, 1, types.join(','));
  assert.equal(types.filter((t) => t === 'message_stop').length, 1, types.join(','));
  const last = lastRequest(await s.f.stats()).body.messages.at(-1);
  assert.equal(last.role, 'assistant');
  assert.equal(textOf(last.content), 'one two three');
  // the same through the stream helper
  const final = await s.anthropic.messages.stream({ model: 'g', max_tokens: 64, messages }).finalMessage();
  assert.equal(textOf(final.content), FULL);
});

itest('a continuation refused with 400 → the client gets the ORIGINAL cut error, no [DONE]', async (env) => {
  const s = await setup(env);
  await s.p.setDefault({ content: FULL, cut_after: 3 });
  await s.f.setDefault({ status: 400 });
  const raw = await http('POST', `${s.w.base}/v1/chat/completions`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` }, body: { model: 'g', messages, stream: true },
  });
  assert.equal(raw.status, 200);
  assert.match(raw.text, /"code":"upstream_stream_cut"/, raw.text);
  assert.ok(!raw.text.includes('[DONE]'), 'no [DONE]');
  assert.ok(!/invalid_request|"status":400|HTTP 400/.test(raw.text), `the 400 never reaches the client: ${raw.text}`);
  const content = raw.text.split('\n').filter((l) => l.startsWith('data: {"id"'))
    .map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.content ?? '').join('');
  assert.equal(content, DELIVERED, 'only what the primary delivered');
  assert.equal((await s.f.stats()).requests, 1, 'the continuation was tried');
  const m = await s.w.metrics();
  assert.equal(metricValue(m, 'llmesh_midstream_continuations_total', { deployment: 'fb', result: 'failed' }), 1, m);
  assert.equal(metricValue(m, 'llmesh_midstream_continuations_total', { deployment: 'fb', result: 'ok' }), 0);
  assert.equal(logLines(s.w, 'midstream_failed').length, 1);

  // an in-band error that cannot be continued: the client gets that error event itself
  await s.p.setDefault({ content: FULL, error_after: 3 });
  const e = await http('POST', `${s.w.base}/v1/chat/completions`, {
    headers: { authorization: `Bearer ${MASTER_KEY}` }, body: { model: 'g', messages, stream: true },
  });
  assert.match(e.text, /scripted mid-stream by the mock/, e.text);
  assert.ok(!e.text.includes('upstream_stream_cut') && !e.text.includes('[DONE]'), e.text);
});

itest('mid_stream_fallback: error → the cut stream ends with the error event, nothing continued', async (env) => {
  const s = await setup(env, { groupSettings: { mid_stream_fallback: 'error' } });
  await s.p.setDefault({ content: FULL, cut_after: 3 });
  await s.f.setDefault({ content: ' four five six' });
  const out = await openaiStream(s.openai);
  assert.ok(out.error, 'iterating the cut stream throws');
  assert.match(String(out.error.message), /upstream stream ended before completion/);
  assert.equal(out.content, DELIVERED);
  assert.notEqual(out.finish, 'stop');
  assert.equal((await s.f.stats()).requests, 0, 'no continuation');
  assert.equal(logLines(s.w, 'midstream_continued').length, 0);
});
