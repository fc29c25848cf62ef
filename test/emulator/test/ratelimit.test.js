// Tests: throttling — a token bucket per merchant (perSecond, burst); a
// throttled request gets 429 TOO_MANY_REQUESTS (or the configured code, e.g.
// 403 FORBIDDEN_CONSECUTIVE_REQUEST) with Retry-After and is not executed;
// the --rate-limit startup flag.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, TossClient } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());
afterEach(() => emu.admin('POST', '/__emulator/config', { rateLimit: null }));

test('over the rate limit a merchant gets 429 TOO_MANY_REQUESTS with Retry-After; nothing is executed', async () => {
  const c = emu.client();
  const b = await c.billing();
  const cfg = await emu.admin('POST', '/__emulator/config', { rateLimit: { perSecond: 2, burst: 5 } });
  assert.deepEqual(cfg.json.rateLimit, { perSecond: 2, burst: 5, code: 'TOO_MANY_REQUESTS', status: 429 });
  const results = [];
  for (let i = 0; i < 7; i++) results.push(await c.approve(b.billingKey, TossClient.charge(b)));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 429, 429]);
  const throttled = results[5];
  assert.equal(throttled.json.code, 'TOO_MANY_REQUESTS');
  assert.equal(typeof throttled.json.message, 'string');
  assert.ok(Number(throttled.headers['retry-after']) >= 1);
  const orderId = JSON.parse((await emu.admin('GET', '/__emulator/requests?limit=1')).text)[0].body.orderId;
  assert.equal((await emu.admin('GET', '/__emulator/requests?limit=1')).json[0].outcome, 'throttled');
  await emu.admin('POST', '/__emulator/config', { rateLimit: null });
  assert.equal((await c.order(orderId)).status, 404, 'the throttled charge did not happen');
});

test('buckets are per merchant and refill at perSecond', async () => {
  const a = emu.client();
  const z = emu.client();
  await emu.admin('POST', '/__emulator/config', { rateLimit: { perSecond: 10, burst: 2 } });
  assert.deepEqual([(await a.payment('x')).status, (await a.payment('x')).status, (await a.payment('x')).status], [404, 404, 429]);
  assert.equal((await z.payment('x')).status, 404, 'another merchant has its own bucket');
  await new Promise((r) => setTimeout(r, 250));
  assert.equal((await a.payment('x')).status, 404, 'refilled after 250 ms at 10/s');
  // Admin requests are never throttled.
  for (let i = 0; i < 5; i++) assert.equal((await emu.admin('GET', '/__emulator/info')).status, 200);
});

test('the throttled answer can be FORBIDDEN_CONSECUTIVE_REQUEST (403) or any code with a status', async () => {
  const c = emu.client();
  await emu.admin('POST', '/__emulator/config', { rateLimit: { perSecond: 1, burst: 1, code: 'FORBIDDEN_CONSECUTIVE_REQUEST' } });
  await c.payment('x');
  const r = await c.payment('x', { 'Accept-Language': 'en-US' });
  assert.deepEqual([r.status, r.json.code, r.json.message], [403, 'FORBIDDEN_CONSECUTIVE_REQUEST', 'Repetitive requests are not allowed. Please try again in a few minutes.']);
  for (const bad of [{ perSecond: 0 }, { perSecond: 'x' }, { perSecond: 1, burst: 0.5 }, { perSecond: 1, code: 'MY_CODE' }, { perSecond: 1, nope: 1 }]) {
    assert.equal((await emu.admin('POST', '/__emulator/config', { rateLimit: bad })).status, 400, JSON.stringify(bad));
  }
  assert.equal((await emu.admin('POST', '/__emulator/config', { rateLimit: { perSecond: 1, code: 'MY_CODE', status: 503 } })).status, 200);
});

test('--rate-limit N/s at startup (and --rate-limit-code)', async () => {
  const e = await startEmulator(['--port', '0', '--rate-limit', '3/s', '--rate-limit-code', 'FORBIDDEN_CONSECUTIVE_REQUEST']);
  try {
    const c = e.client();
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await c.payment('x')).status);
    assert.deepEqual(statuses, [404, 404, 404, 403, 403]);
    assert.deepEqual((await e.admin('GET', '/__emulator/config')).json.rateLimit, { perSecond: 3, burst: 3, code: 'FORBIDDEN_CONSECUTIVE_REQUEST', status: 403 });
  } finally {
    await e.stop();
  }
});
