// controlplane.test.mjs — llmesh-control and llmesh-ctl: status, telemetry that adds up,
// workers surviving a dead control plane, restart, a second worker, secrets at rest,
// and the command-line contract (--help, bad flags, bad configs, SIGTERM).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  itest, deployment, hello, run, waitFor, BIN, SLOW, freePort,
  MASTER_KEY, PROVIDER_KEY, LITERAL_KEY,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

async function setup(env, opts) {
  const a = await env.startMock('gpt-4-1');
  const b = await env.startMock('gpt-4-2');
  const c = await env.startMock('claude-1');
  const cluster = await env.startCluster({
    model_list: [
      deployment('gpt-4', { model: 'openai/gpt-4o', api_base: a.apiBase, api_key: 'os.environ/MOCK_KEY', weight: 5 }),
      deployment('gpt-4', { model: 'openai/gpt-4o-mini', api_base: b.apiBase, api_key: LITERAL_KEY, weight: 1 }),
      deployment('claude', { model: 'openai/claude-mock', api_base: c.apiBase, api_key: 'x' }),
    ],
    router_settings: { fallbacks: [{ 'gpt-4': ['claude'] }] },
  }, opts);
  return { a, b, c, cluster, w: cluster.worker };
}

const byName = (list, key, v) => list.find((x) => x[key] === v);

async function chatOk(w, model = 'claude') {
  const r = await w.chat({ model, messages });
  assert.equal(r.status, 200, `chat via ${w.listen}: ${r.text}`);
  return r;
}

itest('status lists the worker and the deployments; counts converge to exactly N', async (env) => {
  const { cluster, w } = await setup(env, { region: 'eu-test-1' });

  const st = await waitFor(async () => {
    const s = await cluster.status();
    const wk = byName(s.workers, 'listen', w.listen);
    return wk && wk.snapshot_version === s.snapshot.version && wk.snapshot_epoch === s.snapshot.epoch ? s : null;
  }, { timeoutMs: 6000, what: 'worker listed in status with the current snapshot' });
  assert.ok(st.snapshot.epoch > 0 && st.snapshot.version > 0, `snapshot ${JSON.stringify(st.snapshot)}`);
  assert.ok(st.uptime_ms >= 0);
  assert.equal(st.workers.length, 1);
  const wk = st.workers[0];
  assert.equal(wk.region, 'eu-test-1');
  assert.equal(wk.listen, w.listen);
  assert.equal(wk.pid, w.proc.pid);
  assert.ok(typeof wk.worker_id === 'string' && wk.worker_id.length > 0);
  assert.ok(wk.last_heard_ms_ago < 3000 * SLOW, `last heard ${wk.last_heard_ms_ago} ms ago`);
  assert.ok(wk.rss_bytes > 1e6 && wk.rss_bytes < 1e9, `rss ${wk.rss_bytes}`);

  const names = st.deployments.map((d) => d.name).sort();
  assert.deepEqual(names, ['claude-1', 'gpt-4-1', 'gpt-4-2']);
  const d1 = byName(st.deployments, 'name', 'gpt-4-1');
  assert.equal(d1.model_group, 'gpt-4');
  assert.equal(d1.provider, 'openai');
  assert.equal(d1.upstream_model, 'gpt-4o');
  assert.equal(d1.weight, 5);
  const d2 = byName(st.deployments, 'name', 'gpt-4-2');
  assert.equal(d2.upstream_model, 'gpt-4o-mini');
  assert.equal(d2.weight, 1);
  assert.equal(byName(st.deployments, 'name', 'claude-1').upstream_model, 'claude-mock');
  const statusText = JSON.stringify(st);
  for (const k of [PROVIDER_KEY, LITERAL_KEY, MASTER_KEY]) assert.ok(!statusText.includes(k), 'status shows no key');

  const N = 7;
  for (let i = 0; i < N; i++) {
    const r = await chatOk(w);
    assert.equal(r.json.choices[0].message.content, hello('claude-1'));
  }
  const want = (s) => {
    const d = byName(s.deployments, 'name', 'claude-1');
    return d.requests === N && d.success === N;
  };
  const conv = await waitFor(async () => { const s = await cluster.status(); return want(s) ? s : null; },
    { timeoutMs: 5000, what: `claude-1 requests == success == ${N}` });
  const d = byName(conv.deployments, 'name', 'claude-1');
  for (const k of ['server_error', 'timeout', 'connect_error', 'rate_limited', 'client_error', 'other_error', 'cancelled', 'failovers']) {
    assert.equal(d[k], 0, `claude-1 ${k}`);
  }
  assert.ok(d.prompt_tokens > 0 && d.completion_tokens > 0, `tokens counted: ${d.prompt_tokens}/${d.completion_tokens}`);
  assert.ok(d.p50_ms > 0 && d.p99_ms >= d.p50_ms, `latency ${d.p50_ms}/${d.p99_ms}`);
  assert.equal(byName(conv.deployments, 'name', 'gpt-4-1').requests, 0);
  assert.ok(byName(conv.workers, 'listen', w.listen).client_requests >= N);
  // Cumulative counters must not be double-counted by later telemetry messages.
  await new Promise((r) => setTimeout(r, 2500));
  const later = await cluster.status();
  assert.equal(byName(later.deployments, 'name', 'claude-1').requests, N, 'still exactly N after more telemetry');
});

itest('kill -9 control: the worker keeps serving; restart: the worker reappears', async (env) => {
  const { cluster, w } = await setup(env);
  await waitFor(async () => byName((await cluster.status()).workers, 'listen', w.listen),
    { timeoutMs: 5000, what: 'worker in status' });
  const epoch1 = (await cluster.status()).snapshot.epoch;

  await cluster.control.kill9();
  for (let i = 0; i < 5; i++) await chatOk(w);
  await chatOk(w, 'gpt-4');
  // Past a few snapshot periods without a control plane, still serving and ready.
  await new Promise((r) => setTimeout(r, 3000));
  await chatOk(w);
  const rz = await fetch(`${w.base}/readyz`);
  assert.equal(rz.status, 200, 'still ready on the last snapshot');

  const t0 = Date.now();
  await env.startControl(cluster, { name: 'control-restarted' });
  const st = await waitFor(async () => {
    const s = await cluster.status();
    return byName(s.workers, 'listen', w.listen) ? s : null;
  }, { timeoutMs: 5000, what: 'worker relisted after control restart' });
  const took = Date.now() - t0;
  assert.ok(took < 5000 * SLOW, `relisted in ${took} ms`);
  assert.notEqual(st.snapshot.epoch, epoch1, 'a restart starts a new epoch');
  // The worker picks up the new epoch's snapshot (published every 2 s).
  await waitFor(async () => {
    const s = await cluster.status();
    const wk = byName(s.workers, 'listen', w.listen);
    return wk && wk.snapshot_epoch === s.snapshot.epoch && wk.snapshot_version === s.snapshot.version;
  }, { timeoutMs: 8000, what: 'worker runs the restarted control plane\'s snapshot' });
  await chatOk(w);
});

itest('a second worker joins, serves, and both appear in status', async (env) => {
  const { cluster, w } = await setup(env);
  const w2 = await env.startWorker(cluster, { region: 'second' });
  const r1 = await chatOk(w);
  const r2 = await chatOk(w2);
  assert.equal(r2.json.choices[0].message.content, hello('claude-1'));
  assert.notEqual(r1.headers.get('x-request-id'), r2.headers.get('x-request-id'));
  const st = await waitFor(async () => {
    const s = await cluster.status();
    return s.workers.length === 2 && s.workers.every((x) => x.client_requests >= 1) ? s : null;
  }, { timeoutMs: 5000, what: 'both workers in status with their requests' });
  const a = byName(st.workers, 'listen', w.listen);
  const b = byName(st.workers, 'listen', w2.listen);
  assert.ok(a && b, `both listed: ${JSON.stringify(st.workers)}`);
  assert.notEqual(a.worker_id, b.worker_id);
  assert.equal(b.region, 'second');
  assert.equal(b.pid, w2.proc.pid);
  // Totals are summed over both workers.
  await waitFor(async () => byName((await cluster.status()).deployments, 'name', 'claude-1').requests === 2,
    { timeoutMs: 5000, what: 'claude-1 totals summed over both workers == 2' });
});

itest('secrets at rest: no plaintext keys in the database; secret.key is 0600', async (env) => {
  const { cluster, w } = await setup(env);
  await chatOk(w, 'gpt-4');
  // Let telemetry and any snapshot bookkeeping reach the database.
  await waitFor(async () => (await cluster.status()).workers.length === 1, { timeoutMs: 5000, what: 'worker listed' });
  await new Promise((r) => setTimeout(r, 1500));
  const files = fs.readdirSync(cluster.dataDir).filter((f) => f.startsWith('llmesh.db'));
  assert.ok(files.includes('llmesh.db'), `database present: ${files}`);
  for (const f of files) {
    const bytes = fs.readFileSync(path.join(cluster.dataDir, f));
    for (const k of [PROVIDER_KEY, LITERAL_KEY, MASTER_KEY]) {
      assert.ok(!bytes.includes(Buffer.from(k)), `${f} holds ${k} in plaintext`);
    }
  }
  // After a clean stop (WAL checkpointed) too.
  const e = await cluster.control.stop();
  assert.equal(e.code, 0, 'control exits 0 on SIGTERM');
  for (const f of fs.readdirSync(cluster.dataDir).filter((x) => x.startsWith('llmesh.db'))) {
    const bytes = fs.readFileSync(path.join(cluster.dataDir, f));
    for (const k of [PROVIDER_KEY, LITERAL_KEY, MASTER_KEY]) assert.ok(!bytes.includes(Buffer.from(k)), `${f} plaintext key`);
  }
  const sk = fs.statSync(path.join(cluster.dataDir, 'secret.key'));
  assert.equal(sk.mode & 0o777, 0o600, `secret.key mode ${(sk.mode & 0o777).toString(8)}`);
});

itest('command line: --help 0, bad flag 2, bad config 1 with file:line, SIGTERM 0', async (env) => {
  for (const bin of [BIN.control, BIN.worker, BIN.ctl, BIN.mock]) {
    const h = await run(bin, ['--help']);
    assert.equal(h.code, 0, `${bin} --help exit code (stderr: ${h.stderr})`);
    assert.ok((h.stdout + h.stderr).includes('--'), `${bin} --help describes flags`);
    const b = await run(bin, ['--no-such-flag']);
    assert.equal(b.code, 2, `${bin} --no-such-flag exit code (stderr: ${b.stderr})`);
    assert.ok(b.stderr.trim().length > 0, `${bin} says why on stderr`);
  }
  // Missing required flags are bad usage too.
  assert.equal((await run(BIN.worker, [])).code, 2, 'worker without --control/--listen');

  const dataDir = path.join(env.dir, 'bad-data');
  fs.mkdirSync(dataDir);
  const cp = await freePort();
  const ctlArgs = (cfg) => ['--config', cfg, '--data-dir', dataDir, '--workers-url', `tcp://127.0.0.1:${cp}`,
    '--telemetry-url', `tcp://127.0.0.1:${cp + 1}`];
  const bad = [
    // [yaml, line, key]
    ['model_list:\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/gpt-4o\n      weight: lots\n', 5, 'weight'],
    ['model_list:\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: http://127.0.0.1:1/v1\n' +
      'router_settings:\n  num_retries: -4\n', 7, 'num_retries'],
    ['model_list:\n  - model_name: gpt-4\n    litellm_params: {model: openai/gpt-4o\n  - oops\n', null, null],
  ];
  for (const [i, [yaml, line, key]] of bad.entries()) {
    const cfg = env.writeConfig(yaml, `bad${i}.yaml`);
    const r = await run(BIN.control, ctlArgs(cfg), { timeoutMs: 10000 });
    assert.equal(r.code, 1, `bad config ${i} exits 1 (got ${r.code} ${r.signal}; stderr: ${r.stderr})`);
    assert.ok(r.stderr.includes(cfg), `names the file: ${r.stderr}`);
    if (line) assert.ok(r.stderr.includes(`${cfg}:${line}`), `names ${cfg}:${line}: ${r.stderr}`);
    if (key) assert.ok(r.stderr.includes(key), `names the key ${key}: ${r.stderr}`);
  }
  const missing = await run(BIN.control, ctlArgs(path.join(env.dir, 'nope.yaml')));
  assert.equal(missing.code, 1, `missing config exits 1: ${missing.stderr}`);

  // SIGTERM → 0 for a running control plane and worker (mocks too, checked at teardown).
  const { cluster, w } = await setup(env);
  await chatOk(w);
  const ew = await w.proc.stop();
  assert.deepEqual([ew.code, ew.signal, ew.killed], [0, null, false], 'worker exits 0 on SIGTERM');
  const ec = await cluster.control.stop();
  assert.deepEqual([ec.code, ec.signal, ec.killed], [0, null, false], 'control exits 0 on SIGTERM');
});
