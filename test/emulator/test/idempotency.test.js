// Tests: Idempotency-Key — success and error replay, body not compared, scope
// (key + secret key + method + path), 409 on a concurrent duplicate, the
// 300-char limit, 15-day expiry on the emulator clock.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
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
  await emu.admin('POST', '/__emulator/clock', { reset: true });
});

const charge = (extra) => TossClient.charge(bill, extra);
const key = () => uid('idem');
const ledger = async () => (await emu.admin('GET', '/__emulator/ledger')).json;

test('a repeated request with the same key replays the first success (same paymentKey, no second charge)', async () => {
  const k = key();
  const body = charge();
  const first = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  const second = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  assert.equal(second.text, first.text);
  assert.equal((await ledger()).doneByOrderId[body.orderId], 1);
  const log = (await emu.admin('GET', '/__emulator/requests?limit=2')).json;
  assert.deepEqual(log.map((e) => [e.replayed, e.outcome]), [[true, 'replay'], [false, 'response']]);
});

test('the body is not compared: a different body with the same key returns the first response', async () => {
  const k = key();
  const first = await c.approve(bill.billingKey, charge({ amount: 1000 }), { 'Idempotency-Key': k });
  const otherBody = charge({ amount: 9999 });
  const second = await c.approve(bill.billingKey, otherBody, { 'Idempotency-Key': k });
  assert.equal(second.text, first.text);
  assert.equal(second.json.totalAmount, 1000);
  assert.equal((await c.order(otherBody.orderId)).status, 404, 'the second order was never charged');
});

test('errors are replayed too, even when the retry would now succeed', async () => {
  const k = key();
  const bad = await c.approve(bill.billingKey, charge({ amount: 50 }), { 'Idempotency-Key': k });
  assert.equal(bad.json.code, 'BELOW_MINIMUM_AMOUNT');
  const body = charge();
  const retry = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.deepEqual([retry.status, retry.text], [400, bad.text]);
  assert.equal((await c.order(body.orderId)).status, 404);
  // A language change does not matter either: the first response is replayed byte for byte.
  const en = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k, 'Accept-Language': 'en-US' });
  assert.equal(en.text, bad.text);
});

test('a card error is replayed without another attempt; a new key makes a new attempt', async () => {
  const b = await c.billing({ cardNumber: '4111111111119001' });
  const body = TossClient.charge(b);
  const k1 = key();
  const r1 = await c.approve(b.billingKey, body, { 'Idempotency-Key': k1 });
  const r1b = await c.approve(b.billingKey, body, { 'Idempotency-Key': k1 });
  assert.deepEqual([r1.json.code, r1b.text], ['PROVIDER_ERROR', r1.text]);
  const r2 = await c.approve(b.billingKey, body, { 'Idempotency-Key': key() });
  assert.equal(r2.json.code, 'PROVIDER_ERROR', 'second real attempt');
  const r3 = await c.approve(b.billingKey, body, { 'Idempotency-Key': key() });
  assert.equal(r3.status, 200, 'third real attempt succeeds');
  const aborted = (await emu.admin('GET', `/__emulator/payments?orderId=${body.orderId}&status=ABORTED`)).json;
  assert.equal(aborted.length, 2);
});

test('the issue endpoint is idempotent as well', async () => {
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey });
  const k = key();
  const a = await c.issue(authKey, customerKey, { 'Idempotency-Key': k });
  const b = await c.issue(authKey, customerKey, { 'Idempotency-Key': k });
  assert.equal(a.status, 200);
  assert.equal(b.text, a.text);
  assert.equal((await c.issue(authKey, customerKey)).status, 404);
});

test('scope is key + secret key + method + path', async () => {
  const k = key();
  const b2 = await c.billing();
  const r1 = await c.approve(bill.billingKey, charge(), { 'Idempotency-Key': k });
  const r2 = await c.approve(b2.billingKey, TossClient.charge(b2), { 'Idempotency-Key': k });
  assert.equal(r2.status, 200);
  assert.notEqual(r2.json.paymentKey, r1.json.paymentKey, 'another path is another scope');
  const other = emu.client();
  const ob = await other.billing();
  const r3 = await other.approve(ob.billingKey, TossClient.charge(ob), { 'Idempotency-Key': k });
  assert.equal(r3.status, 200);
  assert.notEqual(r3.json.paymentKey, r1.json.paymentKey, 'another secret key is another scope');
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey });
  assert.equal((await c.issue(authKey, customerKey, { 'Idempotency-Key': k })).status, 200);
});

test('a concurrent duplicate while the first is still running → 409 IDEMPOTENT_REQUEST_PROCESSING', async () => {
  const body = charge();
  await emu.admin('POST', '/__emulator/faults', { match: { orderId: body.orderId }, fault: { latencyMs: 400 }, times: 1 });
  const k = key();
  const firstP = c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  await new Promise((r) => setTimeout(r, 100));
  const dup = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(dup.status, 409);
  assert.equal(dup.json.code, 'IDEMPOTENT_REQUEST_PROCESSING');
  const first = await firstP;
  assert.equal(first.status, 200);
  const after1 = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(after1.text, first.text);
  assert.equal((await ledger()).doneByOrderId[body.orderId], 1);
});

test('keys over 300 chars → 400 INVALID_IDEMPOTENCY_KEY (nothing charged); 300 chars is fine', async () => {
  const body = charge();
  const long = await c.approve(bill.billingKey, body, { 'Idempotency-Key': 'k'.repeat(301) });
  assert.deepEqual([long.status, long.json.code], [400, 'INVALID_IDEMPOTENCY_KEY']);
  assert.equal((await c.order(body.orderId)).status, 404);
  const ok = await c.approve(bill.billingKey, body, { 'Idempotency-Key': 'k'.repeat(300) });
  assert.equal(ok.status, 200);
});

test('keys expire after 15 days of the emulator clock', async () => {
  const k = key();
  const body = charge();
  const first = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  await emu.admin('POST', '/__emulator/clock', { advanceMs: 15 * 24 * 3600 * 1000 - 60 * 1000 });
  assert.equal((await c.approve(bill.billingKey, body, { 'Idempotency-Key': k })).text, first.text, 'still replayed just before 15 days');
  await emu.admin('POST', '/__emulator/clock', { advanceMs: 2 * 60 * 1000 });
  const fresh = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.deepEqual([fresh.status, fresh.json.code], [400, 'DUPLICATED_ORDER_ID'], 'executed again after expiry');
});

test('without a key the request is executed every time', async () => {
  const body = charge();
  assert.equal((await c.approve(bill.billingKey, body)).status, 200);
  assert.equal((await c.approve(bill.billingKey, body)).json.code, 'DUPLICATED_ORDER_ID');
  assert.equal((await c.approve(bill.billingKey, body, { 'Idempotency-Key': '' })).json.code, 'DUPLICATED_ORDER_ID');
});
