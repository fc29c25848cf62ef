// Tests: the fault kinds and controls added on top of the first fault set —
// faults by rate (seedable), per-request faults from the X-Emulator-Fault
// header, random latency (jitter), global latency, oversized and trickled
// bodies, and matching by paymentKey and mId.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startEmulator, uid, TossClient } = require('../support/harness');

let emu;
let c;
let bill;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
  bill = await c.billing();
});
after(() => emu.stop());
afterEach(async () => {
  await emu.admin('DELETE', '/__emulator/faults');
  await emu.admin('POST', '/__emulator/config', { latencyMs: 0, latencyJitterMs: 0, seed: null });
});

const charge = (extra) => TossClient.charge(bill, extra);
const addFault = async (def) => {
  const r = await emu.admin('POST', '/__emulator/faults', def);
  assert.equal(r.status, 200, r.text);
  return r.json.id;
};
const isSocketError = (e) => ['ECONNRESET', 'EPIPE'].includes(e.code) || /socket hang up/.test(e.message);

async function outcomes(n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await c.payment('tbill-none')).json.code === 'PROVIDER_ERROR' ? 1 : 0);
  return out;
}

test('rate: a fault applies to a random fraction of the matching requests, reproducibly for a seed', async () => {
  await emu.admin('POST', '/__emulator/config', { seed: 12345 });
  const id = await addFault({ match: { method: 'GET' }, fault: { code: 'PROVIDER_ERROR' }, rate: 0.3 });
  const a = await outcomes(300);
  const hits = a.reduce((x, y) => x + y, 0);
  assert.ok(hits > 50 && hits < 130, `${hits} of 300 at rate 0.3`);
  assert.equal((await emu.admin('GET', '/__emulator/faults')).json[0].hits, hits);
  assert.equal((await emu.admin('GET', '/__emulator/faults')).json[0].rate, 0.3);
  // Same seed, same sequence of requests → same choices.
  await emu.admin('POST', '/__emulator/config', { seed: 12345 });
  assert.deepEqual(await outcomes(300), a);
  await emu.admin('POST', '/__emulator/config', { seed: 999 });
  assert.notDeepEqual(await outcomes(300), a);
  assert.equal((await emu.admin('GET', '/__emulator/config')).json.seed, 999);
  // A request the rate skips falls through to the next matching fault.
  await emu.admin('DELETE', `/__emulator/faults/${id}`);
  await addFault({ match: { method: 'GET' }, fault: { code: 'PROVIDER_ERROR' }, rate: 0.5 });
  await addFault({ match: { method: 'GET' }, fault: { code: 'COMMON_ERROR' } });
  const codes = new Set();
  for (let i = 0; i < 40; i++) codes.add((await c.payment('tbill-none')).json.code);
  assert.deepEqual([...codes].sort(), ['COMMON_ERROR', 'PROVIDER_ERROR']);
  for (const rate of [0, -0.1, 1.5, '0.5']) {
    assert.equal((await emu.admin('POST', '/__emulator/faults', { fault: { reset: true }, rate })).status, 400, String(rate));
  }
});

test('X-Emulator-Fault applies a fault to one request, before the registry', async () => {
  await addFault({ match: {}, fault: { code: 'COMMON_ERROR' } });
  const r = await c.approve(bill.billingKey, charge(), { 'X-Emulator-Fault': 'code=PROVIDER_ERROR' });
  assert.deepEqual([r.status, r.json.code], [400, 'PROVIDER_ERROR']);
  await emu.admin('DELETE', '/__emulator/faults');
  const custom = await c.payment('x', { 'X-Emulator-Fault': 'status=503; code=SERVICE_DOWN; message=%EC%A0%90%EA%B2%80' });
  assert.deepEqual([custom.status, custom.json], [503, { code: 'SERVICE_DOWN', message: '점검' }]);
  const body = charge();
  const k = uid('k');
  await assert.rejects(c.approve(bill.billingKey, body, { 'X-Emulator-Fault': 'reset', 'Idempotency-Key': k }), isSocketError);
  assert.equal((await c.order(body.orderId)).status, 404);
  await assert.rejects(c.approve(bill.billingKey, body, { 'X-Emulator-Fault': 'lostResponse', 'Idempotency-Key': k }), isSocketError);
  assert.equal((await c.order(body.orderId)).json.status, 'DONE', 'lostResponse: committed');
  const replay = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(replay.json.orderId, body.orderId);
  const html = await c.payment('x', { 'X-Emulator-Fault': 'html502' });
  assert.equal(html.status, 502);
  const t0 = Date.now();
  assert.equal((await c.payment('x', { 'X-Emulator-Fault': 'latencyMs=200' })).status, 404);
  assert.ok(Date.now() - t0 >= 190);
  await assert.rejects(emu.request({ path: '/v1/payments/x', headers: { Authorization: c.auth, 'X-Emulator-Fault': 'hang' }, timeout: 200 }), (e) => e.code === 'TIMEOUT');
  const log = (await emu.admin('GET', '/__emulator/requests?limit=1')).json[0];
  assert.deepEqual([log.outcome, log.faultHeader, log.faultId], ['hang', 'hang', 'header']);
  const win = await emu.request({ path: '/billing-auth?clientKey=test_ck_x', headers: { 'X-Emulator-Fault': 'html502' } });
  assert.equal(win.status, 502, 'the card window takes the header too');
  for (const bad of ['bogus', 'latencyMs=abc', 'reset, hang', 'code', 'status=500', '']) {
    const r2 = await c.payment('x', { 'X-Emulator-Fault': bad });
    assert.deepEqual([r2.status, r2.json.code], [400, 'INVALID_EMULATOR_FAULT'], bad);
  }
});

test('latencyJitterMs: a random latency between latencyMs and latencyMs + jitter', async () => {
  await addFault({ match: { method: 'GET' }, fault: { latencyMs: 50, latencyJitterMs: 200 } });
  const times = [];
  for (let i = 0; i < 12; i++) {
    const t0 = Date.now();
    await c.payment('x');
    times.push(Date.now() - t0);
  }
  assert.ok(Math.min(...times) >= 45, times.join(','));
  assert.ok(Math.max(...times) < 400, times.join(','));
  assert.ok(Math.max(...times) - Math.min(...times) > 30, `varies: ${times.join(',')}`);
});

test('global latency (latencyMs, latencyJitterMs settings) delays every /v1 request but not the admin API', async () => {
  await emu.admin('POST', '/__emulator/config', { latencyMs: 150 });
  let t0 = Date.now();
  await c.payment('x');
  assert.ok(Date.now() - t0 >= 140);
  t0 = Date.now();
  await emu.admin('GET', '/__emulator/info');
  assert.ok(Date.now() - t0 < 100);
  // Added to a fault's own latency.
  await addFault({ match: { method: 'GET' }, fault: { latencyMs: 100 } });
  t0 = Date.now();
  await c.payment('x');
  assert.ok(Date.now() - t0 >= 240);
  await emu.admin('POST', '/__emulator/config', { latencyMs: 0, latencyJitterMs: 100 });
  await emu.admin('DELETE', '/__emulator/faults');
  t0 = Date.now();
  await c.payment('x');
  assert.ok(Date.now() - t0 < 150);
});

test('oversized: the charge is done and its response padded to oversizedBytes (still valid JSON)', async () => {
  const body = charge();
  const k = uid('k');
  await addFault({ match: { orderId: body.orderId }, fault: { oversizedBytes: 3 * 1024 * 1024 }, times: 1 });
  const r = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(r.status, 200);
  assert.equal(Number(r.headers['content-length']), 3 * 1024 * 1024);
  assert.equal(JSON.parse(r.text).orderId, body.orderId);
  assert.equal((await emu.admin('GET', '/__emulator/ledger')).json.doneByOrderId[body.orderId], 1);
  const replay = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.ok(replay.text.length < 10000, 'the stored response is the real one');
  const dflt = await c.payment(r.json.paymentKey, { 'X-Emulator-Fault': 'oversized' });
  assert.equal(Number(dflt.headers['content-length']), 8 * 1024 * 1024);
  assert.equal((await emu.admin('GET', '/__emulator/requests?limit=1')).json[0].outcome, 'oversized');
});

test('trickleMs: the charge is done; headers come at once, the body dribbles out over trickleMs', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { trickleMs: 600 }, times: 1 });
  const t0 = Date.now();
  const got = await new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: emu.port, method: 'POST', path: `/v1/billing/${encodeURIComponent(bill.billingKey)}`,
      headers: { Authorization: c.auth, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) }, agent: false }, (res) => {
      const headersAt = Date.now() - t0;
      const chunks = [];
      res.on('data', (x) => chunks.push(x));
      res.on('end', () => resolve({ headersAt, chunks: chunks.length, endAt: Date.now() - t0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(data);
  });
  assert.ok(got.headersAt < 300, `headers at ${got.headersAt} ms`);
  assert.ok(got.endAt >= 550, `body done at ${got.endAt} ms`);
  assert.ok(got.chunks >= 5, `${got.chunks} chunks`);
  assert.equal(JSON.parse(got.text).status, 'DONE');
  assert.equal((await emu.admin('GET', '/__emulator/requests?limit=1')).json[0].outcome, 'trickle');
});

test('faults match paymentKey (cancel and lookup) and mId', async () => {
  const p = await c.paid();
  await addFault({ match: { paymentKey: p.paymentKey, method: 'POST' }, fault: { code: 'FAILED_REFUND_PROCESS' }, times: 1 });
  assert.equal((await c.payment(p.paymentKey)).status, 200);
  assert.equal((await c.cancel(p.paymentKey, { cancelReason: 'x' })).json.code, 'FAILED_REFUND_PROCESS');
  assert.equal((await c.cancel(p.paymentKey, { cancelReason: 'x' })).status, 200);
  const other = emu.client();
  await addFault({ match: { mId: p.mId }, fault: { html502: true } });
  assert.equal((await c.payment(p.paymentKey)).status, 502);
  assert.equal((await other.payment(p.paymentKey)).status, 404);
});
