// tls.test.mjs — mutual TLS on the snapshot and telemetry feeds (snapshots carry provider
// secrets): a worker with a certificate from our CA gets snapshots and reports telemetry
// over tls+tcp://; one with a certificate from another CA never gets a snapshot; a plain
// tcp:// feed off loopback is refused unless asked for; bad TLS files are startup errors.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  itest, deployment, hello, run, waitFor, http, sleep, freePort, BIN, SLOW, PROVIDER_KEY, Cluster, Worker,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

function openssl(dir, ...args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA NAME.crt/NAME.key in dir. */
function makeCa(dir, name) {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
}

/** NAME.crt/NAME.key signed by CA, with the given CN and subjectAltName. */
function makeCert(dir, name, ca, cn, san) {
  openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`,
    '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
}

/** Throwaway PKI: our CA, the control's and a worker's certificate, and a rogue one. */
function makePki(env) {
  const dir = path.join(env.dir, 'pki');
  fs.mkdirSync(dir);
  makeCa(dir, 'ca');
  makeCa(dir, 'rogue-ca');
  // mbedTLS 2.x (NNG's engine) matches the expected name against DNS entries only.
  makeCert(dir, 'control', 'ca', '127.0.0.1', 'DNS:127.0.0.1,IP:127.0.0.1,DNS:localhost');
  makeCert(dir, 'worker', 'ca', 'worker-1', 'DNS:worker-1');
  makeCert(dir, 'rogue', 'rogue-ca', 'worker-x', 'DNS:worker-x');
  const f = (n) => path.join(dir, n);
  const flags = (cert, ca = 'ca') => ['--tls-cert', f(`${cert}.crt`), '--tls-key', f(`${cert}.key`), '--tls-ca', f(`${ca}.crt`)];
  return { dir, f, flags };
}

async function startTlsCluster(env, pki) {
  const mock = await env.startMock('gpt-tls');
  const c = new Cluster(env);
  c.configPath = env.writeConfig(env.config({
    model_list: [deployment('gpt-4', { model: 'openai/gpt-4o', api_base: mock.apiBase, api_key: 'os.environ/MOCK_KEY' })],
  }));
  c.dataDir = path.join(env.dir, 'data');
  c.cpPort = await freePort();
  c.tpPort = await freePort();
  c.control = env.spawn('control', BIN.control, ['--config', c.configPath, '--data-dir', c.dataDir,
    '--workers-url', `tls+tcp://127.0.0.1:${c.cpPort}`, '--telemetry-url', `tls+tcp://127.0.0.1:${c.tpPort}`,
    '--log-level', 'debug', ...pki.flags('control')], { MOCK_KEY: PROVIDER_KEY });
  await env.waitReady(c.control, () => c.status().then(() => true), 'llmesh-ctl status answering', 10000);
  return { c, mock };
}

async function startTlsWorker(env, c, flags, name) {
  const port = await freePort();
  const proc = env.spawn(name, BIN.worker, ['--control', `tls+tcp://127.0.0.1:${c.cpPort}`,
    '--listen', `127.0.0.1:${port}`, '--region', 'tls-test', '--log-level', 'debug', ...flags]);
  const w = new Worker(proc, port, 'tls-test');
  await env.waitReady(proc, async () => (await http('GET', w.base + '/healthz', { timeoutMs: 2000 })).status === 200,
    'GET /healthz 200', 10000);
  return w;
}

itest('tls+tcp feeds: an enrolled worker serves chat and reports telemetry; a rogue certificate gets nothing', async (env) => {
  const pki = makePki(env);
  const { c } = await startTlsCluster(env, pki);
  const good = await startTlsWorker(env, c, pki.flags('worker'), 'worker-1');
  await env.waitReady(good.proc, async () => (await http('GET', good.base + '/readyz')).status === 200,
    'GET /readyz 200 (snapshot over TLS)', 15000);
  const r = await good.chat({ model: 'gpt-4', messages });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, hello('gpt-tls'));

  // Telemetry arrives over the tls+tcp URL the snapshot announced.
  const st = await waitFor(async () => {
    const s = await c.status();
    return s.workers.find((x) => x.listen === good.listen) ? s : null;
  }, { timeoutMs: 8000 * SLOW, what: 'TLS worker listed by llmesh-ctl status' });
  assert.equal(st.workers.length, 1);
  const dial = good.proc.jsonLog().find((l) => l.event === 'telemetry_dial');
  assert.ok(dial && dial.url === `tls+tcp://127.0.0.1:${c.tpPort}`, `telemetry dial: ${JSON.stringify(dial)}`);

  // Certificate from another CA: the control refuses the handshake, no snapshot ever.
  const rogue = await startTlsWorker(env, c, pki.flags('rogue', 'ca'), 'worker-rogue');
  await waitFor(() => c.control.jsonLog().some((l) => l.event === 'feed_tls_handshake_failed'),
    { timeoutMs: 8000 * SLOW, what: 'control logs feed_tls_handshake_failed' });
  await sleep(2500 * SLOW); // more than a republish period
  assert.equal((await http('GET', rogue.base + '/readyz')).status, 503, 'rogue worker must stay not ready');
  assert.ok(!rogue.proc.jsonLog().some((l) => l.event === 'snapshot_applied'), 'rogue worker applied a snapshot');
  const r2 = await rogue.chat({ model: 'gpt-4', messages });
  assert.notEqual(r2.status, 200);
  assert.ok(c.control.running, 'control still up');
  assert.equal((await c.status()).workers.length, 1, 'only the enrolled worker reports telemetry');

  // A worker with no certificate at all cannot dial tls+tcp:// (startup error, not a crash).
  const bare = await run(BIN.worker, ['--control', `tls+tcp://127.0.0.1:${c.cpPort}`, '--listen', '127.0.0.1:0']);
  assert.equal(bare.code, 2, bare.stderr);
  assert.match(bare.stderr, /--tls-cert/);
});

itest('plain tcp:// off loopback is refused without --insecure-plaintext-feed, allowed with it', async (env) => {
  const dataDir = path.join(env.dir, 'data');
  const cfg = env.writeConfig(env.config({ model_list: [deployment('gpt-4', { model: 'openai/gpt-4o', api_base: 'http://127.0.0.1:9/v1', api_key: 'x' })] }));
  const port = await freePort();
  const tport = await freePort(); // explicit: the derived port + 1 may be taken on a busy machine
  const base = ['--config', cfg, '--data-dir', dataDir, '--workers-url', `tcp://0.0.0.0:${port}`,
    '--telemetry-url', `tcp://0.0.0.0:${tport}`];
  const refused = await run(BIN.control, base);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /plaintext feed 'tcp:\/\/0\.0\.0\.0:\d+'.*--insecure-plaintext-feed/);

  const p = env.spawn('control', BIN.control, [...base, '--insecure-plaintext-feed']);
  await waitFor(() => p.jsonLog().some((l) => l.event === 'control_started'), { timeoutMs: 10000 * SLOW, what: 'control_started' });
  const warn = p.jsonLog().find((l) => l.event === 'plaintext_feed');
  assert.ok(warn && warn.level === 'warn', 'a warning at start');
  // Loopback stays allowed without the flag, and says nothing.
  const port2 = await freePort();
  const lo = env.spawn('control-lo', BIN.control, ['--config', cfg, '--data-dir', path.join(env.dir, 'data2'),
    '--workers-url', `tcp://127.0.0.1:${port2}`, '--telemetry-url', `tcp://127.0.0.1:${await freePort()}`]);
  await waitFor(() => lo.jsonLog().some((l) => l.event === 'control_started'), { timeoutMs: 10000 * SLOW, what: 'loopback control_started' });
  assert.ok(!lo.jsonLog().some((l) => l.event === 'plaintext_feed'));
});

itest('bad TLS files and URL mismatches are startup errors naming the file', async (env) => {
  const pki = makePki(env);
  const dataDir = path.join(env.dir, 'data');
  const cfg = env.writeConfig(env.config({ model_list: [deployment('gpt-4', { model: 'openai/gpt-4o', api_base: 'http://127.0.0.1:9/v1', api_key: 'x' })] }));
  const port = await freePort();
  const ctl = (flags, url = `tls+tcp://127.0.0.1:${port}`) =>
    run(BIN.control, ['--config', cfg, '--data-dir', dataDir, '--workers-url', url, ...flags]);
  const wrk = (flags, url = `tls+tcp://127.0.0.1:${port}`) =>
    run(BIN.worker, ['--control', url, '--listen', '127.0.0.1:0', ...flags]);
  const missing = path.join(pki.dir, 'nope.crt');
  const garbage = path.join(pki.dir, 'garbage.pem');
  fs.writeFileSync(garbage, 'this is not PEM\n');
  const cases = [
    [['--tls-cert', missing, '--tls-key', pki.f('control.key'), '--tls-ca', pki.f('ca.crt')], missing],
    [['--tls-cert', garbage, '--tls-key', pki.f('control.key'), '--tls-ca', pki.f('ca.crt')], garbage],
    [['--tls-cert', pki.f('control.crt'), '--tls-key', garbage, '--tls-ca', pki.f('ca.crt')], garbage],
    [['--tls-cert', pki.f('control.crt'), '--tls-key', pki.f('control.key'), '--tls-ca', garbage], garbage],
    [['--tls-cert', pki.f('control.crt'), '--tls-key', pki.f('worker.key'), '--tls-ca', pki.f('ca.crt')], pki.f('worker.key')],
  ];
  for (const [flags, file] of cases) {
    for (const [who, r] of [['control', await ctl(flags)], ['worker', await wrk(flags)]]) {
      assert.equal(r.code, 1, `${who} ${flags.join(' ')}: exit ${r.code} ${r.signal || ''} ${r.stderr}`);
      assert.ok(r.stderr.includes(file), `${who}: error names ${file}: ${r.stderr}`);
      assert.ok(!/Sanitizer|runtime error/.test(r.stderr), r.stderr);
    }
  }
  // TLS flags want tls+tcp:// URLs, and tls+tcp:// wants the flags.
  let r = await ctl(pki.flags('control'), `tcp://127.0.0.1:${port}`);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /not tls\+tcp/);
  r = await ctl([]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /needs --tls-cert/);
  r = await wrk(pki.flags('worker'), `tcp://127.0.0.1:${port}`);
  assert.equal(r.code, 2, r.stderr);
  r = await ctl(['--tls-cert', pki.f('control.crt')]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /go together/);
});
