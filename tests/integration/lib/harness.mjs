// harness.mjs — starts llmesh's real processes on loopback for the integration tests.
//
// Each test gets an Env: a short temp dir under /tmp (ipc socket paths must stay < 100
// bytes), free loopback ports, processes spawned with stdout+stderr to one log file each,
// readiness by polling (never blind sleeps), and a teardown that sends SIGTERM, waits,
// then SIGKILLs, and checks the exit codes the contract promises (0 on SIGTERM). When a
// test fails, or a process exits badly, the tail of every log is printed.
//
//   import { itest } from './lib/harness.mjs';
//   itest('name', async (env) => {
//     const a = await env.startMock('gpt-4-1');
//     const cluster = await env.startCluster({ model_list: [...] });
//   });

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SOURCE_ROOT = path.resolve(here, '..', '..', '..');
export const BUILD_DIR = path.resolve(process.env.LLMESH_BUILD_DIR || path.join(SOURCE_ROOT, 'build'));

// Sanitizer builds (meson test --setup asan sets ASAN_OPTIONS) run ~3x slower.
export const SLOW = process.env.LLMESH_SLOW ? Number(process.env.LLMESH_SLOW)
  : (process.env.ASAN_OPTIONS || process.env.UBSAN_OPTIONS ? 3 : 1);

export const BIN = {
  control: path.join(BUILD_DIR, 'controlplane', 'llmesh-control'),
  ctl: path.join(BUILD_DIR, 'controlplane', 'llmesh-ctl'),
  worker: path.join(BUILD_DIR, 'dataplane', 'llmesh-worker'),
  mock: path.join(BUILD_DIR, 'tests', 'mock', 'llmesh-mock-provider'),
};

export const MASTER_KEY = 'sk-test-master-7f3c9a';
export const PROVIDER_KEY = 'sk-mock-provider-secret-5b81e2'; // given via os.environ/MOCK_KEY
export const LITERAL_KEY = 'sk-literal-provider-key-c0ffee';  // written into the YAML

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value (returned) or throws after timeoutMs. */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs * SLOW;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs * SLOW} ms waiting for ${what} (last: ${detail})`);
    }
    await sleep(intervalMs);
  }
}

// Ports handed out by this process, so two allocations never collide with each other.
const usedPorts = new Set();

/** A free loopback TCP port: bind port 0, read it, release it. */
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.unref();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free port');
}

/** Resolves true when something accepts a TCP connection on 127.0.0.1:port. */
export function portOpen(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => { s.destroy(); resolve(false); });
    s.setTimeout(1000, () => { s.destroy(); resolve(false); });
  });
}

/** HTTP request with fetch; never throws on HTTP status. Returns {status, headers, text, json}. */
export async function http(method, url, { headers = {}, body, timeoutMs = 10000 } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeoutMs * SLOW) };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!Object.keys(init.headers).some((h) => h.toLowerCase() === 'content-type')) {
      init.headers['content-type'] = 'application/json';
    }
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

/** Asserts an OpenAI-shaped error body: {"error":{"message","type",...}}. */
export function assertOpenAIError(res, status, kind) {
  const ctx = `HTTP ${res.status} body=${JSON.stringify(res.text).slice(0, 400)}`;
  if (status !== undefined) {
    if (Array.isArray(status)) assert.ok(status.includes(res.status), `status in ${status}: ${ctx}`);
    else assert.equal(res.status, status, `status: ${ctx}`);
  }
  assert.ok(res.json && typeof res.json === 'object', `error body is JSON: ${ctx}`);
  const err = res.json.error;
  assert.ok(err && typeof err === 'object', `error object: ${ctx}`);
  assert.equal(typeof err.message, 'string', `error.message string: ${ctx}`);
  assert.ok(err.message.length > 0, `error.message non-empty: ${ctx}`);
  assert.equal(typeof err.type, 'string', `error.type string: ${ctx}`);
  assert.ok(err.type.length > 0, `error.type non-empty: ${ctx}`);
  if (kind !== undefined) {
    const kinds = Array.isArray(kind) ? kind : [kind];
    assert.ok(kinds.includes(err.type) || kinds.includes(err.code),
      `error type or code in ${JSON.stringify(kinds)}: ${ctx}`);
  }
  return err;
}

/** Asserts that text reveals no provider address or key. */
export function assertNoLeak(text, { ports = [], keys = [PROVIDER_KEY, LITERAL_KEY] } = {}) {
  const t = String(text);
  assert.ok(!t.includes('127.0.0.1'), `no host in ${t}`);
  assert.ok(!/https?:\/\//i.test(t), `no URL in ${t}`);
  for (const p of ports) assert.ok(!new RegExp(`(^|\\D)${p}(\\D|$)`).test(t), `no port ${p} in ${t}`);
  for (const k of keys) assert.ok(!t.includes(k), `no provider key in ${t}`);
}

// ------------------------------------------------------------------ YAML config

function yamlScalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  const plain = /^[A-Za-z_/][A-Za-z0-9_./:+@-]*$/.test(s) && !/: /.test(s) &&
    !/^(true|false|null|yes|no|on|off|y|n|~)$/i.test(s);
  return plain ? s : JSON.stringify(s);
}

/** Block-style YAML, the way LiteLLM configs are usually written. */
export function toYaml(value, indent = 0) {
  const pad = ' '.repeat(indent);
  const isObj = (v) => v && typeof v === 'object';
  if (Array.isArray(value)) {
    if (value.length === 0) return `${pad}[]\n`;
    let out = '';
    for (const item of value) {
      if (isObj(item) && !Array.isArray(item) && Object.keys(item).length) {
        const body = toYaml(item, indent + 2);
        out += `${pad}- ${body.slice(indent + 2)}`;
      } else if (Array.isArray(item)) {
        out += `${pad}-\n${toYaml(item, indent + 2)}`;
      } else {
        out += `${pad}- ${yamlScalar(item)}\n`;
      }
    }
    return out;
  }
  if (isObj(value)) {
    let out = '';
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      if (isObj(v) && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
        out += `${pad}${yamlScalar(k)}:\n${toYaml(v, indent + 2)}`;
      } else if (isObj(v)) {
        out += `${pad}${yamlScalar(k)}: ${Array.isArray(v) ? '[]' : '{}'}\n`;
      } else {
        out += `${pad}${yamlScalar(k)}: ${yamlScalar(v)}\n`;
      }
    }
    return out;
  }
  return `${pad}${yamlScalar(value)}\n`;
}

/** A model_list entry. params: litellm_params; info: model_info (optional). */
export function deployment(modelName, params, info) {
  const e = { model_name: modelName, litellm_params: params };
  if (info) e.model_info = info;
  return e;
}

// ------------------------------------------------------------------ processes

// Every live child, so they die with us even when a test run is interrupted (meson's
// timeout sends SIGTERM; a closed pipe or an uncaught error ends node).
const live = new Set();
function killAll() { for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } } }
process.on('exit', killAll);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => { killAll(); process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15)); });
}

class Proc {
  constructor(env, name, bin, args, extraEnv) {
    this.name = name;
    this.bin = bin;
    this.args = args;
    this.logPath = path.join(env.dir, `${name}.log`);
    this.expectExit = null; // set when the test kills it on purpose
    const fd = fs.openSync(this.logPath, 'a');
    fs.writeSync(fd, `# ${[bin, ...args].join(' ')}\n`);
    this.child = spawn(bin, args, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...extraEnv },
    });
    fs.closeSync(fd);
    this.pid = this.child.pid;
    this.exit = null; // {code, signal} once exited
    live.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.child.once('error', (e) => {
        this.exit = { code: null, signal: null, error: e.message };
        resolve(this.exit);
      });
    });
  }

  get running() { return this.exit === null; }

  /** SIGTERM, wait up to graceMs (x SLOW), then SIGKILL. Returns {code, signal, killed}. */
  async stop(graceMs = 3000) {
    if (this.stopResult) return this.stopResult;
    if (!this.running) return { ...this.exit, killed: false, early: true };
    this.child.kill('SIGTERM');
    const t = setTimeout(() => { if (this.running) { this.killed = true; this.child.kill('SIGKILL'); } },
      graceMs * SLOW);
    const e = await this.exited;
    clearTimeout(t);
    this.stopResult = { ...e, killed: !!this.killed };
    return this.stopResult;
  }

  /** SIGKILL now (the test's own doing: no exit-code check). */
  async kill9() {
    this.expectExit = 'killed';
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  log() { try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; } }

  /** The log as JSON objects (common/log.h: one per line); throws on a line that is not. */
  jsonLog() {
    const out = [];
    for (const line of this.log().split('\n')) {
      if (!line || line.startsWith('# ')) continue; // our own command-line header
      try { out.push(JSON.parse(line)); } catch { throw new Error(`${this.name}: log line is not JSON: ${line}`); }
    }
    return out;
  }

  tail(n = 40) {
    const lines = this.log().split('\n');
    return lines.slice(Math.max(0, lines.length - n - 1)).join('\n');
  }
}

/** Runs a command to completion. Returns {code, signal, stdout, stderr}. */
export function run(bin, args, { timeoutMs = 10000, env } = {}) {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs * SLOW, env: { ...process.env, ...env }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        let code = 0, signal = null;
        if (err) { code = typeof err.code === 'number' ? err.code : null; signal = err.signal || null; }
        resolve({ code, signal, stdout, stderr, error: err && typeof err.code !== 'number' ? err.message : undefined });
      });
  });
}

export class Mock {
  constructor(proc, port, name) {
    this.proc = proc;
    this.port = port;
    this.name = name;
    this.base = `http://127.0.0.1:${port}`;
    this.apiBase = `${this.base}/v1`;
  }

  /** The reply content the mock sends unless scripted. */
  get hello() { return `[${this.name}] Hello from the mock.`; }

  async post(p, body) {
    const r = await http('POST', this.base + p, { body });
    assert.ok(r.status >= 200 && r.status < 300, `mock ${this.name} ${p}: HTTP ${r.status} ${r.text}`);
    return r.json;
  }

  faults(...fs_) { return this.post('/mock/faults', { faults: fs_ }); }
  setDefault(f) { return this.post('/mock/default', f); }
  reset() { return this.post('/mock/reset', {}); }

  async stats() {
    const r = await http('GET', this.base + '/mock/stats');
    assert.equal(r.status, 200, `mock ${this.name} /mock/stats: ${r.text}`);
    return r.json;
  }
}

/** What the mock recorded about the last request: {model, authorization, body, headers}. */
export function lastRequest(stats) {
  const lr = stats.last_request || {};
  let body = lr.body ?? lr.json;
  if (typeof body === 'string') { try { body = JSON.parse(body); } catch { /* keep string */ } }
  const headers = {};
  for (const [k, v] of Object.entries(lr.headers || {})) headers[k.toLowerCase()] = v;
  return {
    raw: lr,
    body,
    headers,
    model: (body && typeof body === 'object' ? body.model : undefined) ?? lr.model,
    authorization: headers.authorization ?? lr.authorization,
  };
}

export class Cluster {
  constructor(env) { this.env = env; this.workers = []; }

  get worker() { return this.workers[0]; }

  /** `llmesh-ctl --data-dir D status --json`, parsed. Throws when it fails. */
  async status() {
    const r = await run(BIN.ctl, ['--data-dir', this.dataDir, 'status', '--json'], { timeoutMs: 5000 });
    if (r.code !== 0) throw new Error(`llmesh-ctl status exited ${r.code} ${r.signal || ''}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout);
  }
}

export class Worker {
  constructor(proc, port, region) {
    this.proc = proc;
    this.port = port;
    this.region = region;
    this.base = `http://127.0.0.1:${port}`;
    this.listen = `127.0.0.1:${port}`;
  }

  chat(body, { key = MASTER_KEY, headers = {}, timeoutMs } = {}) {
    const h = { ...headers };
    if (key !== null) h.authorization = `Bearer ${key}`;
    return http('POST', this.base + '/v1/chat/completions', { headers: h, body, timeoutMs });
  }

  async metrics() {
    const r = await http('GET', this.base + '/metrics');
    assert.equal(r.status, 200, `/metrics: ${r.status}`);
    return r.text;
  }
}

/** Sum of all samples of a metric in Prometheus text format (any labels). NaN if absent. */
export function metricSum(text, name) {
  let sum = NaN;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[3]);
  }
  return sum;
}

export const hello = (name) => `[${name}] Hello from the mock.`;

export class Env {
  constructor(title) {
    this.title = title;
    this.dir = fs.mkdtempSync('/tmp/lmit-');
    this.procs = [];
    this.seq = 0;
  }

  spawn(name, bin, args, extraEnv = {}) {
    if (!fs.existsSync(bin)) throw new Error(`binary not built: ${bin} (LLMESH_BUILD_DIR=${BUILD_DIR})`);
    const p = new Proc(this, name, bin, args, extraEnv);
    this.procs.push(p);
    return p;
  }

  /** Fails fast when a process died while we waited for it. */
  async waitReady(proc, fn, what, timeoutMs) {
    return waitFor(async () => {
      if (!proc.running) throw new Error(`${proc.name} exited early: ${JSON.stringify(proc.exit)}`);
      return fn();
    }, { timeoutMs, what: `${proc.name}: ${what}` }).catch((e) => {
      if (!proc.running) e.message += ` (${proc.name} exited ${JSON.stringify(proc.exit)})`;
      throw e;
    });
  }

  /** Starts `llmesh-mock-provider --listen 127.0.0.1:PORT --name NAME`, waits until it accepts. */
  async startMock(name) {
    const port = await freePort();
    const proc = this.spawn(`mock-${name}`, BIN.mock, ['--listen', `127.0.0.1:${port}`, '--name', name]);
    await this.waitReady(proc, () => portOpen(port), `port ${port} accepting`, 5000);
    return new Mock(proc, port, name);
  }

  /** Writes a config object (or raw YAML text) to DIR/name, returns its path. */
  writeConfig(config, name = 'config.yaml') {
    const p = path.join(this.dir, name);
    fs.writeFileSync(p, typeof config === 'string' ? config : toYaml(config));
    return p;
  }

  /** A config with our master key and the given models. */
  config({ model_list, router_settings = {}, general_settings = {} }) {
    return {
      model_list,
      router_settings: { num_retries: 2, timeout: 5, allowed_fails: 1000, cooldown_time: 30, ...router_settings },
      // Active probes off unless a test asks: a probe would consume scripted faults.
      general_settings: { master_key: MASTER_KEY, background_health_checks: false, ...general_settings },
    };
  }

  /** Starts llmesh-control and waits until `llmesh-ctl status --json` answers. */
  async startControl(cluster, { name = 'control' } = {}) {
    const args = ['--config', cluster.configPath, '--data-dir', cluster.dataDir,
      '--workers-url', `tcp://127.0.0.1:${cluster.cpPort}`,
      '--telemetry-url', `tcp://127.0.0.1:${cluster.tpPort}`, '--log-level', 'debug'];
    const proc = this.spawn(name, BIN.control, args, { MOCK_KEY: PROVIDER_KEY });
    cluster.control = proc;
    await this.waitReady(proc, () => cluster.status().then(() => true), 'llmesh-ctl status answering', 10000);
    return proc;
  }

  /** Starts a worker on a free port; waits for /readyz 200 unless ready === false. */
  async startWorker(cluster, { region = 'test-region', ready = true, controlPort } = {}) {
    const port = await freePort();
    const n = cluster ? cluster.workers.length + 1 : ++this.seq;
    const cp = controlPort ?? cluster.cpPort;
    const proc = this.spawn(`worker-${n}`, BIN.worker, ['--control', `tcp://127.0.0.1:${cp}`,
      '--listen', `127.0.0.1:${port}`, '--region', region, '--log-level', 'debug']);
    const w = new Worker(proc, port, region);
    if (ready) {
      await this.waitReady(proc, async () => (await http('GET', w.base + '/readyz', { timeoutMs: 2000 })).status === 200,
        'GET /readyz 200', 15000);
    } else {
      await this.waitReady(proc, async () => (await http('GET', w.base + '/healthz', { timeoutMs: 2000 })).status === 200,
        'GET /healthz 200', 10000);
    }
    if (cluster) cluster.workers.push(w);
    return w;
  }

  /** Control plane with the given config, then `workers` workers, all ready. */
  async startCluster(config, { workers = 1, region } = {}) {
    const c = new Cluster(this);
    c.configPath = this.writeConfig(this.config(config));
    c.dataDir = path.join(this.dir, 'data');
    fs.mkdirSync(c.dataDir, { recursive: true, mode: 0o700 });
    c.cpPort = await freePort();
    c.tpPort = await freePort();
    await this.startControl(c);
    for (let i = 0; i < workers; i++) await this.startWorker(c, { region });
    return c;
  }

  /** Stops every process (workers, control, then mocks); returns a list of exit problems. */
  async close() {
    const rank = (p) => (p.name.startsWith('worker') ? 0 : p.name.startsWith('control') ? 1 : 2);
    const order = [...this.procs].sort((a, b) => rank(a) - rank(b));
    const problems = [];
    for (const p of order) {
      const e = await p.stop();
      if (p.expectExit === 'killed') continue;
      if (e.early) {
        problems.push(`${p.name} (pid ${p.pid}) had exited on its own before teardown: code=${e.code} signal=${e.signal}`);
      } else if (e.killed) {
        problems.push(`${p.name} (pid ${p.pid}) did not exit within ${3 * SLOW} s of SIGTERM (SIGKILLed)`);
      } else if (e.code !== 0) {
        problems.push(`${p.name} (pid ${p.pid}) exited code=${e.code} signal=${e.signal} after SIGTERM (contract: 0)`);
      }
    }
    // Logs are one JSON object per line (DEVELOPERS.md); sanitizer reports fail this too.
    for (const p of order) {
      try { p.jsonLog(); } catch (err) { problems.push(err.message.slice(0, 500)); }
    }
    return problems;
  }

  dumpLogs(header) {
    const out = [`\n===== ${header}: ${this.title} — logs in ${this.dir}`];
    for (const p of this.procs) {
      out.push(`----- ${p.name} (pid ${p.pid}, exit ${JSON.stringify(p.exit)}) — tail of ${p.logPath}`);
      out.push(p.tail(40));
    }
    process.stderr.write(out.join('\n') + '\n');
  }
}

/**
 * test() with an Env: processes are always stopped; exit codes are checked; logs are
 * printed on failure; the temp dir is removed on success (kept on failure).
 */
export function itest(name, opts, fn) {
  if (typeof opts === 'function') { fn = opts; opts = {}; }
  return test(name, { timeout: 110000 * SLOW, ...opts }, async (t) => {
    const env = new Env(name);
    let failure = null;
    try {
      await fn(env, t);
    } catch (e) {
      failure = e;
    }
    const problems = await env.close();
    if (failure || problems.length) {
      env.dumpLogs(failure ? 'FAILED' : 'BAD EXIT');
      if (problems.length) process.stderr.write(`exit problems:\n  ${problems.join('\n  ')}\n`);
    } else if (!process.env.LLMESH_KEEP_TMP) {
      fs.rmSync(env.dir, { recursive: true, force: true });
    }
    if (failure) throw failure;
    assert.deepEqual(problems, [], 'every process exits 0 on SIGTERM and logs JSON lines');
  });
}
