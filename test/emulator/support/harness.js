// Test harness for the emulator tests (kept out of test/ so `node --test
// test/emulator/test/` does not run it as a test file): starts `run --port 0`
// as a child process, and offers a small HTTP client plus a Toss client
// (Basic auth, billing helpers) on top of it.
'use strict';

const { spawn } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const crypto = require('node:crypto');

const RUN = path.join(__dirname, '..', 'run');

let counter = 0;
/** A unique id usable as orderId / customerKey: prefix-<n>-<random>. */
function uid(prefix = 'id') {
  counter++;
  return `${prefix}-${counter}-${crypto.randomBytes(4).toString('hex')}`;
}

function basic(secretKey) {
  return 'Basic ' + Buffer.from(secretKey + ':').toString('base64');
}

/**
 * One HTTP request (new connection each time). Resolves {status, headers, text, json};
 * rejects on socket errors and on `timeout` (ms) with err.code === 'TIMEOUT'.
 */
function request(port, { method = 'GET', path: p, headers = {}, body, timeout }) {
  return new Promise((resolve, reject) => {
    let data = '';
    const h = { ...headers };
    if (body !== undefined) {
      data = typeof body === 'string' ? body : JSON.stringify(body);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    }
    h['Content-Length'] = Buffer.byteLength(data);
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    if (timeout) {
      req.setTimeout(timeout, () => req.destroy(Object.assign(new Error('client timeout'), { code: 'TIMEOUT' })));
    }
    req.on('error', reject);
    req.end(data);
  });
}

class TossClient {
  constructor(emu, secretKey, { register = true, clientKey, name } = {}) {
    this.emu = emu;
    this.secretKey = secretKey;
    this.auth = basic(secretKey);
    this.ready = register ? this.register({ clientKey, name }) : Promise.resolve(null);
  }

  /** Register this merchant with the emulator (again, e.g. after a reset). Resolves the admin answer. */
  register(extra = {}) {
    const def = { secretKey: this.secretKey };
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) def[k] = v;
    this.ready = this.emu.admin('POST', '/__emulator/merchants', def).then((r) => {
      if (r.status === 200) this.merchant = r.json;
      return r;
    });
    return this.ready;
  }

  async call(method, p, body, headers = {}) {
    await this.ready;
    return this.emu.request({ method, path: p, body, headers: { Authorization: this.auth, ...headers } });
  }

  issue(authKey, customerKey, headers) {
    return this.call('POST', '/v1/billing/authorizations/issue', { authKey, customerKey }, headers);
  }

  approve(billingKey, body, headers) {
    return this.call('POST', `/v1/billing/${encodeURIComponent(billingKey)}`, body, headers);
  }

  deleteBillingKey(billingKey, headers) {
    return this.call('DELETE', `/v1/billing/${encodeURIComponent(billingKey)}`, undefined, headers);
  }

  payment(paymentKey, headers) {
    return this.call('GET', `/v1/payments/${encodeURIComponent(paymentKey)}`, undefined, headers);
  }

  order(orderId, headers) {
    return this.call('GET', `/v1/payments/orders/${encodeURIComponent(orderId)}`, undefined, headers);
  }

  cancel(paymentKey, body, headers) {
    return this.call('POST', `/v1/payments/${encodeURIComponent(paymentKey)}/cancel`, body, headers);
  }

  keyIn(body, headers) {
    return this.call('POST', '/v1/billing/authorizations/card', body, headers);
  }

  /** GET /v1/transactions with the given query fields (undefined ones left out). */
  transactions(query, headers) {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined)).toString();
    return this.call('GET', `/v1/transactions?${q}`, undefined, headers);
  }

  /** A DONE payment of a fresh billing key; resolves the Payment object. */
  async paid(extra = {}, billingOpts = {}) {
    const b = await this.billing(billingOpts);
    const r = await this.approve(b.billingKey, TossClient.charge(b, extra));
    if (r.status !== 200) throw new Error(`approve failed: ${r.status} ${r.text}`);
    return r.json;
  }

  /** authKey for a card of this merchant through the admin shortcut. */
  async authKey({ customerKey, cardNumber, billingKey, ...extra } = {}) {
    await this.ready;
    const r = await this.emu.admin('POST', '/__emulator/auth-keys', { secretKey: this.secretKey, customerKey, cardNumber, billingKey, ...extra });
    if (r.status !== 200) throw new Error(`auth-keys failed: ${r.status} ${r.text}`);
    return r.json.authKey;
  }

  /** Register a card and issue its billing key; resolves the Billing object. */
  async billing({ customerKey = uid('cust'), cardNumber, billingKey, ...extra } = {}) {
    const authKey = await this.authKey({ customerKey, cardNumber, billingKey, ...extra });
    const r = await this.issue(authKey, customerKey);
    if (r.status !== 200) throw new Error(`issue failed: ${r.status} ${r.text}`);
    return r.json;
  }

  /** A valid approve body for a Billing object, with overrides. */
  static charge(billing, extra = {}) {
    return { customerKey: billing.customerKey, amount: 4900, orderId: uid('order'), orderName: '토스 프라임 구독', ...extra };
  }
}

class Emulator {
  constructor(proc, port, line) {
    this.proc = proc;
    this.port = port;
    this.line = line;
    this.base = `http://127.0.0.1:${port}`;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  request(opts) {
    return request(this.port, opts);
  }

  admin(method, p, body) {
    return request(this.port, { method, path: p, body });
  }

  /**
   * A Toss client for a secret key (default: a fresh one). The key is registered as a merchant first, since
   * the emulator answers unknown keys with 401 UNAUTHORIZED_KEY; opts.register false leaves it unregistered.
   */
  client(secretKey = `test_sk_${uid('m').replace(/-/g, '')}`, opts = {}) {
    return new TossClient(this, secretKey, opts);
  }

  reset() {
    return this.admin('POST', '/__emulator/reset');
  }

  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }
}

/** Start `run --port 0` and wait for its `listening on` line. */
function startEmulator(args = ['--port', '0']) {
  const env = { ...process.env };
  delete env.TOSS_EMULATOR_FLAGS; // the tests choose their own flags
  const proc = spawn(process.execPath, [RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const onExit = (code) => reject(new Error(`emulator exited (${code}) before listening: ${stderr}`));
    proc.once('exit', onExit);
    proc.stdout.on('data', (d) => {
      out += d;
      const i = out.indexOf('\n');
      if (i < 0) return;
      proc.removeListener('exit', onExit);
      const line = out.slice(0, i);
      const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
      if (!m) return reject(new Error(`unexpected first line: ${line}`));
      const emu = new Emulator(proc, Number(m[1]), line);
      emu.stdout = () => out;
      emu.stderr = () => stderr;
      resolve(emu);
    });
  });
}

/**
 * A loopback HTTP server that records webhook deliveries. `answer(hit, n)` picks
 * the status for the n-th (1-based) delivery (default 200); returning null hangs.
 * Resolves {url, hits: [{at, headers, body}], waitFor(count, ms), close()}.
 */
function startReceiver(answer = () => 200) {
  const hits = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const hit = { at: Date.now(), method: req.method, url: req.url, headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
      hits.push(hit);
      for (const w of waiters.slice()) if (hits.length >= w.count) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
      const status = answer(hit, hits.length);
      if (status === null) return; // hang
      res.writeHead(status, { 'Content-Type': 'text/plain' });
      res.end(String(status));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}/toss/webhook`,
        hits,
        waitFor(count, ms = 5000) {
          if (hits.length >= count) return Promise.resolve();
          return new Promise((res, rej) => {
            const w = { count, resolve: () => { clearTimeout(t); res(); } };
            const t = setTimeout(() => rej(new Error(`only ${hits.length} of ${count} webhook deliveries after ${ms} ms`)), ms);
            waiters.push(w);
          });
        },
        close() {
          server.closeAllConnections();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}

/** Poll `fn` until it returns a truthy value (or time out). */
async function until(fn, ms = 5000, step = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, step));
  }
}

module.exports = { startEmulator, startReceiver, until, request, basic, uid, TossClient };
