// Tests: the faults and switches that do the work and then answer something
// else, for the extension's exactly-once tests — ghost (charge made, error
// answered and replayed), lookup lag (config lookupLagMs, fault lookupLagMs),
// mismatched Payment answers (approve and lookups), overcharge, the ABORTED
// orderId reuse switch, hostile bytes, the transactions cursor that never
// advances, and the ledger's per-orderId charges.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startEmulator, uid, TossClient } = require('../support/harness');

let emu;
let c;
before(async () => {
  emu = await startEmulator();
  c = emu.client();
  await c.ready;
});
after(() => emu.stop());

const fault = (def) => emu.admin('POST', '/__emulator/faults', def);
const ledger = async () => (await emu.admin('GET', '/__emulator/ledger')).json;
const advance = (ms) => emu.admin('POST', '/__emulator/clock', { advanceMs: ms });

/** Raw bytes of an answer (no UTF-8 decoding). */
function rawRequest(method, p, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? '' : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: emu.port, method, path: p, agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), Authorization: c.auth, ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, bytes: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('ghost: the charge is made (DONE, in the ledger), the answer is the given Toss error, and the Idempotency-Key replays that error', async () => {
  const b = await c.billing();
  const body = TossClient.charge(b);
  const key = uid('k');
  await fault({ match: { orderId: body.orderId }, fault: { ghost: true, code: 'PROVIDER_ERROR' }, times: 1 });
  const r = await c.approve(b.billingKey, body, { 'Idempotency-Key': key });
  assert.deepEqual([r.status, r.json], [400, { code: 'PROVIDER_ERROR', message: '일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.' }]);
  const found = await c.order(body.orderId);
  assert.deepEqual([found.status, found.json.status, found.json.totalAmount], [200, 'DONE', 4900]);
  assert.equal((await ledger()).doneByOrderId[body.orderId], 1);
  const replay = await c.approve(b.billingKey, body, { 'Idempotency-Key': key });
  assert.deepEqual([replay.status, replay.json.code], [400, 'PROVIDER_ERROR']);
  assert.equal((await ledger()).doneByOrderId[body.orderId], 1, 'the replay charges nothing');
  const last = (await emu.admin('GET', '/__emulator/requests?limit=3')).json;
  assert.deepEqual(last.map((e) => e.outcome), ['replay', 'response', 'ghost']);
  // A retry under a new key finds the order taken.
  assert.equal((await c.approve(b.billingKey, body, { 'Idempotency-Key': uid('k') })).json.code, 'DUPLICATED_ORDER_ID');
  // Header form, a 500, English message.
  const body2 = TossClient.charge(b);
  const r2 = await c.approve(b.billingKey, body2, { 'X-Emulator-Fault': 'ghost; code=FAILED_INTERNAL_SYSTEM_PROCESSING', 'Accept-Language': 'en-US' });
  assert.deepEqual([r2.status, r2.json.code, r2.json.message], [500, 'FAILED_INTERNAL_SYSTEM_PROCESSING', 'Internal system processing operation has failed. Please try again in a few minutes.']);
  assert.equal((await c.order(body2.orderId)).json.status, 'DONE');
  // Any code with its status, and a message of one's own.
  const body3 = TossClient.charge(b);
  const r3 = await c.approve(b.billingKey, body3, { 'X-Emulator-Fault': 'ghost, status=503, code=GATEWAY_TIMEOUT, message=upstream%20gone' });
  assert.deepEqual([r3.status, r3.json], [503, { code: 'GATEWAY_TIMEOUT', message: 'upstream gone' }]);
  assert.equal((await c.order(body3.orderId)).json.status, 'DONE');
  assert.equal((await emu.admin('POST', '/__emulator/faults', { fault: { ghost: true } })).status, 400, 'ghost needs a code');
});

test('ghost on cancel and on issue: the cancel / the billing key is made, the error is answered', async () => {
  const p = await c.paid({ amount: 10000 });
  const r = await c.cancel(p.paymentKey, { cancelReason: '환불' }, { 'X-Emulator-Fault': 'ghost, code=FAILED_REFUND_PROCESS' });
  assert.deepEqual([r.status, r.json.code], [500, 'FAILED_REFUND_PROCESS']);
  assert.equal((await c.payment(p.paymentKey)).json.status, 'CANCELED');
  const customerKey = uid('cust');
  const authKey = await c.authKey({ customerKey });
  const i = await c.issue(authKey, customerKey, { 'X-Emulator-Fault': 'ghost, code=FAILED_INTERNAL_SYSTEM_PROCESSING' });
  assert.equal(i.status, 500);
  assert.equal((await c.issue(authKey, customerKey)).json.code, 'NOT_FOUND_BILLING', 'the authKey was used: the billing key exists');
});

test('lookup lag (config lookupLagMs): lookups say NOT_FOUND_PAYMENT for N ms; the duplicate check and the ledger see the payment at once', async () => {
  await emu.admin('POST', '/__emulator/config', { lookupLagMs: 60000 });
  try {
    const b = await c.billing();
    const body = TossClient.charge(b);
    const p = (await c.approve(b.billingKey, body)).json;
    assert.equal(p.status, 'DONE');
    for (const r of [await c.order(body.orderId), await c.payment(p.paymentKey)]) assert.deepEqual([r.status, r.json.code], [404, 'NOT_FOUND_PAYMENT']);
    assert.equal((await c.approve(b.billingKey, body)).json.code, 'DUPLICATED_ORDER_ID');
    assert.equal((await ledger()).doneByOrderId[body.orderId], 1);
    await advance(59000);
    assert.equal((await c.order(body.orderId)).status, 404);
    await advance(1000);
    assert.equal((await c.order(body.orderId)).json.paymentKey, p.paymentKey);
    assert.equal((await c.payment(p.paymentKey)).status, 200);
  } finally {
    await emu.admin('POST', '/__emulator/config', { lookupLagMs: 0 });
    await emu.admin('POST', '/__emulator/clock', { reset: true });
  }
});

test('lookup lag as a per-request fault on the approve call (lookupLagMs=N), combinable with lostResponse', async () => {
  const b = await c.billing();
  const body = TossClient.charge(b);
  const lost = await c.approve(b.billingKey, body, { 'X-Emulator-Fault': 'lookupLagMs=30000, lostResponse' }).catch((e) => e);
  assert.ok(lost instanceof Error, 'the answer was lost');
  assert.equal((await c.order(body.orderId)).status, 404);
  const other = TossClient.charge(b);
  await c.approve(b.billingKey, other);
  assert.equal((await c.order(other.orderId)).status, 200, 'only the faulted payment lags');
  await advance(30000);
  try {
    assert.equal((await c.order(body.orderId)).json.status, 'DONE');
  } finally {
    await emu.admin('POST', '/__emulator/clock', { reset: true });
  }
  // Registry form.
  const body2 = TossClient.charge(b);
  await fault({ match: { orderId: body2.orderId }, fault: { lookupLagMs: 60000 }, times: 1 });
  assert.equal((await c.approve(b.billingKey, body2)).status, 200);
  assert.equal((await c.order(body2.orderId)).status, 404);
});

test('mismatch on approve: the charge is real at the requested amount; the answer is altered and replayed altered', async () => {
  const b = await c.billing();
  const cases = [
    ['totalAmount', (p, body) => assert.equal(p.totalAmount, body.amount + 1000)],
    ['negativeAmount', (p, body) => assert.equal(p.totalAmount, -body.amount)],
    ['orderId', (p, body) => { assert.notEqual(p.orderId, body.orderId); assert.match(p.orderId, /^[A-Za-z0-9_-]{6,64}$/); }],
    ['mId', (p) => assert.equal(p.mId, 'tvivarepublica')],
    ['currency', (p) => assert.equal(p.currency, 'USD')],
    ['type', (p) => assert.equal(p.type, 'NORMAL')],
    ['minimal', (p) => assert.deepEqual(Object.keys(p).sort(), ['paymentKey', 'status'])],
    ['totalAmountString', (p, body) => assert.equal(p.totalAmount, String(body.amount))],
    ['totalAmountNull', (p) => assert.equal(p.totalAmount, null)],
    ['approvedAtNumber', (p) => assert.equal(typeof p.approvedAt, 'number')],
    ['statusNumber', (p) => assert.equal(p.status, 1)],
    ['statusCanceled', (p) => assert.equal(p.status, 'CANCELED')],
    ['without:totalAmount', (p) => assert.ok(!('totalAmount' in p) && 'balanceAmount' in p)],
    ['currency+type', (p) => assert.deepEqual([p.currency, p.type], ['USD', 'NORMAL'])],
  ];
  for (const [kind, check] of cases) {
    const body = TossClient.charge(b, { amount: 7000 });
    const key = uid('k');
    const r = await c.approve(b.billingKey, body, { 'X-Emulator-Fault': `mismatch=${kind}`, 'Idempotency-Key': key });
    assert.equal(r.status, 200, kind);
    check(r.json, body);
    const truth = await c.order(body.orderId);
    assert.deepEqual([truth.json.status, truth.json.totalAmount, truth.json.currency], ['DONE', 7000, 'KRW'], `${kind}: the real payment`);
    const replay = await c.approve(b.billingKey, body, { 'Idempotency-Key': key });
    assert.deepEqual(replay.json, r.json, `${kind}: the replay is the altered answer`);
  }
  const l = await ledger();
  assert.equal(l.doneByBillingKey[b.billingKey], cases.length);
  assert.equal(l.amountByBillingKey[b.billingKey], 7000 * cases.length);
  for (const bad of ['nope', 'without:', 'totalAmount+nope']) {
    assert.equal((await c.approve(b.billingKey, TossClient.charge(b), { 'X-Emulator-Fault': `mismatch=${bad}` })).status, 400, bad);
  }
});

test("mismatch on lookups: the same kinds, plus otherOrder (another order's DONE payment of the same amount)", async () => {
  const b = await c.billing();
  const first = (await c.approve(b.billingKey, TossClient.charge(b, { amount: 3300 }))).json;
  const second = (await c.approve(b.billingKey, TossClient.charge(b, { amount: 3300 }))).json;
  const other = await c.order(second.orderId, { 'X-Emulator-Fault': 'mismatch=otherOrder' });
  assert.deepEqual([other.json.orderId, other.json.paymentKey, other.json.status, other.json.totalAmount], [first.orderId, first.paymentKey, 'DONE', 3300]);
  const byKey = await c.payment(second.paymentKey, { 'X-Emulator-Fault': 'mismatch=totalAmount' });
  assert.equal(byKey.json.totalAmount, 4300);
  await fault({ match: { method: 'GET', orderId: second.orderId }, fault: { mismatch: ['mId', 'totalAmountString'] }, times: 1 });
  const reg = await c.order(second.orderId);
  assert.deepEqual([reg.json.mId, reg.json.totalAmount], ['tvivarepublica', '3300']);
  assert.equal((await c.order(second.orderId)).json.totalAmount, 3300, 'times: 1');
  // An error answer is left alone.
  assert.equal((await c.order('no-such-order', { 'X-Emulator-Fault': 'mismatch=totalAmount' })).json.code, 'NOT_FOUND_PAYMENT');
  // otherOrder with no other order of that amount: a made-up DONE payment of another order.
  const lone = (await c.approve(b.billingKey, TossClient.charge(b, { amount: 7777 }))).json;
  const made = await c.order(lone.orderId, { 'X-Emulator-Fault': 'mismatch=otherOrder' });
  assert.notEqual(made.json.orderId, lone.orderId);
  assert.notEqual(made.json.paymentKey, lone.paymentKey);
  assert.deepEqual([made.json.status, made.json.totalAmount], ['DONE', 7777]);
});

test('overcharge: another amount is really charged and answered truthfully; the ledger shows what was asked and what was charged', async () => {
  const b = await c.billing();
  const body = TossClient.charge(b, { amount: 5000 });
  const r = await c.approve(b.billingKey, body, { 'X-Emulator-Fault': 'overcharge=1500' });
  assert.deepEqual([r.status, r.json.totalAmount, r.json.balanceAmount, r.json.card.amount], [200, 6500, 6500, 6500]);
  const l = await ledger();
  assert.equal(l.amountByOrderId[body.orderId], 6500);
  assert.deepEqual(l.chargesByOrderId[body.orderId].map((x) => [x.amount, x.requestedAmount]), [[6500, 5000]]);
  const under = TossClient.charge(b, { amount: 5000 });
  assert.equal((await c.approve(b.billingKey, under, { 'X-Emulator-Fault': 'overcharge=-4000' })).json.totalAmount, 1000);
  const dflt = TossClient.charge(b, { amount: 5000 });
  await fault({ match: { orderId: dflt.orderId }, fault: { overcharge: true } });
  assert.equal((await c.approve(b.billingKey, dflt)).json.totalAmount, 6000, 'overcharge alone is +1000');
  assert.equal((await c.approve(b.billingKey, TossClient.charge(b), { 'X-Emulator-Fault': 'overcharge=x' })).status, 400);
});

test('ABORTED orderId reuse: allowed by default (lookup: the DONE one, else the latest); abortedOrderIdReuse false refuses it', async () => {
  const flaky = await c.billing({ cardNumber: '4111111111119001' }); // PROVIDER_ERROR on charges 1-2
  const body = TossClient.charge(flaky);
  assert.equal((await c.approve(flaky.billingKey, body)).json.code, 'PROVIDER_ERROR');
  const abortedOne = await c.order(body.orderId);
  assert.equal(abortedOne.json.status, 'ABORTED');
  assert.equal((await c.approve(flaky.billingKey, body)).json.code, 'PROVIDER_ERROR');
  const latest = await c.order(body.orderId);
  assert.equal(latest.json.status, 'ABORTED');
  assert.notEqual(latest.json.paymentKey, abortedOne.json.paymentKey, 'the latest ABORTED attempt');
  const done = await c.approve(flaky.billingKey, body);
  assert.equal(done.json.status, 'DONE');
  assert.equal((await c.order(body.orderId)).json.paymentKey, done.json.paymentKey, 'the DONE one wins');
  // Switched off: the ABORTED orderId is taken.
  await emu.admin('POST', '/__emulator/config', { abortedOrderIdReuse: false });
  try {
    const declined = await c.billing({ cardNumber: '4111111111110002' });
    const b2 = TossClient.charge(declined);
    assert.equal((await c.approve(declined.billingKey, b2)).json.code, 'REJECT_CARD_PAYMENT');
    const again = await c.approve(declined.billingKey, b2);
    assert.deepEqual([again.status, again.json.code], [400, 'DUPLICATED_ORDER_ID']);
    const shown = await c.order(b2.orderId);
    assert.deepEqual([shown.json.status, shown.json.failure.code], ['ABORTED', 'REJECT_CARD_PAYMENT']);
    const good = await c.billing();
    assert.equal((await c.approve(good.billingKey, TossClient.charge(good, { orderId: b2.orderId, customerKey: good.customerKey }))).json.code, 'DUPLICATED_ORDER_ID');
    assert.equal((await emu.admin('POST', '/__emulator/config', { abortedOrderIdReuse: 'no' })).status, 400);
  } finally {
    await emu.admin('POST', '/__emulator/config', { abortedOrderIdReuse: true });
  }
});

test('hostile=invalidUtf8 / nulEscape: the work is done; raw 0xFF bytes or \\u0000 escapes inside the strings; the key replays the real answer', async () => {
  const b = await c.billing();
  const body = TossClient.charge(b);
  const key = uid('k');
  const bad = await rawRequest('POST', `/v1/billing/${encodeURIComponent(b.billingKey)}`, body, { 'X-Emulator-Fault': 'hostile=invalidUtf8', 'Idempotency-Key': key });
  assert.equal(bad.status, 200);
  assert.ok(bad.bytes.includes(Buffer.from([0xff])));
  assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(bad.bytes));
  assert.equal((await c.order(body.orderId)).json.status, 'DONE');
  const replay = await c.approve(b.billingKey, body, { 'Idempotency-Key': key });
  assert.equal(replay.json.orderId, body.orderId);
  const nul = await rawRequest('GET', `/v1/payments/orders/${body.orderId}`, undefined, { 'X-Emulator-Fault': 'hostile=nulEscape' });
  const text = nul.bytes.toString('utf8');
  assert.ok(text.includes('\\u0000'));
  const parsed = JSON.parse(text);
  assert.ok(parsed.orderId.includes('\u0000') && parsed.status.includes('\u0000'));
  assert.equal(parsed.orderId.replace('\u0000', ''), body.orderId);
  // Error answers and transactions too.
  const err = JSON.parse((await rawRequest('GET', '/v1/payments/nope', undefined, { 'X-Emulator-Fault': 'hostile=nulEscape' })).bytes.toString());
  assert.equal(err.code.replace('\u0000', ''), 'NOT_FOUND_PAYMENT');
  const tx = await rawRequest('GET', '/v1/transactions?startDate=2000-01-01&endDate=2100-01-01', undefined, { 'X-Emulator-Fault': 'hostile=invalidUtf8' });
  assert.ok(tx.bytes.includes(Buffer.from([0xff])));
});

test('hostile=hugeArray (15 MB of small elements, status 200) and hostile=deepNesting, after doing the work', async () => {
  const p = await c.paid({ amount: 20000 });
  const huge = await rawRequest('POST', `/v1/payments/${p.paymentKey}/cancel`, { cancelReason: 'x', cancelAmount: 1000 }, { 'X-Emulator-Fault': 'hostile=hugeArray' });
  assert.equal(huge.status, 200);
  assert.ok(huge.bytes.length >= 15 * 1024 * 1024 - 2 && huge.bytes.length <= 15 * 1024 * 1024);
  assert.deepEqual([huge.bytes[0], huge.bytes[1], huge.bytes[2], huge.bytes[huge.bytes.length - 1]], [0x5b, 0x30, 0x2c, 0x5d]);
  assert.equal((await c.payment(p.paymentKey)).json.balanceAmount, 19000, 'the cancel was made');
  const small = await rawRequest('GET', `/v1/payments/${p.paymentKey}`, undefined, { 'X-Emulator-Fault': 'hostile=hugeArray; hostileSize=1001' });
  assert.equal(JSON.parse(small.bytes.toString()).length, 500);
  const deep = await rawRequest('GET', `/v1/payments/${p.paymentKey}`, undefined, { 'X-Emulator-Fault': 'hostile=deepNesting' });
  assert.equal(deep.status, 200);
  assert.equal(deep.bytes.length, 200000);
  assert.equal(deep.bytes.subarray(0, 100000).every((x) => x === 0x5b), true);
  assert.equal((await c.payment(p.paymentKey, { 'X-Emulator-Fault': 'hostile=deepNesting, hostileSize=3' })).text, '[[[]]]');
});

test('hostile=echoSecrets: an error whose message echoes the request path (billing key raw and percent-encoded) and the Authorization header', async () => {
  const b = await c.billing({ billingKey: `bk/${uid('s')}?x=1` });
  const body = TossClient.charge(b);
  const r = await c.approve(b.billingKey, body, { 'X-Emulator-Fault': 'hostile=echoSecrets' });
  assert.equal(r.status, 400);
  assert.equal(r.json.code, 'INVALID_REQUEST');
  assert.ok(r.json.message.includes(encodeURIComponent(b.billingKey)), 'percent-encoded key');
  assert.ok(r.json.message.includes(b.billingKey), 'raw key');
  assert.ok(r.json.message.includes(c.auth), 'the Authorization header');
  assert.equal((await c.order(body.orderId)).json.status, 'DONE', 'the work was done');
  const coded = await c.order(body.orderId, { 'X-Emulator-Fault': 'hostile=echoSecrets; status=500; code=FAILED_INTERNAL_SYSTEM_PROCESSING' });
  assert.deepEqual([coded.status, coded.json.code], [500, 'FAILED_INTERNAL_SYSTEM_PROCESSING']);
  assert.ok(coded.json.message.includes(`/v1/payments/orders/${body.orderId}`));
  assert.equal((await c.order(body.orderId, { 'X-Emulator-Fault': 'hostile=invalidUtf8, code=PROVIDER_ERROR' })).status, 400, 'only echoSecrets takes a code');
});

test('stuckCursor: GET /v1/transactions returns the same full page (limit items) whatever startingAfter says', async () => {
  const m = emu.client();
  await m.paid({ amount: 1000 });
  await m.paid({ amount: 2000 });
  await m.paid({ amount: 3000 });
  const q = { startDate: '2000-01-01', endDate: '2100-01-01', limit: 5 };
  const real = await m.transactions(q);
  assert.equal(real.json.length, 3);
  const page1 = await m.transactions(q, { 'X-Emulator-Fault': 'stuckCursor' });
  assert.equal(page1.json.length, 5, 'a full page');
  assert.deepEqual(page1.json.slice(0, 3), real.json);
  const last = page1.json[page1.json.length - 1].transactionKey;
  await emu.admin('POST', '/__emulator/faults', { match: { mId: real.json[0].mId, pathPrefix: '/v1/transactions' }, fault: { stuckCursor: true }, times: 2 });
  const page2 = await m.transactions({ ...q, startingAfter: last });
  assert.deepEqual(page2.json, page1.json);
  const page3 = await m.transactions({ ...q, startingAfter: 'not-even-a-key' });
  assert.deepEqual(page3.json, page1.json);
  assert.equal((await m.transactions({ ...q, startingAfter: real.json[2].transactionKey })).json.length, 0, 'without the fault the cursor works');
});

test('the ledger tells per orderId how many approved charges exist and their amounts (duplicates, missing, wrongly paid)', async () => {
  const a = emu.client();
  const b = emu.client();
  const ba = await a.billing();
  const bb = await b.billing();
  const orderId = uid('shared');
  await a.approve(ba.billingKey, TossClient.charge(ba, { orderId, amount: 4900 }));
  await b.approve(bb.billingKey, TossClient.charge(bb, { orderId, amount: 5900 }));
  const p = (await a.approve(ba.billingKey, TossClient.charge(ba, { amount: 1200 }))).json;
  await a.cancel(p.paymentKey, { cancelReason: 'x' });
  const l = await ledger();
  assert.equal(l.doneByOrderId[orderId], 2);
  assert.ok(l.duplicateOrderIds.includes(orderId));
  assert.equal(l.amountByOrderId[orderId], 10800);
  assert.deepEqual(l.chargesByOrderId[orderId].map((x) => [x.amount, x.status]), [[4900, 'DONE'], [5900, 'DONE']]);
  assert.notEqual(l.chargesByOrderId[orderId][0].mId, l.chargesByOrderId[orderId][1].mId);
  assert.deepEqual(l.chargesByOrderId[p.orderId].map((x) => [x.amount, x.status, x.balanceAmount, x.paymentKey]), [[1200, 'CANCELED', 0, p.paymentKey]]);
  assert.equal(l.chargesByOrderId['never-charged'], undefined);
});
