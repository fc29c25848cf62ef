// Tests: the `run` command — the `listening on` line, port 0 and fixed ports,
// loopback binding, clean exit on SIGTERM/SIGINT (even with a hung request),
// argument errors, and repository hygiene of test/emulator.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { startEmulator, request } = require('../support/harness');

const ROOT = path.join(__dirname, '..');

test('run --port 0 prints exactly `listening on 127.0.0.1:PORT` and serves on that port', async () => {
  const emu = await startEmulator();
  try {
    assert.match(emu.line, /^listening on 127\.0\.0\.1:\d+$/);
    assert.ok(emu.port > 0);
    const r = await emu.admin('GET', '/__emulator/info');
    assert.equal(r.json.baseUrl, `http://127.0.0.1:${emu.port}`);
    assert.equal(emu.stdout(), `${emu.line}\n`);
  } finally {
    const exit = await emu.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
  }
});

test('run --port PORT listens on that port, loopback only', async () => {
  const free = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const emu = await startEmulator(['--port', String(free)]);
  try {
    assert.equal(emu.port, free);
    assert.equal(emu.line, `listening on 127.0.0.1:${free}`);
    const external = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (external) {
      await assert.rejects(new Promise((resolve, reject) => {
        const sock = net.connect(free, external.address, () => { sock.destroy(); resolve(); });
        sock.on('error', reject);
      }));
    }
  } finally {
    await emu.stop();
  }
});

test('SIGTERM and SIGINT exit cleanly (0) even with a hung request and idle keep-alive sockets', async () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    const emu = await startEmulator(['--port', '0', '--merchant', 'test_sk_x']);
    await emu.admin('POST', '/__emulator/faults', { match: { pathPrefix: '/v1/payments/' }, fault: { hang: true } });
    const hung = request(emu.port, { path: '/v1/payments/x', headers: { Authorization: 'Basic ' + Buffer.from('test_sk_x:').toString('base64') } }).catch((e) => e);
    const idle = net.connect(emu.port, '127.0.0.1');
    await new Promise((r) => idle.once('connect', r));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const exit = await emu.stop(signal);
    assert.deepEqual(exit, { code: 0, signal: null }, signal);
    assert.ok(Date.now() - t0 < 2000, `${signal} took too long`);
    assert.ok((await hung) instanceof Error);
    idle.destroy();
  }
});

test('bad arguments exit with status 2; a busy port exits with status 1', async () => {
  for (const args of [['--port', 'abc'], ['--port', '70000'], ['--bogus']]) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'run'), ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
  }
  const emu = await startEmulator();
  try {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'run'), '--port', String(emu.port)], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 1);
  } finally {
    await emu.stop();
  }
});

test('run is executable with a node shebang', () => {
  const st = fs.statSync(path.join(ROOT, 'run'));
  assert.ok(st.mode & 0o111);
  assert.ok(fs.readFileSync(path.join(ROOT, 'run'), 'utf8').startsWith('#!/usr/bin/env node\n'));
});

test('no emulator or emulator-bench file mentions the real Toss API host, and every module starts with a comment', () => {
  const banned = ['api', 'tosspayments', 'com'].join('.');
  const files = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(ROOT);
  walk(path.join(ROOT, '..', '..', 'bench', 'emulator'));
  for (const f of files) assert.ok(!fs.readFileSync(f, 'utf8').includes(banned), f);
  for (const f of files.filter((x) => x.endsWith('.js'))) {
    assert.match(fs.readFileSync(f, 'utf8'), /^\/\/ \S/, `${f} starts with a comment`);
  }
});
