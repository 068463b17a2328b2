// stall.test.mjs — a committed stream whose upstream goes silent is cut after the
// deployment's timeout (the idle bound between upstream chunks), with an in-band error.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { itest, deployment, hello, metricSum, SLOW, MASTER_KEY, LITERAL_KEY } from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

itest('stream that stalls after the first event → cut on the idle bound, error event, no [DONE]', async (env) => {
  const a = await env.startMock('gpt-4-1');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt-4', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: LITERAL_KEY, timeout: 1 }),
    ],
    router_settings: { num_retries: 0, timeout: 30 },
  });
  const w = cluster.worker;
  const client = new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });

  // The mock sends the role chunk at once (the worker commits), then waits 5 s per chunk.
  await a.setDefault({ chunk_delay_ms: 5000 });
  const t0 = Date.now();
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'gpt-4', messages, stream: true }).withResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-llmesh-deployment'), 'gpt-4-1');
  let finish = null;
  let chunks = 0;
  const err = await (async () => {
    try {
      for await (const ch of stream) {
        chunks++;
        finish = ch.choices[0]?.finish_reason ?? finish;
      }
    } catch (e) {
      return e;
    }
    return null;
  })();
  const took = Date.now() - t0;
  assert.ok(err, 'iterating a stalled stream throws');
  assert.match(String(err.message), /stalled/, `the error event says why: ${err.message}`);
  assert.ok(chunks >= 1, 'the first event was relayed before the stall');
  assert.notEqual(finish, 'stop', 'no fake finish_reason');
  assert.ok(took >= 900, `not cut before the idle bound (${took} ms)`);
  assert.ok(took < 4000 * SLOW, `cut on the 1 s idle bound, not after the 5 s chunk (${took} ms)`);

  // Counted against the deployment as other_error; the upstream transfer was dropped.
  const m = await w.metrics();
  assert.match(m, /llmesh_upstream_errors_total\{deployment="gpt-4-1",class="other_error"\} 1\b/,
    'the stall is counted as other_error');
  assert.equal(metricSum(m, 'llmesh_upstream_success_total'), 0, 'not counted as a success');

  // The worker keeps serving: a healthy stream on the same deployment completes.
  await a.setDefault({});
  let content = '';
  const s2 = await client.chat.completions.create({ model: 'gpt-4', messages, stream: true });
  for await (const ch of s2) content += ch.choices[0]?.delta?.content ?? '';
  assert.equal(content, hello('gpt-4-1'));
});
