// probes.test.mjs — the control plane's active health probe is configurable end to end
// (YAML → SQLite → probe): general_settings.health_check_prompt / health_check_max_tokens
// are what reaches the provider, through the OpenAI passthrough and through an adapter
// (Anthropic); a deployment with model_info.health_check: false is never probed and its
// skip is logged once with the reason.
import assert from 'node:assert/strict';
import {
  itest, deployment, waitFor, sleep, lastRequest, LITERAL_KEY, SLOW,
} from './lib/harness.mjs';

const INTERVAL_S = 1;

// The text of the first user message, whatever the format keeps it in (a string, or
// Anthropic's content blocks).
function userText(body) {
  const m = body && body.messages && body.messages[0];
  if (!m) return undefined;
  if (typeof m.content === 'string') return m.content;
  return m.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
}

// No workers: every request a mock sees is a probe.
async function setup(env, prompt) {
  const oa = await env.startMock('oa');
  const an = await env.startMock('an');
  const off = await env.startMock('off');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt-4', { model: 'openai/gpt-4o', api_base: oa.apiBase, api_key: LITERAL_KEY }, { id: 'oa' }),
      deployment('claude', { model: 'anthropic/claude-mock', api_base: an.apiBase, api_key: LITERAL_KEY }, { id: 'an' }),
      deployment('gpt-4', { model: 'openai/gpt-4o-paid', api_base: off.apiBase, api_key: LITERAL_KEY },
        { id: 'off', health_check: false }),
    ],
    general_settings: {
      background_health_checks: true, health_check_interval: INTERVAL_S, health_check_timeout: 2,
      health_check_prompt: prompt, health_check_max_tokens: 2,
    },
  }, { workers: 0 });
  return { oa, an, off, cluster };
}

async function probed(mock, n) {
  return waitFor(async () => {
    const s = await mock.stats();
    return s.requests >= n ? s : null;
  }, { timeoutMs: (n + 2) * INTERVAL_S * 1000 + 2000, what: `${mock.name} probed ${n} times` });
}

itest('the probe carries health_check_prompt and health_check_max_tokens; health_check: false is never probed', async (env) => {
  const t0 = Date.now();
  const { oa, an, off, cluster } = await setup(env, 'are you there?');

  const o = lastRequest(await probed(oa, 1));
  assert.equal(o.raw.format, 'openai');
  assert.equal(o.body.model, 'gpt-4o');
  assert.deepEqual(o.body.messages, [{ role: 'user', content: 'are you there?' }]);
  assert.equal(o.body.max_tokens, 2);

  const a = lastRequest(await probed(an, 1));
  assert.equal(a.raw.format, 'anthropic');
  assert.equal(userText(a.body), 'are you there?');
  assert.equal(a.body.max_tokens, 2);

  // Three intervals (and then some) of probing the others: still nothing for 'off'.
  await probed(oa, 3);
  const waited = Date.now() - t0;
  if (waited < 3 * INTERVAL_S * 1000 * SLOW) await sleep(3 * INTERVAL_S * 1000 * SLOW - waited);
  assert.equal((await off.stats()).requests, 0, 'a deployment with health_check: false gets no probe');

  const skips = cluster.control.jsonLog().filter((l) => l.event === 'probe_skipped');
  assert.deepEqual(skips.map((l) => [l.deployment, l.reason]), [['off', 'disabled in config']], 'logged once, with why');
  const st = await cluster.status();
  assert.ok(st.deployments.find((d) => d.name === 'oa').probe, 'the probed one shows its last probe');
  assert.ok(!st.deployments.find((d) => d.name === 'off').probe, 'the unprobed one has none');
});

itest('a prompt with quotes, a backslash and a newline reaches the provider intact (JSON-quoted)', async (env) => {
  const prompt = 'Say "yes" \\ only\nplease é';
  const { oa, an } = await setup(env, prompt);
  assert.equal(lastRequest(await probed(oa, 1)).body.messages[0].content, prompt);
  assert.equal(userText(lastRequest(await probed(an, 1)).body), prompt);
});
