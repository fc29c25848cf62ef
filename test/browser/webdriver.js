// A small W3C WebDriver client (Node standard library only) for the browser
// test: starts Debian's chromedriver on a free loopback port, opens a headless
// Chromium session with a fresh profile, and offers the few commands the test
// needs (navigate, find, type, click, frames, execute, screenshot). Every
// command has a timeout, and close() ends the session and the driver.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

function firstExisting(list) {
  return list.find((p) => p && fs.existsSync(p)) || null;
}

const CHROMIUM = firstExisting([process.env.CHROMIUM_BIN, '/usr/lib/chromium/chromium', '/usr/bin/chromium']);
const CHROMEDRIVER = firstExisting([process.env.CHROMEDRIVER_BIN, '/usr/bin/chromedriver', '/usr/lib/chromium/chromedriver']);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function call(port, method, p, body, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? '' : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, method, path: p, agent: false,
      headers: { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        let json;
        try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { json = null; }
        if (res.statusCode >= 400 || (json && json.value && json.value.error)) {
          const v = json && json.value;
          reject(new Error(`WebDriver ${method} ${p}: ${res.statusCode} ${v && v.error}: ${v && v.message}`));
        } else {
          resolve(json ? json.value : null);
        }
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`WebDriver ${method} ${p}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

class Browser {
  static async start() {
    if (!CHROMIUM || !CHROMEDRIVER) {
      throw new Error('chromium and chromedriver are needed (Debian packages chromium and chromium-driver; test/scripts/install-deps installs them)');
    }
    const port = await freePort();
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'toss-emu-chromium-'));
    const driver = spawn(CHROMEDRIVER, [`--port=${port}`, '--allowed-ips=127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    driver.stdout.on('data', (d) => { log += d; });
    driver.stderr.on('data', (d) => { log += d; });
    const b = new Browser(driver, port, profile);
    const deadline = Date.now() + 15000;
    for (;;) {
      try {
        const status = await call(port, 'GET', '/status', undefined, 2000);
        if (status && status.ready) break;
      } catch { /* not up yet */ }
      if (Date.now() > deadline || driver.exitCode !== null) {
        driver.kill('SIGKILL');
        throw new Error(`chromedriver did not start: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--disable-extensions', '--no-default-browser-check',
      `--user-data-dir=${profile}`, '--window-size=1280,900', '--lang=ko-KR'];
    const session = await call(port, 'POST', '/session', {
      capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': { binary: CHROMIUM, args }, timeouts: { pageLoad: 30000, script: 30000, implicit: 0 } } },
    }, 60000);
    b.session = session.sessionId;
    return b;
  }

  constructor(driver, port, profile) {
    this.driver = driver;
    this.port = port;
    this.profile = profile;
    this.session = null;
  }

  cmd(method, p, body) {
    return call(this.port, method, `/session/${this.session}${p}`, body);
  }

  go(url) { return this.cmd('POST', '/url', { url }); }

  url() { return this.cmd('GET', '/url'); }

  run(script, ...args) { return this.cmd('POST', '/execute/sync', { script, args }); }

  /** Wait (polling) until `find(css)` finds an element; resolves its reference. */
  async find(css, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.cmd('POST', '/element', { using: 'css selector', value: css });
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`no element ${css}: ${e.message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async type(css, text) {
    const el = await this.find(css);
    return this.cmd('POST', `/element/${el[ELEMENT]}/value`, { text });
  }

  async click(css) {
    const el = await this.find(css);
    return this.cmd('POST', `/element/${el[ELEMENT]}/click`, {});
  }

  async text(css) {
    const el = await this.find(css);
    return this.cmd('GET', `/element/${el[ELEMENT]}/text`);
  }

  async frame(css) {
    const el = await this.find(css);
    return this.cmd('POST', '/frame', { id: el });
  }

  top() { return this.cmd('POST', '/frame', { id: null }); }

  /** Poll `script` (returning a value) until `test(value)` holds. */
  async until(script, test, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    let v;
    for (;;) {
      try { v = await this.run(script); } catch { v = undefined; }
      if (test(v)) return v;
      if (Date.now() > deadline) throw new Error(`condition not met: ${script} -> ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async screenshot(file) {
    const b64 = await this.cmd('GET', '/screenshot');
    fs.writeFileSync(file, Buffer.from(b64, 'base64'));
  }

  async close() {
    try {
      if (this.session) await call(this.port, 'DELETE', `/session/${this.session}`, undefined, 10000);
    } catch { /* the driver goes anyway */ }
    this.driver.kill('SIGTERM');
    await new Promise((r) => { if (this.driver.exitCode !== null) r(); else { this.driver.once('exit', r); setTimeout(r, 3000); } });
    if (this.driver.exitCode === null) this.driver.kill('SIGKILL');
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

module.exports = { Browser, CHROMIUM, CHROMEDRIVER };
