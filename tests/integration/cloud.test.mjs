// cloud.test.mjs — cloud credentials end to end: the openai SDK talks to the worker, which
// signs Bedrock requests with SigV4 (keys from the config, verified by the mock with
// --aws-secret) and mints Vertex AI access tokens from a service-account key (RSA key made
// here, token_uri = the mock's /token): one token serves many requests, proactive refresh
// (LLMESH_GCP_REFRESH_SKEW_S), a failing token endpoint while the old token is valid.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import OpenAI from 'openai';
import {
  itest, deployment, hello, lastRequest, freePort, portOpen, http, waitFor, sleep, Mock, BIN, MASTER_KEY, SLOW,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];
const AKID = 'AKIAMOCKACCESSKEY123';
const SECRET = 'mock-aws-secret-key-6b2f0e';
const BEDROCK_MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';

async function startMock(env, name, extra = []) {
  const port = await freePort();
  const proc = env.spawn(`mock-${name}`, BIN.mock, ['--listen', `127.0.0.1:${port}`, '--name', name, ...extra]);
  await env.waitReady(proc, () => portOpen(port), `port ${port} accepting`, 5000);
  return new Mock(proc, port, name);
}

function client(w) {
  return new OpenAI({ baseURL: `${w.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
}

async function streamText(c, model) {
  let content = '';
  for await (const ch of await c.chat.completions.create({ model, messages, stream: true })) {
    for (const ch2 of ch.choices || []) if (ch2.delta?.content) content += ch2.delta.content;
  }
  return content;
}

itest('bedrock: SigV4 with configured keys, non-stream and stream, 429 fails over', async (env) => {
  const br = await startMock(env, 'br-1', ['--aws-secret', SECRET]);
  const other = await startMock(env, 'other-1');
  const aws = { model: `bedrock/${BEDROCK_MODEL}`, api_base: br.base, aws_access_key_id: AKID,
    aws_secret_access_key: SECRET, aws_session_token: 'mock-session-token', aws_region_name: 'us-east-1' };
  const cluster = await env.startCluster({
    model_list: [
      deployment('claude-br', aws),
      deployment('mixed', { ...aws, weight: 1000 }, { id: 'mixed-bedrock' }),
      deployment('mixed', { model: 'openai/gpt-mock', api_base: other.apiBase, api_key: 'k', weight: 1 }, { id: 'mixed-openai' }),
    ],
  });
  const c = client(cluster.worker);
  const { data, response } = await c.chat.completions.create({ model: 'claude-br', messages }).withResponse();
  assert.equal(response.headers.get('x-llmesh-deployment'), 'claude-br-1');
  assert.equal(data.choices[0].message.content, hello('br-1'));
  const lr = lastRequest(await br.stats());
  assert.equal(lr.raw.format, 'bedrock');
  assert.equal(lr.model, BEDROCK_MODEL);
  assert.match(lr.authorization, new RegExp(`^AWS4-HMAC-SHA256 Credential=${AKID}/\\d{8}/us-east-1/bedrock/aws4_request, `));
  assert.equal(lr.headers['x-amz-security-token'], 'mock-session-token');
  assert.equal(await streamText(c, 'claude-br'), hello('br-1'));
  assert.equal(lastRequest(await br.stats()).raw.path.endsWith('/converse-stream'), true);

  await br.faults({ status: 429 });
  const r = await c.chat.completions.create({ model: 'mixed', messages }).withResponse();
  assert.equal(r.response.headers.get('x-llmesh-deployment'), 'mixed-openai');
  assert.equal(r.response.headers.get('x-llmesh-attempts'), '2');
  assert.equal(r.data.choices[0].message.content, hello('other-1'));
  const m = await http('GET', `${cluster.worker.base}/metrics`);
  assert.match(m.text, /llmesh_failovers_total\{deployment="mixed-bedrock"[^}]*reason="rate_limited"\} 1/);
});

itest('bedrock: keys from the process environment (AWS_ACCESS_KEY_ID, ...)', async (env) => {
  const br = await startMock(env, 'br-env', ['--aws-secret', SECRET]);
  const saved = { ...process.env };
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: AKID, AWS_SECRET_ACCESS_KEY: SECRET, AWS_REGION: 'eu-central-1' });
  delete process.env.AWS_SESSION_TOKEN;
  try {
    const cluster = await env.startCluster({ model_list: [deployment('br', { model: `bedrock/${BEDROCK_MODEL}`, api_base: br.base })] });
    const data = await client(cluster.worker).chat.completions.create({ model: 'br', messages });
    assert.equal(data.choices[0].message.content, hello('br-env'));
    assert.match(lastRequest(await br.stats()).authorization, /Credential=AKIAMOCKACCESSKEY123\/\d{8}\/eu-central-1\/bedrock\//);
  } finally {
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) {
      if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
    }
  }
});

function serviceAccount(tokenUri) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return JSON.stringify({
    type: 'service_account', project_id: 'proj-from-key', private_key_id: 'kid-test',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: 'llmesh-test@proj-from-key.iam.gserviceaccount.com', client_id: '1', token_uri: tokenUri,
  });
}

async function vertexSetup(env) {
  const vx = await startMock(env, 'vx-1');
  const sa = serviceAccount(`${vx.base}/token`);
  const common = { api_base: vx.base, vertex_project: 'proj-t', vertex_location: 'us-central1', vertex_credentials: sa };
  const cluster = await env.startCluster({
    model_list: [
      deployment('gemini-vx', { model: 'vertex_ai/gemini-1.5-pro', ...common }),
      deployment('claude-vx', { model: 'vertex_ai/claude-3-5-sonnet@20240620', ...common }),
    ],
  });
  return { vx, cluster, c: client(cluster.worker), sa };
}

itest('vertex: Gemini and Claude with a minted token; one token for many requests; metrics', async (env) => {
  const { vx, cluster, c, sa } = await vertexSetup(env);
  for (let i = 0; i < 3; i++) {
    const g = await c.chat.completions.create({ model: 'gemini-vx', messages });
    assert.equal(g.choices[0].message.content, hello('vx-1'));
    const a = await c.chat.completions.create({ model: 'claude-vx', messages });
    assert.equal(a.choices[0].message.content, hello('vx-1'));
  }
  assert.equal(await streamText(c, 'gemini-vx'), hello('vx-1'));
  assert.equal(await streamText(c, 'claude-vx'), hello('vx-1'));
  const st = await vx.stats();
  assert.equal(st.tokens_issued, 1, 'one service account, one token');
  const lr = lastRequest(st);
  assert.equal(lr.raw.format, 'vertex');
  assert.match(lr.authorization, /^Bearer mock-token-\d+$/);
  assert.match(lr.raw.path, /^\/v1\/projects\/proj-t\/locations\/us-central1\/publishers\/anthropic\/models\/claude-3-5-sonnet@20240620:streamRawPredict/);
  const m = await http('GET', `${cluster.worker.base}/metrics`);
  assert.match(m.text, /llmesh_gcp_token_fetches_total\{result="ok"\} 1\n/);
  // the worker log names the service account, never the token or the key
  const log = fs.readFileSync(cluster.worker.proc.logPath, 'utf8');
  assert.match(log, /"gcp_token_fetched".*"service_account":"llmesh-test@proj-from-key.iam.gserviceaccount.com".*"expires_in":3600/);
  assert.ok(!log.includes('mock-token-'), 'token never logged');
  assert.ok(!log.includes(JSON.parse(sa).private_key.split('\n')[1]), 'key never logged');
  const clog = fs.readFileSync(cluster.control.logPath, 'utf8');
  assert.ok(!clog.includes(JSON.parse(sa).private_key.split('\n')[1]), 'key never logged by control');
});

itest('vertex: proactive refresh keeps requests succeeding; a failing token endpoint keeps the old token', async (env) => {
  process.env.LLMESH_GCP_REFRESH_SKEW_S = '698'; // refresh 698 s before expiry: a 700 s token after ~2 s
  try {
    const vx = await startMock(env, 'vx-r');
    await vx.post('/mock/token', { expires_in: 700 });
    const sa = serviceAccount(`${vx.base}/token`);
    const cluster = await env.startCluster({
      model_list: [deployment('gemini-vx', { model: 'vertex_ai/gemini-1.5-pro', api_base: vx.base, vertex_project: 'p', vertex_credentials: sa })],
    });
    const c = client(cluster.worker);
    assert.equal((await c.chat.completions.create({ model: 'gemini-vx', messages })).choices[0].message.content, hello('vx-r'));
    const first = lastRequest(await vx.stats()).authorization;
    // without any request, the worker refreshes before expiry
    await waitFor(async () => (await vx.stats()).tokens_issued >= 2, { timeoutMs: 8000 * SLOW, what: 'a proactive refresh' });
    assert.equal((await c.chat.completions.create({ model: 'gemini-vx', messages })).choices[0].message.content, hello('vx-r'));
    const second = lastRequest(await vx.stats()).authorization;
    assert.notEqual(second, first, 'the refreshed token is used');
    // token endpoint down: refresh fails, requests keep working on the still-valid token
    await vx.post('/mock/token', { fail: 503 });
    await sleep(3000);
    for (let i = 0; i < 3; i++) {
      assert.equal((await c.chat.completions.create({ model: 'gemini-vx', messages })).choices[0].message.content, hello('vx-r'));
    }
    const m = await http('GET', `${cluster.worker.base}/metrics`);
    const errs = Number(/llmesh_gcp_token_fetches_total\{result="error"\} (\d+)/.exec(m.text)[1]);
    assert.ok(errs >= 1, `failed fetches counted: ${errs}`);
  } finally {
    delete process.env.LLMESH_GCP_REFRESH_SKEW_S;
  }
});

itest('vertex: no token obtainable → fails over as auth; a 401 drops the token and a new one is minted', async (env) => {
  const vx = await startMock(env, 'vx-f');
  const other = await startMock(env, 'other-f');
  await vx.post('/mock/token', { fail: 400 });
  const sa = serviceAccount(`${vx.base}/token`);
  const cluster = await env.startCluster({
    model_list: [
      deployment('g', { model: 'vertex_ai/gemini-1.5-pro', api_base: vx.base, vertex_project: 'p', vertex_credentials: sa, weight: 1000 }, { id: 'g-vertex' }),
      deployment('g', { model: 'openai/gpt-mock', api_base: other.apiBase, api_key: 'k', weight: 1 }, { id: 'g-openai' }),
    ],
  });
  const c = client(cluster.worker);
  const r = await c.chat.completions.create({ model: 'g', messages }).withResponse();
  assert.equal(r.response.headers.get('x-llmesh-deployment'), 'g-openai');
  assert.equal(r.data.choices[0].message.content, hello('other-f'));
  // the endpoint recovers; once the backoff has passed, a token is minted and used
  await vx.post('/mock/token', { fail: 0 });
  await waitFor(async () => {
    const x = await c.chat.completions.create({ model: 'g', messages }).withResponse();
    return x.response.headers.get('x-llmesh-deployment') === 'g-vertex';
  }, { timeoutMs: 15000 * SLOW, intervalMs: 500, what: 'vertex serving after recovery' });
  const before = (await vx.stats()).tokens_issued;
  await vx.post('/mock/token', { revoke: true });
  // the revoked token gets a 401 (fails over once), is dropped, and a new one is fetched
  await c.chat.completions.create({ model: 'g', messages });
  await waitFor(async () => (await vx.stats()).tokens_issued > before, { timeoutMs: 8000 * SLOW, what: 'a new token after 401' });
  await waitFor(async () => {
    const x = await c.chat.completions.create({ model: 'g', messages }).withResponse();
    return x.response.headers.get('x-llmesh-deployment') === 'g-vertex';
  }, { timeoutMs: 8000 * SLOW, intervalMs: 300, what: 'vertex serving with the new token' });
  const log = fs.readFileSync(cluster.worker.proc.logPath, 'utf8');
  assert.match(log, /"gcp_token_fetch_failed"/);
  assert.match(log, /"failover".*"from":"g-vertex".*"reason":"auth_no_token"/);
  assert.match(log, /"gcp_token_rejected"/);
});
