// Tests: settings — GET/POST /__emulator/config and its validation, the
// startup flags (--latency-ms, --latency-jitter-ms, --fault-rate,
// --fault-kind, --seed, --webhook-url, --webhook-time-scale,
// --transaction-lag-ms), reset coming back to the startup values, the
// TOSS_EMULATOR_FLAGS environment variable, and bad flags.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { startEmulator, request } = require('../support/harness');

const RUN = path.join(__dirname, '..', 'run');

async function withEmulator(args, fn) {
  const emu = await startEmulator(['--port', '0', ...args]);
  try {
    return await fn(emu);
  } finally {
    await emu.stop();
  }
}

test('GET /__emulator/config shows the settings; POST changes them and validates; reset restores the startup values', async () => {
  await withEmulator([], async (emu) => {
    const d = (await emu.admin('GET', '/__emulator/config')).json;
    assert.deepEqual({ ...d, seed: 0 }, {
      latencyMs: 0, latencyJitterMs: 0, rateLimit: null, webhookUrl: null, webhookTimeScale: 1, webhookTimeoutMs: 10000, transactionLagMs: 0,
      lookupLagMs: 0, abortedOrderIdReuse: true, permissiveKeys: false, seed: 0,
    });
    assert.ok(Number.isInteger(d.seed), 'the random seed in use is shown');
    for (const bad of [{ nope: 1 }, { latencyMs: -1 }, { latencyMs: 'x' }, { latencyMs: 700000 }, { seed: 1.5 }, { transactionLagMs: -5 }, [1]]) {
      assert.equal((await emu.admin('POST', '/__emulator/config', bad)).status, 400, JSON.stringify(bad));
    }
    const set = await emu.admin('POST', '/__emulator/config', { latencyMs: 5, seed: 77 });
    assert.deepEqual([set.json.latencyMs, set.json.seed], [5, 77]);
    await emu.reset();
    assert.equal((await emu.admin('GET', '/__emulator/config')).json.latencyMs, 0);
  });
  await withEmulator(['--latency-ms', '40', '--seed', '5', '--webhook-url', 'http://127.0.0.1:9/hook', '--webhook-time-scale', '60',
    '--webhook-timeout-ms', '2000', '--transaction-lag-ms', '10'], async (emu) => {
    const startup = (await emu.admin('GET', '/__emulator/config')).json;
    assert.deepEqual(startup, {
      latencyMs: 40, latencyJitterMs: 0, rateLimit: null, webhookUrl: 'http://127.0.0.1:9/hook', webhookTimeScale: 60,
      webhookTimeoutMs: 2000, transactionLagMs: 10, lookupLagMs: 0, abortedOrderIdReuse: true, permissiveKeys: false, seed: 5,
    });
    await emu.admin('POST', '/__emulator/config', { latencyMs: 0, webhookUrl: null, seed: 6 });
    await emu.reset();
    assert.deepEqual((await emu.admin('GET', '/__emulator/config')).json, startup);
  });
});

test('--latency-ms and --latency-jitter-ms delay every /v1 request', async () => {
  await withEmulator(['--latency-ms', '150', '--latency-jitter-ms', '50'], async (emu) => {
    const c = emu.client();
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      assert.equal((await c.payment('x')).status, 404);
      const ms = Date.now() - t0;
      assert.ok(ms >= 145 && ms < 350, `${ms} ms`);
    }
  });
});

test('--fault-rate with --fault-kind injects faults into /v1 requests only; they survive reset and show as startup faults', async () => {
  await withEmulator(['--fault-rate', '1', '--fault-kind', 'html502'], async (emu) => {
    const c = emu.client('test_sk_x');
    assert.equal((await c.payment('x')).status, 502);
    assert.equal((await emu.admin('GET', '/__emulator/info')).status, 200);
    const win = await emu.request({ path: '/billing-auth?clientKey=test_ck_x&customerKey=cust-1&successUrl=http://a.example/s&failUrl=http://a.example/f' });
    assert.equal(win.status, 200);
    const faults = (await emu.admin('GET', '/__emulator/faults')).json;
    assert.deepEqual(faults.map((f) => [f.match, f.fault, f.rate, f.source]), [[{ pathPrefix: '/v1/' }, { html502: true }, 1, 'startup']]);
    await emu.admin('DELETE', '/__emulator/faults');
    assert.equal((await c.payment('x')).status, 404);
    await emu.reset();
    await c.register();
    assert.equal((await c.payment('x')).status, 502, 'reset restores the startup faults');
  });
  await withEmulator(['--fault-rate', '1'], async (emu) => {
    const r = await emu.client().payment('x');
    assert.deepEqual([r.status, r.json.code], [500, 'FAILED_INTERNAL_SYSTEM_PROCESSING']);
  });
  await withEmulator(['--fault-rate', '0.8', '--fault-kind', 'code=PROVIDER_ERROR', '--fault-kind', 'code=COMMON_ERROR', '--seed', '3'], async (emu) => {
    const c = emu.client();
    const count = {};
    for (let i = 0; i < 300; i++) {
      const code = (await c.payment('x')).json.code;
      count[code] = (count[code] || 0) + 1;
    }
    assert.deepEqual(Object.keys(count).sort(), ['COMMON_ERROR', 'NOT_FOUND_PAYMENT', 'PROVIDER_ERROR']);
    assert.ok(count.NOT_FOUND_PAYMENT > 30 && count.NOT_FOUND_PAYMENT < 90, JSON.stringify(count)); // ~20%
    assert.ok(count.PROVIDER_ERROR > 90 && count.COMMON_ERROR > 90, JSON.stringify(count)); // ~40% each
  });
});

test('--seed makes --fault-rate reproducible across runs', async () => {
  const run = () => withEmulator(['--fault-rate', '0.5', '--fault-kind', 'code=PROVIDER_ERROR', '--seed', '42'], async (emu) => {
    const c = emu.client();
    const out = [];
    for (let i = 0; i < 60; i++) out.push((await c.payment('x')).status);
    return out.join('');
  });
  const a = await run();
  assert.equal(await run(), a);
  assert.match(a, /400/);
  assert.match(a, /404/);
});

test('TOSS_EMULATOR_FLAGS adds flags before the command line', async () => {
  const proc = spawn(process.execPath, [RUN, '--port', '0'], { env: { ...process.env, TOSS_EMULATOR_FLAGS: ' --latency-ms 30  --seed 9 ' }, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const port = await new Promise((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (d) => { out += d; const m = /listening on 127\.0\.0\.1:(\d+)\n/.exec(out); if (m) resolve(Number(m[1])); });
      proc.once('exit', reject);
    });
    const cfg = (await request(port, { path: '/__emulator/config' })).json;
    assert.deepEqual([cfg.latencyMs, cfg.seed], [30, 9]);
  } finally {
    proc.kill('SIGTERM');
  }
});

test('bad flags exit with status 2 and say why', () => {
  const cases = [['--fault-kind', 'reset'], ['--fault-rate', '0'], ['--fault-rate', '1.5'], ['--fault-rate', '1', '--fault-kind', 'bogus'],
    ['--webhook-url', 'http://example.org/hook'], ['--rate-limit', 'fast'], ['--latency-ms', '-5'], ['--seed', 'x'],
    ['--webhook-time-scale', '0'], ['--rate-limit-code', 'X'], ['--latency-ms']];
  for (const args of cases) {
    const r = spawnSync(process.execPath, [RUN, ...args], { encoding: 'utf8', env: { ...process.env, TOSS_EMULATOR_FLAGS: '' } });
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /usage: run/);
  }
  const help = spawnSync(process.execPath, [RUN, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--fault-rate/);
});
