// Tests: fault injection through /__emulator/faults — each fault kind
// (latency, Toss error, reset, hang, lostResponse, malformedJson, html502),
// matching, `times`, listing and deletion, and validation of definitions.
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
afterEach(() => emu.admin('DELETE', '/__emulator/faults'));

const charge = (extra) => TossClient.charge(bill, extra);
const addFault = async (def) => {
  const r = await emu.admin('POST', '/__emulator/faults', def);
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.id, /^fault-\d+$/);
  return r.json.id;
};
const isSocketError = (e) => ['ECONNRESET', 'EPIPE'].includes(e.code) || /socket hang up/.test(e.message);

test('latencyMs delays the request, which then behaves normally', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { latencyMs: 300 } });
  const t0 = Date.now();
  const r = await c.approve(bill.billingKey, body);
  assert.ok(Date.now() - t0 >= 290);
  assert.equal(r.status, 200);
  // Requests that do not match are not delayed.
  const t1 = Date.now();
  await c.approve(bill.billingKey, charge());
  assert.ok(Date.now() - t1 < 250);
});

test('{status, code, message} answers that Toss error and does nothing (not even under the Idempotency-Key)', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { status: 500, code: 'FAILED_INTERNAL_SYSTEM_PROCESSING', message: 'boom' }, times: 1 });
  const k = uid('k');
  const r = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.deepEqual([r.status, r.json], [500, { code: 'FAILED_INTERNAL_SYSTEM_PROCESSING', message: 'boom' }]);
  assert.equal((await c.order(body.orderId)).status, 404);
  const retry = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(retry.status, 200);
  // Without a message the catalog message (in the request language) is used; status defaults from the catalog.
  const body2 = charge();
  await addFault({ match: { orderId: body2.orderId }, fault: { code: 'REJECT_CARD_COMPANY' } });
  const r2 = await c.approve(bill.billingKey, body2, { 'Accept-Language': 'en-US' });
  assert.deepEqual([r2.status, r2.json], [403, { code: 'REJECT_CARD_COMPANY', message: 'Payment confirm is rejected' }]);
});

test('{reset: true} destroys the socket without a response; nothing is done', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { reset: true }, times: 1 });
  const k = uid('k');
  await assert.rejects(c.approve(bill.billingKey, body, { 'Idempotency-Key': k }), isSocketError);
  assert.equal((await c.order(body.orderId)).status, 404);
  const retry = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(retry.status, 200, 'the key was not used up by the dropped request');
  const log = (await emu.admin('GET', '/__emulator/requests?limit=4')).json.find((e) => e.outcome === 'reset');
  assert.equal(log.status, null);
});

test('{hang: true} never answers; the client gives up; nothing is done', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { hang: true }, times: 1 });
  const t0 = Date.now();
  await assert.rejects(
    emu.request({ method: 'POST', path: `/v1/billing/${encodeURIComponent(bill.billingKey)}`, body, headers: { Authorization: c.auth }, timeout: 300 }),
    (e) => e.code === 'TIMEOUT',
  );
  assert.ok(Date.now() - t0 >= 290);
  assert.equal((await c.order(body.orderId)).status, 404);
  assert.equal((await c.approve(bill.billingKey, body)).status, 200);
});

test('{lostResponse: true} performs the charge, then drops the connection (unknown outcome)', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { lostResponse: true }, times: 1 });
  const k = uid('k');
  await assert.rejects(c.approve(bill.billingKey, body, { 'Idempotency-Key': k }), isSocketError);
  const found = await c.order(body.orderId);
  assert.equal(found.json.status, 'DONE', 'the charge happened');
  const replay = await c.approve(bill.billingKey, body, { 'Idempotency-Key': k });
  assert.equal(replay.json.paymentKey, found.json.paymentKey, 'same key replays the lost response');
  assert.equal((await c.approve(bill.billingKey, body)).json.code, 'DUPLICATED_ORDER_ID');
  assert.equal((await emu.admin('GET', '/__emulator/ledger')).json.doneByOrderId[body.orderId], 1);
});

test('{lostResponse: true} on issue: the billing key is issued and the authKey used up', async () => {
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey, billingKey: uid('lost') });
  await addFault({ match: { pathPrefix: '/v1/billing/authorizations/issue', customerKey }, fault: { lostResponse: true } });
  await assert.rejects(c.issue(authKey, customerKey), isSocketError);
  await emu.admin('DELETE', '/__emulator/faults');
  assert.equal((await c.issue(authKey, customerKey)).json.code, 'NOT_FOUND_BILLING');
});

test('{malformedJson: true} answers 200 with a truncated JSON body; nothing is done', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { malformedJson: true } });
  const r = await c.approve(bill.billingKey, body);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /application\/json/);
  assert.ok(r.text.startsWith('{'));
  assert.throws(() => JSON.parse(r.text));
  await emu.admin('DELETE', '/__emulator/faults');
  assert.equal((await c.order(body.orderId)).status, 404);
});

test('{html502: true} answers 502 with an HTML page; nothing is done', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { html502: true } });
  const r = await c.approve(bill.billingKey, body);
  assert.equal(r.status, 502);
  assert.match(r.headers['content-type'], /text\/html/);
  assert.match(r.text, /502 Bad Gateway/);
  await emu.admin('DELETE', '/__emulator/faults');
  assert.equal((await c.order(body.orderId)).status, 404);
});

test('latencyMs combines with another kind', async () => {
  const body = charge();
  await addFault({ match: { orderId: body.orderId }, fault: { latencyMs: 200, html502: true } });
  const t0 = Date.now();
  const r = await c.approve(bill.billingKey, body);
  assert.ok(Date.now() - t0 >= 190);
  assert.equal(r.status, 502);
});

test('times limits how many matching requests a fault applies to; list and delete', async () => {
  const id = await addFault({ match: { method: 'POST', billingKey: bill.billingKey }, fault: { code: 'PROVIDER_ERROR' }, times: 2 });
  const listed = (await emu.admin('GET', '/__emulator/faults')).json;
  assert.deepEqual(listed, [{ id, match: { method: 'POST', billingKey: bill.billingKey }, fault: { status: 400, code: 'PROVIDER_ERROR' }, times: 2, hits: 0 }]);
  assert.equal((await c.order('whatever1')).status, 404, 'GET does not match method POST');
  assert.equal((await c.approve(bill.billingKey, charge())).json.code, 'PROVIDER_ERROR');
  assert.equal((await emu.admin('GET', '/__emulator/faults')).json[0].times, 1);
  assert.equal((await c.approve(bill.billingKey, charge())).json.code, 'PROVIDER_ERROR');
  assert.deepEqual((await emu.admin('GET', '/__emulator/faults')).json, []);
  assert.equal((await c.approve(bill.billingKey, charge())).status, 200);

  const a = await addFault({ match: {}, fault: { html502: true } });
  const b = await addFault({ match: { pathPrefix: '/nothing' }, fault: { reset: true } });
  assert.equal((await emu.admin('DELETE', `/__emulator/faults/${a}`)).status, 200);
  assert.equal((await emu.admin('DELETE', `/__emulator/faults/${a}`)).status, 404);
  assert.deepEqual((await emu.admin('GET', '/__emulator/faults')).json.map((f) => f.id), [b]);
  assert.equal((await emu.admin('DELETE', '/__emulator/faults')).status, 200);
  assert.deepEqual((await emu.admin('GET', '/__emulator/faults')).json, []);
});

test('match criteria: method, pathPrefix, orderId, orderIdPrefix, billingKey, customerKey', async () => {
  const b2 = await c.billing();
  const prefix = uid('pfx');
  const cases = [
    [{ orderIdPrefix: prefix }, charge({ orderId: `${prefix}-1` }), charge()],
    [{ customerKey: b2.customerKey }, TossClient.charge(b2), charge()],
    [{ billingKey: b2.billingKey }, TossClient.charge(b2), charge()],
  ];
  for (const [match, hitBody, missBody] of cases) {
    await addFault({ match, fault: { code: 'CARD_PROCESSING_ERROR' } });
    const hitKey = hitBody.customerKey === b2.customerKey ? b2.billingKey : bill.billingKey;
    assert.equal((await c.approve(hitKey, hitBody)).json.code, 'CARD_PROCESSING_ERROR', JSON.stringify(match));
    assert.equal((await c.approve(bill.billingKey, missBody)).status, 200, JSON.stringify(match));
    await emu.admin('DELETE', '/__emulator/faults');
  }
  // pathPrefix + method on lookups; orderId also matches GET /v1/payments/orders/{orderId}.
  const paid = await c.approve(bill.billingKey, charge());
  await addFault({ match: { method: 'GET', pathPrefix: '/v1/payments/orders/' }, fault: { code: 'FORBIDDEN_CONSECUTIVE_REQUEST' }, times: 1 });
  assert.equal((await c.payment(paid.json.paymentKey)).status, 200);
  assert.equal((await c.order(paid.json.orderId)).json.code, 'FORBIDDEN_CONSECUTIVE_REQUEST');
  await addFault({ match: { orderId: paid.json.orderId }, fault: { code: 'NOT_FOUND_PAYMENT' }, times: 1 });
  assert.equal((await c.order(paid.json.orderId)).status, 404);
  assert.equal((await c.order(paid.json.orderId)).status, 200);
});

test('faults apply to the card window too', async () => {
  await addFault({ match: { pathPrefix: '/billing-auth', method: 'POST' }, fault: { html502: true }, times: 1 });
  const r = await emu.request({ method: 'POST', path: '/billing-auth', body: 'x=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 502);
});

test('invalid fault definitions → 400', async () => {
  const bad = [
    {}, { fault: {} }, { fault: { latencyMs: -1 } }, { fault: { reset: true, hang: true } }, { fault: { reset: 'yes' } },
    { fault: { code: 'NO_SUCH_CODE' } }, { fault: { status: 500 } }, { fault: { bogus: true } },
    { match: { orderId: 5 }, fault: { reset: true } }, { match: { nope: 'x' }, fault: { reset: true } },
    { fault: { reset: true }, times: 0 }, { fault: { code: 'PROVIDER_ERROR', status: 200 } },
  ];
  for (const def of bad) {
    const r = await emu.admin('POST', '/__emulator/faults', def);
    assert.equal(r.status, 400, JSON.stringify(def));
  }
  const custom = await emu.admin('POST', '/__emulator/faults', { fault: { code: 'MY_CODE', status: 418 + 81 } });
  assert.equal(custom.status, 200);
});
