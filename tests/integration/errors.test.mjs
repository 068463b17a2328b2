// errors.test.mjs — every client-facing error is OpenAI-shaped and the worker survives
// hostile clients: bad JSON, bad auth, huge bodies, slowloris, clients leaving
// mid-stream, garbage from a provider, and requests before any snapshot.
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  itest, deployment, assertOpenAIError, assertNoLeak, hello, http, freePort, waitFor, SLOW,
  MASTER_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];
const auth = { authorization: `Bearer ${MASTER_KEY}` };

// gpt-4 → gpt-4-1 (weight 100) + gpt-4-2 (weight 1); slow → slow-1 alone.
async function setup(env) {
  const a = await env.startMock('gpt-4-1');
  const b = await env.startMock('gpt-4-2');
  const s = await env.startMock('slow-1');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt-4', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 100 }),
      deployment('gpt-4', { model: 'openai/gpt-4o-mini', api_base: b.apiBase, api_key: 'sk-b', weight: 1 }),
      deployment('slow', { model: 'openai/slow-model', api_base: s.apiBase, api_key: 'sk-s' }),
    ],
  });
  return { a, b, s, cluster, w: cluster.worker, ports: [a.port, b.port, s.port] };
}

/**
 * Raw HTTP/1.1 exchange over node:net: writes head, then body (a Buffer, written in
 * pieces while the server may answer early). Resolves {status, headers, text, json,
 * closed} once the response is complete or the server closes.
 */
function rawRequest(port, head, body, { timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let answered = false;
    let done = false;
    const finish = (closed) => {
      if (done) return;
      const r = parseResponse(buf);
      if (!r && !closed) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (!r) reject(new Error(`connection closed without a response (${buf.length} bytes: ${buf.toString().slice(0, 200)})`));
      else resolve({ ...r, closed });
    };
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no response within ${timeoutMs * SLOW} ms`)); }, timeoutMs * SLOW);
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); answered = true; finish(false); });
    sock.on('close', () => finish(true));
    sock.on('error', () => { /* EPIPE/ECONNRESET after an early answer are expected */ });
    sock.on('connect', async () => {
      sock.write(head);
      if (!body) return;
      const piece = 64 * 1024;
      for (let off = 0; off < body.length && !answered && !sock.destroyed; off += piece) {
        if (!sock.write(body.subarray(off, off + piece))) {
          await new Promise((r) => { sock.once('drain', r); sock.once('close', r); setTimeout(r, 200); });
        }
      }
    });
  });
}

function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(lines[0].split(' ')[1]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = buf.subarray(end + 4);
  let text;
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (rest.length < n) return null;
    text = rest.subarray(0, n).toString();
  } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) return null;
      const n = parseInt(rest.subarray(0, nl).toString(), 16);
      if (rest.length < nl + 2 + n + 2) return null;
      if (n === 0) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + n));
      rest = rest.subarray(nl + 2 + n + 2);
    }
    text = Buffer.concat(parts).toString();
  } else {
    return null;
  }
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status, headers, text, json };
}

async function stillServes(w) {
  assert.equal((await http('GET', `${w.base}/healthz`)).status, 200, 'worker alive');
  const r = await w.chat({ model: 'gpt-4', messages });
  assert.equal(r.status, 200, `chat still works: ${r.text}`);
  assert.ok(w.proc.running, 'worker process still running');
}

itest('request errors are OpenAI-shaped: 400, 401, 404', async (env) => {
  const { w, ports } = await setup(env);
  const url = `${w.base}/v1/chat/completions`;

  let r = await http('POST', url, { headers: auth, body: '{"model": "gpt-4", "messages": [' });
  assertOpenAIError(r, 400, 'invalid_request_error');
  r = await http('POST', url, { headers: auth, body: 'not json at all' });
  assertOpenAIError(r, 400, 'invalid_request_error');
  r = await http('POST', url, { headers: auth, body: { messages } });
  assertOpenAIError(r, 400, 'invalid_request_error');
  r = await http('POST', url, { headers: auth, body: { model: 42, messages } });
  assertOpenAIError(r, 400, 'invalid_request_error');
  r = await http('POST', url, { headers: auth, body: '' });
  assertOpenAIError(r, 400, 'invalid_request_error');

  r = await http('POST', url, { headers: auth, body: { model: 'no-such-model', messages } });
  const e = assertOpenAIError(r, 404, 'model_not_found');
  assert.ok(e.message.includes('no-such-model'), `message names the model: ${e.message}`);

  r = await http('POST', url, { body: { model: 'gpt-4', messages } });
  assertOpenAIError(r, 401, 'authentication_error');
  r = await http('POST', url, { headers: { authorization: 'Bearer sk-wrong' }, body: { model: 'gpt-4', messages } });
  assertOpenAIError(r, 401, 'authentication_error');
  r = await http('POST', url, { headers: { authorization: `Bearer ${MASTER_KEY}x` }, body: { model: 'gpt-4', messages } });
  assertOpenAIError(r, 401, 'authentication_error');
  r = await http('POST', url, { headers: { authorization: MASTER_KEY }, body: { model: 'gpt-4', messages } });
  assertOpenAIError(r, 401, 'authentication_error');
  // Auth comes before model lookup: no alias probing without a key.
  r = await http('POST', url, { body: { model: 'no-such-model', messages } });
  assertOpenAIError(r, 401, 'authentication_error');
  r = await http('GET', `${w.base}/v1/models`);
  assertOpenAIError(r, 401, 'authentication_error');

  assertNoLeak(r.text, { ports });
  await stillServes(w);
});

itest('huge body → 413, oversized headers → 431, worker survives', async (env) => {
  const { w } = await setup(env);
  const size = 16 * 1024 * 1024;
  const body = Buffer.alloc(size, 'a');
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${MASTER_KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`;
  const r = await rawRequest(w.port, head, body);
  assertOpenAIError(r, 413, 'request_too_large');
  await stillServes(w);

  // Chunked with no length announced: the limit must hold while reading.
  const chunkedHead = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${MASTER_KEY}\r\n` +
    'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
  const piece = Buffer.concat([Buffer.from('100000\r\n'), Buffer.alloc(0x100000, 'b'), Buffer.from('\r\n')]);
  const rc = await rawRequest(w.port, chunkedHead, Buffer.concat(Array(16).fill(piece)));
  assertOpenAIError(rc, 413, 'request_too_large');
  await stillServes(w);

  const big = `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${MASTER_KEY}\r\n` +
    `X-Big: ${'x'.repeat(64 * 1024)}\r\n\r\n`;
  const rh = await rawRequest(w.port, big);
  assertOpenAIError(rh, 431);
  await stillServes(w);
});

itest('slowloris: half-sent headers are cut off, others are served meanwhile', async (env) => {
  const { w } = await setup(env);
  const t0 = Date.now();
  const sock = net.connect({ port: w.port, host: '127.0.0.1' });
  let got = '';
  sock.on('data', (d) => { got += d.toString(); });
  sock.on('error', () => {});
  const closed = new Promise((resolve) => sock.on('close', () => resolve(Date.now() - t0)));
  await new Promise((r) => sock.once('connect', r));
  sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl');

  // The worker answers others while the slow client hangs on.
  let served = 0;
  let isClosed = false;
  closed.then(() => { isClosed = true; });
  while (!isClosed && Date.now() - t0 < 20000 * SLOW) {
    await stillServes(w);
    served++;
    await Promise.race([closed, new Promise((r) => setTimeout(r, 500))]);
  }
  assert.ok(isClosed, `slow connection still open after ${Date.now() - t0} ms`);
  const after = await closed;
  // The header timeout is 10 s (common/http_server.h default); allow slack, not forever.
  assert.ok(after <= 15000 * SLOW, `closed within the header timeout (+slack): ${after} ms`);
  assert.ok(after >= 2000, `not closed instantly (${after} ms): the timeout is what closed it`);
  assert.ok(served >= 2, `others served meanwhile (${served})`);
  if (got) assert.match(got, /^HTTP\/1\.1 408/, `optional answer is 408: ${got.slice(0, 100)}`);
});

itest('client disconnect mid-stream cancels the upstream request', async (env) => {
  const { w, s } = await setup(env);
  await s.setDefault({ chunk_delay_ms: 1000 });
  const ac = new AbortController();
  const res = await fetch(`${w.base}/v1/chat/completions`, {
    method: 'POST', signal: ac.signal,
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow', messages, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-llmesh-deployment'), 'slow-1');
  const reader = res.body.getReader();
  const first = await reader.read();
  assert.ok(!first.done && first.value.length > 0, 'got the first chunk');
  assert.match(Buffer.from(first.value).toString(), /data: /);
  ac.abort();
  await reader.cancel().catch(() => {});

  const st = await waitFor(async () => {
    const x = await s.stats();
    return x.cancelled >= 1 && x.in_flight === 0 ? x : null;
  }, { timeoutMs: 4000, what: 'mock stats cancelled >= 1, in_flight 0' });
  assert.equal(st.cancelled, 1);
  assert.equal(st.completed, 0, 'the upstream stream was not read to the end');
  await stillServes(w);
});

itest('garbage from a provider → failover or 502, never a 200 with garbage', async (env) => {
  const { w, a, ports } = await setup(env);
  await a.setDefault({ garbage: true });
  for (let i = 0; i < 6; i++) {
    const r = await w.chat({ model: 'gpt-4', messages });
    if (r.status === 200) {
      assert.ok(r.json, `200 body is JSON: ${r.text.slice(0, 200)}`);
      assert.equal(r.headers.get('x-llmesh-deployment'), 'gpt-4-2', 'a 200 comes from the healthy deployment');
      assert.equal(r.json.choices[0].message.content, hello('gpt-4-2'));
    } else {
      assertOpenAIError(r, 502);
      assertNoLeak(r.text, { ports });
    }
  }
  assert.ok((await a.stats()).requests >= 1, 'the garbage deployment was tried');
});

itest('before any snapshot: /healthz 200, /readyz 503, chat 503', async (env) => {
  const nowhere = await freePort();
  const w = await env.startWorker(null, { ready: false, controlPort: nowhere });
  assert.equal((await http('GET', `${w.base}/healthz`)).status, 200);
  const rz = await http('GET', `${w.base}/readyz`);
  assert.equal(rz.status, 503, `readyz: ${rz.text}`);
  const r = await w.chat({ model: 'gpt-4', messages });
  assertOpenAIError(r, 503, ['not_ready', 'no_deployment_available']);
  // Still 503 a moment later (nothing to connect to), and the worker stays up.
  await new Promise((res) => setTimeout(res, 1000));
  assert.equal((await http('GET', `${w.base}/readyz`)).status, 503);
  assert.ok(w.proc.running);
});
