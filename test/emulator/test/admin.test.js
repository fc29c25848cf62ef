// Tests: the admin API — reset, auth-keys validation, the request log (fields,
// order, limit, no secrets), the payment list, the ledger, the clock.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, uid, TossClient, basic } = require('../support/harness');

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

test('POST /__emulator/reset forgets keys, payments, idempotency, faults and the log', async () => {
  const c = emu.client();
  const b = await c.billing();
  const body = TossClient.charge(b);
  const k = uid('k');
  assert.equal((await c.approve(b.billingKey, body, { 'Idempotency-Key': k })).status, 200);
  const pendingCustomer = uid('cust');
  const pending = await c.authKey({ customerKey: pendingCustomer });
  await emu.admin('POST', '/__emulator/faults', { fault: { latencyMs: 1 } });
  await emu.admin('POST', '/__emulator/clock', { advanceMs: 1000 });
  await emu.admin('POST', '/__emulator/config', { latencyMs: 1, rateLimit: { perSecond: 1000 } });
  await emu.admin('DELETE', `/__emulator/billing-keys/${encodeURIComponent((await c.billing()).billingKey)}`); // a BILLING_DELETED event
  assert.equal((await emu.admin('GET', '/__emulator/webhooks')).json.length, 1);
  const r = await emu.reset();
  assert.deepEqual([r.status, r.json], [200, { reset: true }]);
  assert.deepEqual((await emu.admin('GET', '/__emulator/payments')).json, []);
  assert.deepEqual((await emu.admin('GET', '/__emulator/requests')).json, []);
  assert.deepEqual((await emu.admin('GET', '/__emulator/faults')).json, []);
  assert.equal((await emu.admin('GET', '/__emulator/ledger')).json.totalDone, 0);
  assert.equal((await emu.admin('GET', '/__emulator/clock')).json.offsetMs, 0);
  assert.deepEqual((await emu.admin('GET', '/__emulator/webhooks')).json, []);
  const cfg = (await emu.admin('GET', '/__emulator/config')).json;
  assert.deepEqual([cfg.latencyMs, cfg.rateLimit], [0, null]);
  // Merchants registered through the admin API are forgotten too (the startup and built-in ones stay).
  assert.deepEqual((await c.order(body.orderId)).json.code, 'UNAUTHORIZED_KEY');
  assert.deepEqual((await emu.admin('GET', '/__emulator/merchants')).json.map((m) => m.source), ['builtin']);
  await c.register();
  assert.equal((await c.order(body.orderId)).status, 404);
  assert.equal((await c.approve(b.billingKey, body, { 'Idempotency-Key': k })).json.code, 'NOT_FOUND_BILLING');
  assert.equal((await c.issue(pending, pendingCustomer)).json.code, 'NOT_FOUND_BILLING');
});

test('POST /__emulator/auth-keys validates its input and defaults to card 9410001234567890', async () => {
  await emu.admin('POST', '/__emulator/merchants', [{ secretKey: 'test_sk_admin' }, { secretKey: 'test_sk_x' }]);
  const ok = await emu.admin('POST', '/__emulator/auth-keys', { secretKey: 'test_sk_admin', customerKey: 'cust-admin' });
  assert.equal(ok.status, 200);
  assert.deepEqual(Object.keys(ok.json).sort(), ['authKey', 'customerKey']);
  const b = await emu.client('test_sk_admin').issue(ok.json.authKey, 'cust-admin');
  assert.equal(b.json.card.number, '94100012****789*');
  for (const [body, code] of [[{ secretKey: 'test_ck_x', customerKey: 'c' }, 'INVALID_API_KEY'], [{ customerKey: 'c' }, 'INVALID_API_KEY'],
    [{ secretKey: 'test_sk_x' }, 'INVALID_ADMIN_REQUEST'], [{ secretKey: 'test_sk_x', customerKey: 'c', billingKey: '' }, 'INVALID_ADMIN_REQUEST'],
    [{ secretKey: 'test_sk_x', customerKey: 'c', cardNumber: '42' }, 'INVALID_CARD_NUMBER'],
    [{ secretKey: 'test_sk_notRegistered', customerKey: 'c' }, 'UNAUTHORIZED_KEY'],
    [{ secretKey: 'test_sk_x', customerKey: 'c', method: 'PHONE' }, 'INVALID_ADMIN_REQUEST']]) {
    const r = await emu.admin('POST', '/__emulator/auth-keys', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.code, code);
  }
  const badJson = await emu.request({ method: 'POST', path: '/__emulator/auth-keys', body: '{oops' });
  assert.equal(badJson.status, 400);
  assert.equal((await emu.admin('GET', '/__emulator/nothing')).status, 404);
});

test('GET /__emulator/requests: newest first, limit, raw and decoded paths, never the Authorization header', async () => {
  await emu.reset();
  const secretKey = 'test_sk_logSecretValue123';
  const c = emu.client(secretKey);
  const b = await c.billing({ billingKey: 'log/key=?%' });
  const body = TossClient.charge(b);
  await c.approve(b.billingKey, body, { 'Idempotency-Key': 'log-key-1', 'Accept-Language': 'en-US' });
  await c.call('GET', `/v1/payments/orders/${body.orderId}?x=1&y=two`);
  await emu.request({ method: 'POST', path: '/v1/billing/authorizations/issue', body: '{broken', headers: { Authorization: basic(secretKey) } });
  await emu.request({ method: 'GET', path: '/v1/payments/x' });

  const all = (await emu.admin('GET', '/__emulator/requests')).json;
  assert.equal(all.length, 5);
  const [noAuth, broken, lookup, approve, issue] = all;
  assert.equal(issue.rawPath, '/v1/billing/authorizations/issue');
  assert.equal(approve.method, 'POST');
  assert.equal(approve.rawPath, '/v1/billing/log%2Fkey%3D%3F%25');
  assert.equal(approve.path, '/v1/billing/log/key=?%');
  assert.equal(approve.idempotencyKey, 'log-key-1');
  assert.equal(approve.acceptLanguage, 'en-US');
  assert.deepEqual(approve.body, body);
  assert.equal(approve.status, 200);
  assert.equal(approve.mId, b.mId);
  assert.match(approve.at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert.deepEqual(lookup.query, { x: '1', y: 'two' });
  assert.equal(lookup.body, null);
  assert.equal(lookup.idempotencyKey, null);
  assert.equal(lookup.acceptLanguage, null);
  assert.equal(broken.body, null);
  assert.equal(broken.status, 400);
  assert.equal(noAuth.status, 401);
  assert.equal(noAuth.mId, null);
  for (const k of ['method', 'rawPath', 'path', 'query', 'idempotencyKey', 'acceptLanguage', 'body', 'status', 'at']) assert.ok(k in approve, k);
  const text = JSON.stringify(all);
  assert.ok(!text.includes(secretKey));
  assert.ok(!text.includes(Buffer.from(secretKey + ':').toString('base64')));
  assert.ok(!/"authorization"|Basic /i.test(text));

  const two = (await emu.admin('GET', '/__emulator/requests?limit=2')).json;
  assert.deepEqual(two, all.slice(0, 2));
  assert.equal((await emu.admin('GET', '/__emulator/requests?limit=-1')).status, 400);
  // Admin and window requests are not Toss API requests: not logged.
  assert.equal((await emu.admin('GET', '/__emulator/requests')).json.length, 5);
});

test('GET /__emulator/payments lists every payment of every merchant', async () => {
  await emu.reset();
  const a = emu.client();
  const z = emu.client();
  const ba = await a.billing();
  const bz = await z.billing({ cardNumber: '4111111111110001' });
  const pa = (await a.approve(ba.billingKey, TossClient.charge(ba, { amount: 1200 }))).json;
  const bodyZ = TossClient.charge(bz);
  await z.approve(bz.billingKey, bodyZ);
  const list = (await emu.admin('GET', '/__emulator/payments')).json;
  assert.equal(list.length, 2);
  assert.deepEqual(
    { orderId: list[0].orderId, paymentKey: list[0].paymentKey, billingKey: list[0].billingKey, customerKey: list[0].customerKey, status: list[0].status, totalAmount: list[0].totalAmount, mId: list[0].mId },
    { orderId: pa.orderId, paymentKey: pa.paymentKey, billingKey: ba.billingKey, customerKey: ba.customerKey, status: 'DONE', totalAmount: 1200, mId: ba.mId },
  );
  assert.equal(list[1].status, 'ABORTED');
  assert.equal(list[1].failure.code, 'REJECT_CARD_COMPANY');
  assert.equal(list[1].orderId, bodyZ.orderId);
  assert.equal((await emu.admin('GET', `/__emulator/payments?billingKey=${encodeURIComponent(bz.billingKey)}`)).json.length, 1);
  assert.equal((await emu.admin('GET', '/__emulator/payments?status=DONE')).json.length, 1);
});

test('GET /__emulator/ledger counts DONE charges per orderId and per billing key', async () => {
  await emu.reset();
  const a = emu.client();
  const z = emu.client();
  const ba = await a.billing();
  const ba2 = await a.billing();
  const bz = await z.billing();
  const shared = uid('shared');
  await a.approve(ba.billingKey, TossClient.charge(ba, { orderId: shared, amount: 1000 }));
  await a.approve(ba.billingKey, TossClient.charge(ba, { amount: 2000 }));
  await a.approve(ba2.billingKey, TossClient.charge(ba2, { orderId: shared })); // DUPLICATED_ORDER_ID: not counted
  await z.approve(bz.billingKey, TossClient.charge(bz, { orderId: shared, amount: 3000 })); // other merchant, same orderId
  const declined = await a.billing({ cardNumber: '4111111111110002' });
  await a.approve(declined.billingKey, TossClient.charge(declined));
  const l = (await emu.admin('GET', '/__emulator/ledger')).json;
  assert.equal(l.totalDone, 3);
  assert.equal(l.totalAborted, 1);
  assert.equal(l.totalAmount, 6000);
  assert.equal(l.doneByOrderId[shared], 2);
  assert.equal(l.doneByBillingKey[ba.billingKey], 2);
  assert.equal(l.doneByBillingKey[ba2.billingKey], undefined);
  assert.equal(l.doneByBillingKey[bz.billingKey], 1);
  assert.equal(l.doneByBillingKey[declined.billingKey], undefined);
  assert.equal(l.amountByBillingKey[ba.billingKey], 3000);
  assert.deepEqual(l.duplicateOrderIds, [shared]);
});

test('the emulator clock can be advanced, set and reset, and drives timestamps', async () => {
  const set = await emu.admin('POST', '/__emulator/clock', { set: '2030-01-02T03:04:05Z' });
  assert.equal(set.json.kst.slice(0, 16), '2030-01-02T12:04');
  const c = emu.client();
  const b = await c.billing();
  const p = (await c.approve(b.billingKey, TossClient.charge(b))).json;
  assert.ok(p.approvedAt.startsWith('2030-01-02T12:0'));
  assert.ok(p.paymentKey.startsWith('tbill2030010212'));
  const adv = await emu.admin('POST', '/__emulator/clock', { advanceMs: 24 * 3600 * 1000 });
  assert.ok(adv.json.kst.startsWith('2030-01-03T12:0'));
  assert.equal((await emu.admin('POST', '/__emulator/clock', { reset: true })).json.offsetMs, 0);
  assert.equal((await emu.admin('POST', '/__emulator/clock', {})).status, 400);
});
